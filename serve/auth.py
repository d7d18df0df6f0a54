"""Bearer API keys: read from the env var named by `serve.api_keys_env` (comma separated) and/or a mounted
secret file `serve.api_keys_file` (one key per line, `#` comments), checked in constant time.

Keys are read inside the replica (so they never travel in the Serve config or the Ray GCS), held only as
SHA-256 digests, and never logged: error messages say a key is missing or wrong, never which. A server with
no key configured refuses to start rather than silently serving everyone.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

from serve.errors import unauthorized


class NoApiKeysError(RuntimeError):
    pass


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def load_key_digests(api_keys_env: str | None, api_keys_file: str | None) -> list[bytes]:
    keys: list[str] = []
    if api_keys_env:
        keys += [k.strip() for k in os.environ.get(api_keys_env, "").split(",")]
    if api_keys_file:
        path = Path(api_keys_file)
        if not path.is_file():
            raise NoApiKeysError(f"api_keys_file {api_keys_file} does not exist")
        keys += [line.strip() for line in path.read_text().splitlines() if not line.lstrip().startswith("#")]
    keys = [k for k in keys if k]
    if not keys:
        raise NoApiKeysError(
            f"no API key configured: set the env var {api_keys_env!r} (comma separated) or serve.api_keys_file"
        )
    return [_digest(k) for k in keys]


class KeyChecker:
    def __init__(self, digests: list[bytes]):
        self._digests = digests

    def check(self, authorization: str | None) -> None:
        """Raise a 401 ApiError unless the header is `Bearer <one of the keys>`."""
        if not authorization:
            raise unauthorized("missing API key: send the header 'Authorization: Bearer <key>'")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthorized("malformed Authorization header: expected 'Bearer <key>'")
        presented = _digest(token.strip())
        # compare against every key (no early exit) so timing does not tell which prefix matched
        matched = False
        for digest in self._digests:
            matched |= hmac.compare_digest(presented, digest)
        if not matched:
            raise unauthorized("invalid API key")
