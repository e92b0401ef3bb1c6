"""The fan-out transport (httpx over aiohttp) against real sockets: each failure comes out
as the httpx exception the client's retries and messages tell apart."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

import httpx
import pytest

from bulutfon_pipeline.api.retry import transport_error
from bulutfon_pipeline.api.transport import fan_out_transport

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
LIMITS = httpx.Limits(max_connections=4, max_keepalive_connections=4)


async def _get(url: str, timeout: httpx.Timeout) -> httpx.Response:
    async with httpx.AsyncClient(transport=fan_out_transport(LIMITS), timeout=timeout) as c:
        return await c.get(url)


async def _serve_and_get(handler: Handler, timeout: httpx.Timeout) -> httpx.Response:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        return await _get(f"http://127.0.0.1:{port}/cdr/u1.json", timeout)
    finally:
        server.close()


async def _ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    body = b'{"cdr": {"uuid": "u1"}}'
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
    writer.write(head.encode() + b"\r\nX-Seen: 1\r\n\r\n" + body)
    await writer.drain()
    writer.close()


async def _hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.close()  # no answer at all


async def _cut_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b'{"cdr": {"uu')
    await writer.drain()
    writer.close()


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    await asyncio.Event().wait()  # never answers; cancelled when the server closes


def test_a_plain_answer_comes_through_unchanged() -> None:
    response = asyncio.run(_serve_and_get(_ok, httpx.Timeout(5.0)))
    assert (response.status_code, response.json()) == (200, {"cdr": {"uuid": "u1"}})
    assert response.headers["x-seen"] == "1"


@pytest.mark.parametrize(
    ("handler", "expected", "message"),
    [
        (_hang_up, httpx.RemoteProtocolError, "Connection to http://127.0.0.1:"),
        # cut while httpx reads the body stream: httpx-aiohttp's own ReadError, same message
        (_cut_body, httpx.ReadError, "Connection to http://127.0.0.1:"),
        (_silent, httpx.ReadTimeout, "Timed out (read) talking to http://127.0.0.1:"),
    ],
)
def test_failures_map_to_precise_httpx_exceptions(
    handler: Handler, expected: type[httpx.HTTPError], message: str
) -> None:
    with pytest.raises(httpx.TransportError) as info:
        asyncio.run(_serve_and_get(handler, httpx.Timeout(0.5)))
    assert type(info.value) is expected
    assert str(transport_error(info.value, info.value.request.url)).startswith(message)


def test_a_closed_port_is_a_connect_error() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(httpx.TransportError) as info:
        asyncio.run(_get(f"http://127.0.0.1:{port}/cdr/u1.json", httpx.Timeout(2.0)))
    assert type(info.value) is httpx.ConnectError
    error = transport_error(info.value, f"http://127.0.0.1:{port}")
    assert str(error).startswith("Cannot reach http://127.0.0.1:")
