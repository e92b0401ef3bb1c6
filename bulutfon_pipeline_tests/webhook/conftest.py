"""Fixtures of the webhook tests: a receiver on a real socket with its own inbox."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bulutfon_pipeline.simulator.webhooks import WebhookSender
from bulutfon_pipeline.webhook.config import WebhookConfig
from bulutfon_pipeline.webhook.server import WebhookServer
from bulutfon_pipeline_tests.webhook._support import PASSWORD, USER

ReceiverFactory = Callable[..., WebhookServer]


@pytest.fixture
def receiver_factory(tmp_path: Path) -> Iterator[ReceiverFactory]:
    """``make(**config)`` -> a started receiver (Basic auth on by default), stopped at
    teardown; its inbox is ``tmp_path / "inbox.sqlite3"`` unless given."""
    servers: list[WebhookServer] = []

    def make(**overrides: Any) -> WebhookServer:
        fields: dict[str, Any] = {
            "inbox_path": tmp_path / "inbox.sqlite3",
            "user": USER,
            "password": PASSWORD,
            **overrides,
        }
        server = WebhookServer(WebhookConfig(**fields)).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def receiver(receiver_factory: ReceiverFactory) -> WebhookServer:
    return receiver_factory()


@pytest.fixture
def sender(receiver: WebhookServer) -> Iterator[WebhookSender]:
    with WebhookSender(receiver.url, user=USER, password=PASSWORD) as posting:
        yield posting
