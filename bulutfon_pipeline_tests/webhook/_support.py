"""What the webhook tests share: the receiver's credentials and a reader of its inbox."""

from __future__ import annotations

from typing import Any

from bulutfon_pipeline.webhook.inbox import Inbox
from bulutfon_pipeline.webhook.server import WebhookServer

USER = "bulutfon"
#: A password no test posts by mistake; the log checks look for it.
PASSWORD = "pw-3f9c1e7a-never-logged"


def stored(receiver: WebhookServer) -> list[dict[str, Any]]:
    """The receiver's inbox rows, read through a connection of their own."""
    with Inbox(receiver.config.inbox_path) as inbox:
        return inbox.events()
