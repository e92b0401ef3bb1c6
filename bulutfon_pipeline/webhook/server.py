"""Serving the receiver: :func:`serve` for the command (blocks until SIGINT/SIGTERM) and
:class:`WebhookServer`, the same app in a background thread (tests, benchmarks)."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable
from types import TracebackType

import uvicorn

from bulutfon_pipeline.webhook.app import create_app
from bulutfon_pipeline.webhook.config import WebhookConfig, WebhookConfigError
from bulutfon_pipeline.webhook.inbox import InboxWriter

__all__ = ["WebhookServer", "serve"]

log = logging.getLogger(__name__)
_START_TIMEOUT_S = 30.0


def _uvicorn_config(app: object, *, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        log_level=log_level,
        # uvicorn's access log names paths and clients only, but the receiver logs what
        # matters itself (refusals with their reason); a line per post would flood.
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=5,
        # Bulutfon's sender may keep a connection open between posts.
        timeout_keep_alive=30,
    )


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as error:
        sock.close()
        raise WebhookConfigError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    return sock


def serve(
    config: WebhookConfig,
    *,
    host: str,
    port: int,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Receive posts on ``host:port`` until SIGINT or SIGTERM, then commit what is queued.

    Raises:
        WebhookConfigError: a non-loopback ``host`` without credentials, or the address
            is taken.
        InboxError: the inbox cannot be opened.
    """
    config.check_host(host)
    writer = InboxWriter(config.inbox_path, retention_days=config.retention_days)
    try:
        sock = _bind(host, port)
        bound_port = sock.getsockname()[1]
        server = uvicorn.Server(_uvicorn_config(create_app(config, writer), log_level="warning"))
        if on_ready is not None:
            shown = f"[{host}]" if ":" in host else host
            on_ready(f"http://{shown}:{bound_port}{config.path}")
        server.run(sockets=[sock])
    finally:
        writer.close()


class _Uvicorn(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, ready: threading.Event) -> None:
        super().__init__(config)
        self._ready = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self._ready.set()


class WebhookServer:
    """The receiver on a real socket in a background thread: ``with WebhookServer(config)
    as hooks: httpx.post(hooks.url, ...)``. Port 0 picks a free port."""

    def __init__(self, config: WebhookConfig, *, host: str = "127.0.0.1", port: int = 0):
        config.check_host(host)
        self.config = config
        self.host = host
        self._sock = _bind(host, port)
        self.port = int(self._sock.getsockname()[1])
        self.writer: InboxWriter | None = None
        self._server: _Uvicorn | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Where to post events."""
        return f"http://{self.host}:{self.port}{self.config.path}"

    def start(self) -> WebhookServer:
        self.writer = InboxWriter(self.config.inbox_path, retention_days=self.config.retention_days)
        ready = threading.Event()
        self._server = _Uvicorn(
            _uvicorn_config(create_app(self.config, self.writer), log_level="warning"), ready
        )
        server, sock = self._server, self._sock

        def run() -> None:
            asyncio.run(server.serve(sockets=[sock]))

        self._thread = threading.Thread(target=run, name="webhook-receiver", daemon=True)
        self._thread.start()
        if not ready.wait(_START_TIMEOUT_S):
            raise RuntimeError("the webhook receiver did not start")
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)
        self._sock.close()
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def __enter__(self) -> WebhookServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
