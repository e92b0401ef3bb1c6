"""Bulutfon's webhook posts for the simulator's calls, and a sender that posts them.

The events follow ``../../shared/bulutfon-api.md`` section 6: ``call_init`` and
``fax_init`` carry ``event_type``, ``caller``, ``callee``, ``uuid``, ``direction`` and
``timestamp`` (microseconds since the epoch); ``call_hangup`` adds ``hangup_cause`` and
the ``cdr`` object in its own dialect (``bf_calltype``, ``bf_direction``, ``bf_caller``,
``bf_callee``, ISO-8601 times with the offset, ``call_record`` as a boolean,
``sip_hangup_disposition``, the flow under ``callflow``). They are built from the same
:class:`~.model.Call` as the API's answers, so a receiver fed by :class:`WebhookSender`
and a load through the API meet the same ground truth.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from bulutfon_pipeline.simulator.model import Call, FlowStep
from bulutfon_pipeline.simulator.render import number, time_top

__all__ = [
    "WebhookSender",
    "call_hangup_event",
    "call_init_event",
    "fax_init_event",
    "form_pairs",
]

Encoding = Literal["json", "form"]


def _microseconds(t: dt.datetime) -> int:
    return int(t.timestamp()) * 1_000_000 + t.microsecond


def _base(call: Call, event_type: str, at: dt.datetime) -> dict[str, Any]:
    return {
        "event_type": event_type,
        "uuid": call.uuid,
        "caller": number(call.caller),
        "callee": number(call.callee),
        "direction": "OUT" if call.direction == "OUT" else "IN",
        "timestamp": _microseconds(at),
    }


def call_init_event(call: Call) -> dict[str, Any]:
    """The ``call_init`` post of ``call``, stamped with its start."""
    return _base(call, "call_init", call.call_time)


def fax_init_event(call: Call) -> dict[str, Any]:
    """The ``fax_init`` post of ``call`` (the simulator's calls are voice; the event's
    shape is the same)."""
    return _base(call, "fax_init", call.call_time)


def _callflow_step(step: FlowStep) -> dict[str, Any]:
    return {
        "callee": step.callee,
        "start_time": time_top(step.start_time, "v1"),
        "answer_time": time_top(step.answer_time, "v1"),
        "hangup_time": time_top(step.hangup_time, "v1"),
        "redirection": step.kind,
        "redirection_target": step.target,
    }


def call_hangup_event(call: Call, *, cdr_api_url: str | None = None) -> dict[str, Any]:
    """The ``call_hangup`` post of ``call`` with its ``cdr``, stamped with its hangup."""
    event = _base(call, "call_hangup", call.hangup_time or call.call_time)
    event["hangup_cause"] = call.hangup_cause
    event["cdr"] = {
        "uuid": call.uuid,
        "bf_calltype": call.call_type,
        "bf_direction": call.direction,
        "bf_caller": call.caller,
        "bf_callee": call.callee,
        "call_time": time_top(call.call_time, "v1"),
        "answer_time": time_top(call.answer_time, "v1"),
        "hangup_time": time_top(call.hangup_time, "v1"),
        "call_record": call.call_record == "YES",
        "hangup_cause": call.hangup_cause,
        "sip_hangup_disposition": call.hangup_state,
        "callflow": [_callflow_step(step) for step in call.flow],
    }
    if cdr_api_url is not None:
        event["cdr_api_url"] = cdr_api_url
    return event


def form_pairs(event: dict[str, Any]) -> list[tuple[str, str]]:
    """``event`` as form fields, nested objects in bracket keys (``cdr[callflow][0][callee]``);
    None is an empty value and booleans are ``true``/``false``."""
    pairs: list[tuple[str, str]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}[{key}]" if prefix else str(key), item)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(f"{prefix}[{index}]", item)
        elif isinstance(value, bool):
            pairs.append((prefix, "true" if value else "false"))
        else:
            pairs.append((prefix, "" if value is None else str(value)))

    walk("", event)
    return pairs


@dataclass
class WebhookSender:
    """Posts events to a receiver as Bulutfon does: one POST each, JSON or form, with
    HTTP Basic auth when ``user`` is set. Counts what it sent and what was answered."""

    url: str
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    encoding: Encoding = "json"
    timeout_s: float = 10.0
    statuses: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        auth = (self.user, self.password or "") if self.user is not None else None
        self._client = httpx.Client(auth=auth, timeout=self.timeout_s)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> WebhookSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def post(self, event: dict[str, Any], encoding: Encoding | None = None) -> httpx.Response:
        """POST one event; returns the receiver's answer."""
        if (encoding or self.encoding) == "form":
            response = self._client.post(self.url, data=dict(form_pairs(event)))
        else:
            response = self._client.post(
                self.url,
                content=json.dumps(event, ensure_ascii=False).encode(),
                headers={"Content-Type": "application/json"},
            )
        self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
        return response

    def post_calls(
        self, calls: Iterable[Call], *, drop: Iterable[str] = (), with_init: bool = False
    ) -> list[str]:
        """Post each call's ``call_hangup`` (after its ``call_init`` when ``with_init``),
        skipping the uuids in ``drop`` (posts lost on the way). Returns the uuids posted.

        Raises:
            httpx.HTTPStatusError: the receiver refused a post.
        """
        lost = set(drop)
        posted = []
        for call in _unique(calls):
            if call.uuid in lost:
                continue
            if with_init:
                self.post(call_init_event(call)).raise_for_status()
            self.post(call_hangup_event(call)).raise_for_status()
            posted.append(call.uuid)
        return posted


def _unique(calls: Iterable[Call]) -> Iterator[Call]:
    seen: set[str] = set()
    for call in calls:
        if call.uuid not in seen:
            seen.add(call.uuid)
            yield call
