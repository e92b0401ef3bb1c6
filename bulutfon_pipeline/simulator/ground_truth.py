"""The warehouse rows a correct load of a dataset produces, derived from the model itself.

This is what tests compare the warehouse to, so it never passes through
``bulutfon_pipeline.normalize``: it imports only ``settings`` (the local time zone),
:mod:`.vocab` (the as-sent texts), :mod:`.model` and :mod:`.faults`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from bulutfon_pipeline.settings import LOCAL_TZ
from bulutfon_pipeline.simulator import vocab
from bulutfon_pipeline.simulator.faults import reject_stage
from bulutfon_pipeline.simulator.model import Call, gc_paused
from bulutfon_pipeline.simulator.render import recording_url

__all__ = ["expected_tables"]


def expected_tables(
    calls: Iterable[Call], faults: Mapping[str, str], dialect: str, base_url: str = ""
) -> dict[str, list[dict[str, Any]]]:
    """The rows of ``cdrs``, ``call_flow_steps``, ``originations`` and ``load_rejects`` for
    ``calls`` (in listing order) with ``faults`` (uuid -> fault), served in ``dialect``.

    Columns as in docs/architecture.md without ``loaded_at`` (rejects: ``uuid`` and
    ``stage``). As-sent columns hold the served dialect's text. ``step_index`` and
    ``attempt_index`` are 0-based positions in ``call_flow`` / ``origination``. v2's
    ``call_record`` is the recording's URL on ``base_url`` (the serving host) or ``NO``.
    """
    cdrs: list[dict[str, Any]] = []
    steps: list[dict[str, Any]] = []
    origs: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    v1 = dialect != "seed"
    with gc_paused():
        for call in calls:
            stage = reject_stage(faults.get(call.uuid))
            if stage is not None:
                rejects.append({"uuid": call.uuid, "stage": stage})
                continue
            cdrs.append(_cdr_row(call, dialect, base_url))
            for si, step in enumerate(call.flow):
                steps.append({
                    "cdr_uuid": call.uuid,
                    "step_index": si,
                    "callee": step.callee,
                    "start_time": step.start_time,
                    "answer_time": step.answer_time,
                    "hangup_time": step.hangup_time,
                    "redirection": vocab.redirection_text(step.kind, step.target, dialect),
                    "redirection_kind": step.kind,
                    "redirection_target": step.target,
                })  # fmt: skip
                for ai, o in enumerate(step.originations or ()):
                    origs.append({
                        "cdr_uuid": call.uuid,
                        "step_index": si,
                        "attempt_index": ai,
                        "destination": o.destination,
                        "start_time": o.start_time,
                        "answer_time": o.answer_time,
                        "hangup_time": o.hangup_time,
                        "result": o.result if v1 else vocab.RESULT_SEED[o.result],
                        "outcome": o.result if o.result in vocab.OUTCOMES else "OTHER",
                        "answered": o.result == "ANSWERED",
                    })  # fmt: skip
    return {"cdrs": cdrs, "call_flow_steps": steps, "originations": origs,
            "load_rejects": rejects}  # fmt: skip


def _call_record(call: Call, dialect: str, base_url: str) -> str:
    """``call_record`` as the dialect sends it (v2: the recording's URL or ``NO``)."""
    if dialect != "v2":
        return vocab.call_record_text(call.call_record, dialect)
    return recording_url(call, base_url) if call.call_record == "YES" else "NO"


def _seconds(a: dt.datetime | None, b: dt.datetime | None) -> int | None:
    if a is None or b is None:
        return None
    return int((b - a).total_seconds())


def _cdr_row(call: Call, dialect: str, base_url: str) -> dict[str, Any]:
    v1 = dialect != "seed"
    answered = call.answer_time is not None
    return {
        "uuid": call.uuid,
        "call_type": call.call_type,
        "direction": call.direction,
        "caller": call.caller,
        "callee": call.callee,
        "extension": call.extension if v1 else None,
        "call_time": call.call_time,
        "answer_time": call.answer_time,
        "hangup_time": call.hangup_time,
        "call_date": call.call_time.astimezone(LOCAL_TZ).date(),
        "answered": answered,
        "ring_seconds": _seconds(call.call_time, call.answer_time or call.hangup_time),
        "talk_seconds": _seconds(call.answer_time, call.hangup_time) if answered else 0,
        "call_record": _call_record(call, dialect, base_url),
        "has_recording": call.call_record == "YES",
        "hangup_cause": vocab.hangup_cause_text(call.hangup_cause, dialect),
        "hangup_cause_code": call.hangup_cause,
        "hangup_state": vocab.hangup_state_text(call.hangup_state, dialect),
        "hangup_state_code": call.hangup_state,
        "missing_call": call.missing_call,
        "call_price": call.call_price if v1 else None,
    }
