"""Fetching an http(s) image URL, only when `serve.allow_remote_images` is on (it is off by default).

The download is bounded (timeout, byte limit enforced while streaming, no redirects followed to other
schemes), and any failure is the client's 400, never a server crash.
"""

from __future__ import annotations

from serve.errors import invalid

FETCH_TIMEOUT_S = 10.0


async def fetch_remote_image(url: str, max_bytes: int, param: str) -> bytes:
    import httpx  # comes with the openai client; only needed when remote images are enabled

    chunks, size = [], 0
    try:
        async with httpx.AsyncClient(timeout=FETCH_TIMEOUT_S, follow_redirects=False) as client:
            async with client.stream("GET", url) as response:
                if response.status_code != 200:
                    raise invalid(f"fetching the image URL gave HTTP {response.status_code}", param,
                                  "image_fetch_failed")
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > max_bytes:
                        raise invalid(f"remote image is over this server's limit of {max_bytes} bytes", param,
                                      "image_too_large")
                    chunks.append(chunk)
    except httpx.HTTPError as err:
        raise invalid(f"cannot fetch the image URL ({err.__class__.__name__})", param, "image_fetch_failed") from None
    return b"".join(chunks)
