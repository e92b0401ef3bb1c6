"""Webhook posts -> :class:`WebhookEvent`, or :class:`MalformedEventError` with the reason.

Bulutfon posts each event as JSON or as ``application/x-www-form-urlencoded`` (chosen per
webhook in the panel; ``../shared/bulutfon-api.md`` section 6). A form carries the nested
``cdr`` object either as JSON text in one field (``cdr={...}``) or in bracket keys
(``cdr[bf_caller]=...``, ``cdr[callflow][0][callee]=...``): both are read. Pure: no I/O.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from bulutfon_pipeline.settings import DEFAULT_ACCOUNT

__all__ = [
    "EVENT_TYPES",
    "HANGUP",
    "MalformedEventError",
    "WebhookEvent",
    "parse_event",
]

HANGUP = "call_hangup"
#: The events the receiver stores; any other ``event_type`` is answered 400.
EVENT_TYPES = frozenset({"call_init", HANGUP, "fax_init"})
#: A uuid is an id, not free text: bounded and printable (it is also a log field).
_UUID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,99}")
_BRACKETS = re.compile(r"\[([^\[\]]*)\]")


class MalformedEventError(ValueError):
    """A post that is not a well-formed event; the message is the reason, in one line."""


@dataclass(frozen=True)
class WebhookEvent:
    """One event, as received: its identity and the whole payload."""

    event_type: str
    uuid: str
    #: ``timestamp``: microseconds since the epoch.
    timestamp_us: int
    #: ``json`` or ``form``: how it was posted.
    encoding: str
    #: The event's fields (a form's values are text, its bracket keys nested).
    payload: dict[str, Any]
    #: The PBX account it was posted for: the last part of the post's path
    #: (``<BULUTFON_WEBHOOK_PATH>/<account>``), ``default`` for the bare path.
    account: str = DEFAULT_ACCOUNT

    @property
    def payload_json(self) -> str:
        return json.dumps(self.payload, ensure_ascii=False, separators=(",", ":"))


def parse_event(body: bytes, content_type: str | None) -> WebhookEvent:
    """Parse and validate one post.

    Args:
        body: the request body, whole.
        content_type: its ``Content-Type`` header (parameters such as charset ignored).

    Returns:
        The event.

    Raises:
        MalformedEventError: an unsupported content type, a body that does not decode, or
            an event without a known ``event_type``, a ``uuid`` or an integer
            ``timestamp``, or whose ``cdr`` is not an object.
    """
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == "application/json" or (not media and body.lstrip()[:1] == b"{"):
        payload, encoding = _json_body(body), "json"
    elif media == "application/x-www-form-urlencoded":
        payload, encoding = _form_body(body), "form"
    else:
        raise MalformedEventError(
            f"unsupported Content-Type {media or '(none)'!r}: "
            "expected application/json or application/x-www-form-urlencoded"
        )
    return _validated(payload, encoding)


def _json_body(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError) as error:
        raise MalformedEventError(f"body is not valid JSON: {error}") from None
    if not isinstance(payload, dict):
        raise MalformedEventError(f"body is JSON {type(payload).__name__}, not an object")
    return payload


def _form_body(body: bytes) -> dict[str, Any]:
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text), errors="strict")
    except (UnicodeDecodeError, ValueError) as error:
        raise MalformedEventError(f"body is not a valid form: {error}") from None
    payload: dict[str, Any] = {}
    for key, value in pairs:
        _put(payload, key, value)
    cdr = payload.get("cdr")
    if isinstance(cdr, str):  # the nested object as JSON text in one field
        try:
            payload["cdr"] = json.loads(cdr)
        except ValueError as error:
            raise MalformedEventError(f"form field cdr is not valid JSON: {error}") from None
    nested = _lists(payload)
    if not isinstance(nested, dict):
        raise MalformedEventError("form keys are all numbers: not an event")
    return nested


def _put(payload: dict[str, Any], key: str, value: str) -> None:
    """``a[b][0][c]=v`` -> ``payload["a"]["b"]["0"]["c"] = v`` (lists come later)."""
    head, _, rest = key.partition("[")
    path = [head, *_BRACKETS.findall("[" + rest)] if rest else [head]
    if not head or (rest and "[" + rest != "".join(f"[{p}]" for p in path[1:])):
        raise MalformedEventError(f"form key {key[:80]!r} is not name or name[key]...")
    node = payload
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise MalformedEventError(f"form key {key[:80]!r} nests under a plain value")
        node = child
    if isinstance(node.get(path[-1]), dict):
        raise MalformedEventError(f"form key {key[:80]!r} is both a value and an object")
    node[path[-1]] = value


def _lists(node: Any) -> Any:
    """Objects whose keys are 0..n-1 become lists (``callflow[0]``, ``callflow[1]``…)."""
    if not isinstance(node, dict):
        return node
    converted = {key: _lists(value) for key, value in node.items()}
    if converted and all(key.isdigit() for key in converted):
        indexes = sorted(int(key) for key in converted)
        if indexes == list(range(len(indexes))):
            return [converted[str(i)] for i in indexes]
    return converted


def _validated(payload: dict[str, Any], encoding: str) -> WebhookEvent:
    event_type = payload.get("event_type")
    if not isinstance(event_type, str) or not event_type:
        raise MalformedEventError("event_type is missing")
    if event_type not in EVENT_TYPES:
        known = ", ".join(sorted(EVENT_TYPES))
        raise MalformedEventError(f"unknown event_type {event_type[:40]!r} (expected {known})")
    uuid = payload.get("uuid")
    if not isinstance(uuid, str) or not _UUID.fullmatch(uuid):
        raise MalformedEventError(f"{event_type}: uuid is missing or not an id")
    timestamp = payload.get("timestamp")
    if isinstance(timestamp, str) and timestamp.isdigit():
        timestamp = int(timestamp)
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or timestamp <= 0:
        raise MalformedEventError(
            f"{event_type} {uuid}: timestamp must be an integer of microseconds since the epoch"
        )
    if event_type == HANGUP and "cdr" in payload:
        cdr = payload["cdr"]
        if not isinstance(cdr, dict):
            raise MalformedEventError(f"call_hangup {uuid}: cdr is not an object")
        if cdr.get("uuid") not in (None, uuid):
            raise MalformedEventError(f"call_hangup {uuid}: cdr.uuid is another call's")
        flow = cdr.get("callflow")
        if flow is not None and not isinstance(flow, list):
            raise MalformedEventError(f"call_hangup {uuid}: cdr.callflow is not a list")
    return WebhookEvent(
        event_type=event_type,
        uuid=uuid,
        timestamp_us=timestamp,
        encoding=encoding,
        payload=payload,
    )
