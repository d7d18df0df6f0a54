"""Fetching an http(s) image URL, only when `serve.allow_remote_images` is on (it is off by default).

A client-supplied URL must not reach the server's own network: the host is resolved and every address it
resolves to must be public (no loopback, private, link-local such as the 169.254.169.254 metadata service,
shared, reserved or multicast address), and the connection is then made to that checked address itself, so a
DNS answer that changes between the check and the connect cannot redirect it. TLS still verifies the host name.
Redirects are not followed. The whole fetch (connect, headers and body) has one deadline, so a server that
drips a byte at a time cannot hold the request, and the byte limit is enforced while streaming. Every failure
is the client's 400 with the same message: nothing about the upstream (status, headers, body) is echoed back.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable

from serve.errors import invalid

FETCH_TIMEOUT_S = 10.0  # the whole fetch, not each read


def is_public_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 scope id is no part of the address
    if ip.version == 6 and ip.ipv4_mapped is not None:  # ::ffff:127.0.0.1 is 127.0.0.1
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


class AddressNotAllowed(Exception):
    pass


def _guarded_backend(allow: Callable[[str], bool]):
    import anyio
    import httpcore

    class GuardedBackend(httpcore.AsyncNetworkBackend):
        """httpcore's own backend, connecting only to a resolved address that `allow` accepts."""

        def __init__(self) -> None:
            self.inner = httpcore.AnyIOBackend()

        async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
            infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            addresses = [str(info[4][0]) for info in infos]
            if not addresses or not all(allow(a) for a in addresses):
                raise AddressNotAllowed(host)
            return await self.inner.connect_tcp(addresses[0], port, timeout=timeout, local_address=local_address,
                                                socket_options=socket_options)

        async def connect_unix_socket(self, path, timeout=None, socket_options=None):
            raise AddressNotAllowed(path)

        async def sleep(self, seconds: float) -> None:
            await self.inner.sleep(seconds)

    return GuardedBackend()


async def fetch_remote_image(url: str, max_bytes: int, param: str, *, timeout_s: float = FETCH_TIMEOUT_S,
                             allow: Callable[[str], bool] = is_public_address) -> bytes:
    """The bytes at `url`, or an ApiError (400). `allow` decides which resolved addresses may be connected to."""
    import httpcore  # httpx's transport (installed with the openai client); only needed for remote images

    failed = invalid("the image URL could not be fetched", param, "image_fetch_failed")
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout_s):
            async with httpcore.AsyncConnectionPool(network_backend=_guarded_backend(allow), max_connections=1) as pool:
                async with pool.stream("GET", url) as response:
                    if response.status != 200:
                        raise failed
                    async for chunk in response.aiter_stream():
                        size += len(chunk)
                        if size > max_bytes:
                            raise invalid(f"remote image is over this server's limit of {max_bytes} bytes", param,
                                          "image_too_large")
                        chunks.append(chunk)
    except AddressNotAllowed:
        raise invalid("image URLs must point at a public address", param, "image_url_not_allowed") from None
    except (TimeoutError, httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError,
            httpcore.UnsupportedProtocol, httpcore.ProxyError, OSError, ValueError):
        raise failed from None
    return b"".join(chunks)
