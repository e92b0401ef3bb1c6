"""Render model calls as each dialect's JSON objects (see ../../shared/bulutfon-api.md).

``seed``: local times ``16-04-2015 16:17`` / ``16/04/2015 - 11:02:02``, Turkish labels,
caller/callee JSON numbers when all digits, flow callee/destination strings.
``v1``: ISO-8601 with the Istanbul offset, English codes, numeric callee/destination,
``extension`` on outbound calls, ``missing_call`` and ``call_price``.
``v2`` (inferred beyond section 7): v1's objects, except ``caller_extension`` for
``extension``, a ``duration`` (seconds from the call to its hangup), and ``call_record``
being ``"NO"`` or the recording's URL (:data:`V2_RECORDING_PATH` on the serving host; a
removed recording is ``"NO"``).
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

from bulutfon_pipeline.settings import LOCAL_TZ
from bulutfon_pipeline.simulator import vocab
from bulutfon_pipeline.simulator.model import Call, FlowStep, Origination

__all__ = [
    "V2_DETAIL_PATH",
    "V2_RECORDING_PATH",
    "detail_object",
    "listing_item",
    "number",
    "recording_url",
    "time_flow",
    "time_top",
]

SEED_TOP_FORMAT = "%d-%m-%Y %H:%M"
SEED_FLOW_FORMAT = "%d/%m/%Y - %H:%M:%S"
#: February 31st, in each dialect's format.
IMPOSSIBLE_DATE = {
    "seed": "31-02-2015 10:00",
    "v1": "2015-02-31T10:00:00+02:00",
    "v2": "2015-02-31T10:00:00+02:00",
}
#: The v2 detail path (public) and recording path (inferred), by the call's local date.
V2_DETAIL_PATH = "/v2/cdr/{yyyy}/{mm}/{dd}/{uuid}"
V2_RECORDING_PATH = V2_DETAIL_PATH + "/recording"

#: Extra fields a newer API version might send; a loader must ignore them.
UNKNOWN_TOP_FIELDS: dict[str, Any] = {"queue_wait_seconds": 4, "tags": ["vip", "kampanya"]}
UNKNOWN_STEP_FIELDS: dict[str, Any] = {"dtmf": "1", "meta": {"node": "ivr-2"}}


# Rendering times dominates a detail response; flow times repeat a lot, so cache them.
@functools.lru_cache(maxsize=1 << 16)
def _local_text(t: dt.datetime, fmt: str | None) -> str:
    local = t.astimezone(LOCAL_TZ)
    return local.isoformat() if fmt is None else local.strftime(fmt)


def time_top(t: dt.datetime | None, dialect: str) -> str | None:
    """A top-level time: ``16-04-2015 16:17`` (seed, local) or ISO-8601 with offset."""
    if t is None:
        return None
    return _local_text(t, SEED_TOP_FORMAT if dialect == "seed" else None)


def time_flow(t: dt.datetime | None, dialect: str) -> str | None:
    """A flow time: ``16/04/2015 - 11:02:02`` (seed, local) or ISO-8601 with offset."""
    if t is None:
        return None
    return _local_text(t, SEED_FLOW_FORMAT if dialect == "seed" else None)


def number(text: str, as_number: bool = True) -> int | str:
    """A phone number/extension as JSON: a number when all digits (and asked), else text."""
    return int(text) if as_number and text.isdigit() else text


def recording_url(call: Call, base_url: str) -> str:
    """The v2 URL of ``call``'s recording on the host ``base_url``."""
    day = call.call_time.astimezone(LOCAL_TZ)
    path = V2_RECORDING_PATH.format(
        yyyy=f"{day:%Y}", mm=f"{day:%m}", dd=f"{day:%d}", uuid=call.uuid
    )
    return base_url + path


def _call_record(call: Call, dialect: str, base_url: str) -> str:
    if dialect != "v2":
        return vocab.call_record_text(call.call_record, dialect)
    return recording_url(call, base_url) if call.call_record == "YES" else "NO"


def listing_item(
    call: Call, dialect: str, unknown_fields: bool = False, base_url: str = ""
) -> dict[str, Any]:
    """One element of a listing's ``cdrs`` (v2: ``data``) array; ``base_url``: the
    serving host, for v2's recording URLs."""
    item: dict[str, Any] = {
        "uuid": call.uuid,
        "bf_calltype": call.call_type,
        "direction": call.direction,
        "caller": number(call.caller),
        "callee": number(call.callee),
    }
    if dialect != "seed" and call.extension is not None:
        name = "caller_extension" if dialect == "v2" else "extension"
        item[name] = number(call.extension, call.extension_as_number)
    item["call_time"] = time_top(call.call_time, dialect)
    item["answer_time"] = time_top(call.answer_time, dialect)
    item["hangup_time"] = time_top(call.hangup_time, dialect)
    item["call_record"] = _call_record(call, dialect, base_url)
    item["hangup_cause"] = vocab.hangup_cause_text(call.hangup_cause, dialect)
    item["hangup_state"] = vocab.hangup_state_text(call.hangup_state, dialect)
    if dialect == "v2":
        item["duration"] = _duration(call)
    if dialect != "seed":
        item["missing_call"] = call.missing_call
        price = call.call_price
        if price is None:
            item["call_price"] = None
        else:
            item["call_price"] = float(price) if call.price_as_number else str(price)
    if unknown_fields:
        item.update(UNKNOWN_TOP_FIELDS)
    return item


def _duration(call: Call) -> int:
    end = call.hangup_time or call.call_time
    return int((end - call.call_time).total_seconds())


def _origination(o: Origination, dialect: str) -> dict[str, Any]:
    v1 = dialect != "seed"
    return {
        "destination": number(o.destination) if v1 else o.destination,
        "start_time": time_flow(o.start_time, dialect),
        "answer_time": time_flow(o.answer_time, dialect),
        "hangup_time": time_flow(o.hangup_time, dialect),
        "result": vocab.result_text(o.result, dialect),
    }


def _step(step: FlowStep, dialect: str, unknown_fields: bool) -> dict[str, Any]:
    v1 = dialect != "seed"
    obj: dict[str, Any] = {
        "callee": number(step.callee) if v1 else step.callee,
        "start_time": time_flow(step.start_time, dialect),
        "answer_time": time_flow(step.answer_time, dialect),
        "hangup_time": time_flow(step.hangup_time, dialect),
        "redirection": vocab.redirection_text(step.kind, step.target, dialect),
    }
    if v1:
        obj["redirection_target"] = step.target
    if step.originations is not None:
        obj["origination"] = [_origination(o, dialect) for o in step.originations]
    if unknown_fields:
        obj.update(UNKNOWN_STEP_FIELDS)
    return obj


def detail_object(
    call: Call, dialect: str, fault: str | None = None, base_url: str = ""
) -> dict[str, Any]:
    """The ``cdr`` (v2: ``data``) object of a detail response; ``fault``
    ``malformed:<kind>`` breaks it the JSON way (the non-JSON kinds are handled by the app)."""
    unknown = fault == "unknown_field"
    obj = listing_item(call, dialect, unknown_fields=unknown, base_url=base_url)
    obj["call_flow"] = [_step(s, dialect, unknown) for s in call.flow]
    if fault == "malformed:impossible_date":
        obj["hangup_time"] = IMPOSSIBLE_DATE[dialect]
    elif fault == "malformed:flow_not_list":
        obj["call_flow"] = {str(i): step for i, step in enumerate(obj["call_flow"])}
    elif fault == "malformed:origination_missing_fields":
        for step in obj["call_flow"]:
            if step.get("origination"):
                step["origination"][0] = {}
                break
    return obj
