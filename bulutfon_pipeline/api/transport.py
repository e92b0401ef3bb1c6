"""The async HTTP transport of the detail fan-out: httpx's API over aiohttp's engine.

The fan-out is CPU-bound in the client well below the API's rate limits on a 2-core
machine: with httpx's own transport (httpcore's pool and its pure-Python HTTP/1.1 state
machine) a detail request cost 2.7-3.3 ms of client CPU, so one Python thread could not
reach 400 requests/s. aiohttp parses HTTP in C and pools connections cheaply; through
``httpx-aiohttp`` (the transport the OpenAI and Anthropic SDKs offer) the same request
costs about 1.8 ms (``benchmarks/ANALYSIS.md``). The client above it is unchanged:
httpx's requests, auth flow, redirects, timeouts and exceptions.

``httpx-aiohttp`` maps aiohttp's exceptions onto httpx's coarsely (a dropped connection
becomes a *connect timeout*), so :class:`FanOutTransport` maps the ones our error
messages and retries tell apart again, from the aiohttp exception it keeps as the cause.
"""

from __future__ import annotations

import asyncio
import os

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from bulutfon_pipeline.api.tls import shared_ssl_context

__all__ = ["FanOutTransport", "fan_out_transport"]


def _precise(exc: httpx.TransportError) -> httpx.TransportError:
    """httpx's exception for the aiohttp failure that caused ``exc``."""
    cause = exc.__cause__
    message = str(exc) or type(cause).__name__
    if isinstance(cause, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(message)
    if isinstance(cause, aiohttp.SocketTimeoutError | asyncio.TimeoutError):
        return httpx.ReadTimeout(message)
    if isinstance(cause, aiohttp.ClientConnectorError):
        return httpx.ConnectError(_connect_reason(cause) or message)
    if isinstance(cause, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return httpx.RemoteProtocolError(message)
    if isinstance(cause, aiohttp.ClientOSError):
        return httpx.ReadError(message)
    return exc


def _connect_reason(cause: aiohttp.ClientConnectorError) -> str | None:
    """Why the connection failed, as httpx says it ("Connection refused"), not aiohttp's
    "Cannot connect to host ... ssl:default [Connect call failed (...)]"."""
    error = cause.os_error
    if error.errno is not None and error.errno > 0:
        return os.strerror(error.errno)
    return error.strerror  # a failed name lookup: "Name or service not known"


class FanOutTransport(AiohttpTransport):
    """``httpx_aiohttp.AiohttpTransport`` with precise exceptions."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except httpx.TransportError as exc:
            precise = _precise(exc)
            if precise is exc:
                raise
            precise.request = request
            raise precise from exc.__cause__


def fan_out_transport(limits: httpx.Limits) -> FanOutTransport:
    """The fan-out's transport: ``limits`` as the aiohttp pool's size and keep-alive.

    Its aiohttp session is made on first use, on the running event loop (a session is
    bound to one loop), and closed with the httpx client. It keeps no cookies (httpx's
    client does that) and leaves decompression to httpx.
    """
    transport: FanOutTransport

    def session() -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=limits.max_connections or 0,
            keepalive_timeout=limits.keepalive_expiry,
            ssl=transport.ssl_context,
        )
        return aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False
        )

    transport = FanOutTransport(limits=limits, client=session, verify=shared_ssl_context())
    return transport
