"""The async HTTP transport of the detail fan-out: httpx's own, minus a CPU hot spot.

httpcore's connection pool asks every pooled connection ``has_expired()`` each time it
assigns a request, and an idle HTTP/1.1 connection answers by looking up its raw socket
through anyio's typed-attribute machinery (``get_extra_info("is_readable")``), which
rebuilds a dict of lambdas per call. With 16-20 pooled connections that lookup was a
third of the client's CPU per request (profiled: 5.5 -> 3.7 ms per detail request;
``BENCHMARKS.md``), and the client's CPU is what caps the fan-out below the API's rate
limit on a busy machine. The streams here remember their socket once.

Everything else (HTTP/1.1 parsing, timeouts, TLS, exceptions) is httpx/httpcore's own.
"""

from __future__ import annotations

import ssl
from typing import Any

import httpcore
import httpx
from httpcore._backends.anyio import AnyIOBackend
from httpcore._utils import is_socket_readable

__all__ = ["fast_async_transport"]


class _SocketCachingStream(httpcore.AsyncNetworkStream):
    """An anyio stream that answers ``socket``/``is_readable`` from a cached socket."""

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._socket = inner.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _SocketCachingStream(
            await self._inner.start_tls(ssl_context, server_hostname, timeout)
        )

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            return self._socket is not None and is_socket_readable(self._socket)
        if info == "socket":
            return self._socket
        return self._inner.get_extra_info(info)


class _SocketCachingBackend(AnyIOBackend):
    async def connect_tcp(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        return _SocketCachingStream(await super().connect_tcp(*args, **kwargs))


def fast_async_transport(limits: httpx.Limits) -> httpx.AsyncHTTPTransport:
    """httpx's default async transport with socket-caching streams.

    Falls back to the plain transport if a future httpx/httpcore renames the internals
    this relies on (``_pool._network_backend``): slower, never broken.
    """
    transport = httpx.AsyncHTTPTransport(limits=limits)
    pool = getattr(transport, "_pool", None)
    if pool is not None and isinstance(
        getattr(pool, "_network_backend", None), httpcore.AsyncNetworkBackend
    ):
        pool._network_backend = _SocketCachingBackend()
    return transport
