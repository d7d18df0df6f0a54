"""The identity of one teacher request: sha256 of (model, messages, sampling parameters), canonical JSON.

The pipeline keys its response cache by it and the stand-in teacher logs it, so a test can tell from the
server's own request log whether a completed request was ever sent again. Pure: hashlib and json only.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

# The body fields that change what a model returns; anything else (timeouts, headers) never enters the key.
SAMPLING_FIELDS = ("temperature", "top_p", "max_tokens", "seed", "n", "stop")


def sampling_params(body: dict[str, Any]) -> dict[str, Any]:
    return {k: body[k] for k in SAMPLING_FIELDS if body.get(k) is not None}


def request_key(model: str, messages: list[dict[str, Any]], sampling: dict[str, Any]) -> str:
    canonical = json.dumps(
        {"model": model, "messages": messages, "sampling": sampling_params(sampling)},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def body_key(body: dict[str, Any]) -> str:
    """The key of a chat-completions request body as a server receives it."""
    return request_key(str(body.get("model", "")), list(body.get("messages") or []), body)
