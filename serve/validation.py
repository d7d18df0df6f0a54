"""Turn a parsed chat request into what the engine needs, refusing anything unsafe or over a limit (400).

Checks, each with its own error code: the model id, `n` and `max_tokens` against their limits, the number of
images, each image URL's scheme (data URLs always; http(s) only when `allow_remote_images`; file:// and bare
paths never, and never opened), the base64 payload, the decoded byte size, that the bytes are an image, and
its pixel count (read from the header before any pixel is decoded, by the project's one image decoder,
`reasoner_ray.data.images.decode_image`). The context limit is checked by the engine on the tokenized prompt
(serve/engine.py) because image token counts depend on the processor. The body itself is read with a size cap
(`read_body`, 413 past `max_request_bytes`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from reasoner_ray.core.config import ServeConfig
from reasoner_ray.core.prompts import instruction
from reasoner_ray.core.rows import ANSWER_TYPES
from reasoner_ray.data import images
from reasoner_ray.data.images import ImageError, decode_image
from serve.errors import ApiError, invalid
from serve.remote_images import fetch_remote_image
from serve.schemas import ChatCompletionRequest, ImageUrlPart, TextPart


@dataclass
class PreparedChat:
    """Template-ready messages (image parts as `{"type": "image"}`), decoded images, sampling settings."""

    messages: list[dict[str, Any]]
    images: list[Image.Image] = field(default_factory=list)
    max_tokens: int = 256


async def prepare_chat(request: ChatCompletionRequest, limits: ServeConfig, model_name: str) -> PreparedChat:
    if request.model != model_name:
        raise ApiError(404, f"model {request.model!r} is not served here; use {model_name!r}",
                       param="model", code="model_not_found")
    if request.n > limits.max_n:
        raise invalid(f"n={request.n} is over this server's limit of {limits.max_n}", "n", "n_over_limit")
    max_tokens = request.max_completion_tokens or request.max_tokens or limits.default_max_tokens
    if max_tokens > limits.max_tokens_limit:
        raise invalid(f"max_tokens={max_tokens} is over this server's limit of {limits.max_tokens_limit}",
                      "max_tokens", "max_tokens_over_limit")
    if request.answer_type not in ANSWER_TYPES:
        raise invalid(f"answer_type must be one of {list(ANSWER_TYPES)}", "answer_type")
    image_parts = [
        (i, j, part)
        for i, message in enumerate(request.messages) if isinstance(message.content, list)
        for j, part in enumerate(message.content) if isinstance(part, ImageUrlPart)
    ]
    if len(image_parts) > limits.max_images:
        raise invalid(f"{len(image_parts)} images given; this server takes at most {limits.max_images} per request",
                      "messages", "too_many_images")
    images = [await load_image(part.image_url.url, limits, f"messages.{i}.content.{j}.image_url.url")
              for i, j, part in image_parts]
    messages = [_template_message(m.role, m.content) for m in request.messages]
    if request.reasoning is not None:
        _append_instruction(messages, instruction(request.reasoning, request.answer_type))
    return PreparedChat(messages=messages, images=images, max_tokens=max_tokens)


def _template_message(role: str, content: str | list[TextPart | ImageUrlPart]) -> dict[str, Any]:
    if isinstance(content, str):
        return {"role": role, "content": content}
    parts = [{"type": "text", "text": p.text} if isinstance(p, TextPart) else {"type": "image"} for p in content]
    return {"role": role, "content": parts}


def _append_instruction(messages: list[dict[str, Any]], text: str) -> None:
    """The paper's prompt is `question\\ninstruction`: extend the last user text, or add a text part."""
    users = [m for m in messages if m["role"] == "user"]
    if not users:
        raise invalid("`reasoning` needs a user message to append its instruction to", "reasoning")
    last = users[-1]
    if isinstance(last["content"], str):
        last["content"] = f"{last['content']}\n{text}"
        return
    texts = [p for p in last["content"] if p["type"] == "text"]
    if texts:
        texts[-1]["text"] = f"{texts[-1]['text']}\n{text}"
    else:
        last["content"].append({"type": "text", "text": text})


async def load_image(url: str, limits: ServeConfig, param: str) -> Image.Image:
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "data":
        raw = decode_data_url(url, limits.max_image_bytes, param)
    elif scheme in ("http", "https"):
        if not limits.allow_remote_images:
            raise invalid("remote image URLs are disabled on this server; send a data: URL", param,
                          "remote_images_disabled")
        raw = await fetch_remote_image(url, limits.max_image_bytes, param)
    else:
        # file://, bare paths and any other scheme: refused without touching the filesystem.
        raise invalid("image_url must be a data: URL (local paths and file:// URLs are never read)", param,
                      "unsupported_image_url")
    return open_checked_image(raw, limits.max_image_pixels, param)


def decode_data_url(url: str, max_bytes: int, param: str) -> bytes:
    """The data URL's bytes (images.decode_data_url, the one decoder), its failures as this API's errors."""
    try:
        return images.decode_data_url(url, max_bytes)
    except ImageError as err:
        if err.reason == "image_too_large":
            raise invalid(err.detail.replace("the limit", "this server's limit"), param, "image_too_large") from None
        if err.detail.startswith("bad base64"):
            raise invalid("image data URL has invalid base64", param, "invalid_base64") from None
        raise invalid("data URL must be of the form data:image/<type>;base64,<payload>", param, "invalid_image") from None


def open_checked_image(raw: bytes, max_pixels: int, param: str) -> Image.Image:
    try:
        return decode_image(raw, max_pixels)
    except ImageError as err:
        if err.reason == "image_too_large":
            raise invalid(f"{err.detail} (this server's limit is {max_pixels} pixels)", param, "image_too_large") from None
        raise invalid("image bytes are not a readable image", param, "invalid_image") from None


async def read_body(request, max_bytes: int) -> bytes:
    """The request body, or a 413 once it passes `max_bytes`: refused from its declared Content-Length when it
    has one, else while streaming (a chunked body never declares its length)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(max_bytes: int) -> ApiError:
    return ApiError(413, f"request body is over this server's limit of {max_bytes} bytes", code="request_too_large")
