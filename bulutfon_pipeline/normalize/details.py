"""Call details (``GET /cdr/{uuid}.json``) -> the cdrs, call_flow_steps, originations frames.

The hot loop (:func:`_flatten_details`) turns payloads into plain row tuples whose time
fields hold :class:`~.times.TimeCodes` codes; the frames are then built column by column.
Imports records, vocabulary, times and frames; no module of the package imports it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from typing import Any

import numpy as np
import pandas as pd

from bulutfon_pipeline.normalize.frames import (
    CALL_FLOW_STEP_COLUMNS,
    CDR_COLUMNS,
    ORIGINATION_COLUMNS,
    NormalizedDetails,
    column,
    drop_ordinals,
    int_column,
    text_series,
)
from bulutfon_pipeline.normalize.records import (
    BadRecordError,
    Reject,
    as_missing_call,
    as_price,
    as_text,
    as_uuid,
    dedupe_last,
    is_object,
    reject_for,
    short,
)
from bulutfon_pipeline.normalize.times import TimeCodes, local_dates, utc_series, whole_seconds
from bulutfon_pipeline.normalize.vocabulary import (
    hangup_cause_code,
    hangup_state_code,
    has_recording,
    map_distinct,
    outcome_code,
    redirection_kind,
)

# Row layouts (tuples while flattening; time fields hold TimeCodes codes). Start, answer
# and hangup times are consecutive fields: `span` in normalize_details relies on it.
_C_ORD, _C_UUID, _C_TYPE, _C_DIRECTION, _C_CALLER, _C_CALLEE, _C_EXTENSION = range(7)
_C_CALL, _C_ANSWER, _C_HANGUP, _C_RECORD, _C_CAUSE, _C_STATE, _C_MISSING, _C_PRICE = range(7, 15)
_S_ORD, _S_UUID, _S_INDEX, _S_CALLEE, _S_START, _S_ANSWER, _S_HANGUP, _S_REDIR, _S_TARGET = range(9)
_O_ORD, _O_UUID, _O_STEP, _O_ATTEMPT, _O_DEST, _O_START, _O_ANSWER, _O_HANGUP, _O_RESULT = range(9)
_TIME_FIELDS = ("start_time", "answer_time", "hangup_time")
_ABSENT = object()


def _first_bad_time(cdr: Mapping[str, Any]) -> str:
    """Reason for a call whose time field holds an unhashable value (a list or object)."""
    candidates: list[tuple[str, object]] = [
        (name, cdr.get(name)) for name in ("call_time", "answer_time", "hangup_time")
    ]
    flow = cdr.get("call_flow")
    for si, step in enumerate(flow if isinstance(flow, list) else ()):
        if not is_object(step):
            continue
        candidates += [(f"call_flow[{si}].{n}", step.get(n)) for n in _TIME_FIELDS]
        attempts = step.get("origination")
        for ai, attempt in enumerate(attempts if isinstance(attempts, list) else ()):
            if is_object(attempt):
                candidates += [
                    (f"call_flow[{si}].origination[{ai}].{n}", attempt.get(n)) for n in _TIME_FIELDS
                ]
    for name, value in candidates:
        if value is not None and type(value) is not str:
            return f"{name}: expected a time string, got {short(value)}"
    return "unexpected value type"


def _flatten_details(
    payloads: Sequence[Mapping[str, Any]],
    times: TimeCodes,
    rejects: dict[int, Reject],
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The hot loop: payloads -> row tuples, bad calls -> ``rejects`` (by ordinal)."""
    superseded = dedupe_last(payloads)
    cdr_rows: list[tuple[Any, ...]] = []
    step_rows: list[tuple[Any, ...]] = []
    origination_rows: list[tuple[Any, ...]] = []
    # The time lookup is inlined (``tget(v) or tadd(v, field)``: no call on a hit, and
    # codes are never 0; -1 is NULL) because a helper call per call, step and attempt
    # made this loop 15-25% slower (its CPU time alone on 20,000 seed calls).
    tget = times.codes.get
    tadd = times.add
    text = as_text
    for ordinal, cdr in enumerate(payloads):
        if ordinal in superseded:
            continue
        try:
            if not is_object(cdr):
                raise BadRecordError(f"cdr: not an object {short(cdr)}")
            uuid = as_uuid(cdr)
            call_time = tget(v := cdr.get("call_time")) or tadd(v, "call_time")
            if call_time < 0:
                raise BadRecordError("call_time: missing")
            answer_time = tget(v := cdr.get("answer_time")) or tadd(v, "answer_time")
            hangup_time = tget(v := cdr.get("hangup_time")) or tadd(v, "hangup_time")
            cdr_row = (
                ordinal,
                uuid,
                text(cdr.get("bf_calltype"), "bf_calltype"),
                text(cdr.get("direction"), "direction"),
                text(cdr.get("caller"), "caller"),
                text(cdr.get("callee"), "callee"),
                text(cdr.get("extension"), "extension"),
                call_time,
                answer_time,
                hangup_time,
                text(cdr.get("call_record"), "call_record"),
                text(cdr.get("hangup_cause"), "hangup_cause"),
                text(cdr.get("hangup_state"), "hangup_state"),
                as_missing_call(cdr.get("missing_call")),
                as_price(cdr.get("call_price")),
            )
            flow = cdr.get("call_flow")
            if flow is None:
                flow = ()
            elif type(flow) is not list:
                raise BadRecordError(f"call_flow: not a list {short(flow)}")
            steps: list[tuple[Any, ...]] = []
            attempts_rows: list[tuple[Any, ...]] = []
            for si, step in enumerate(flow):
                if type(step) is not dict and not isinstance(step, Mapping):
                    raise BadRecordError(f"call_flow[{si}]: not an object {short(step)}")
                try:
                    if "callee" not in step or "redirection" not in step:
                        missing = "callee" if "callee" not in step else "redirection"
                        raise BadRecordError(f"{missing}: missing")
                    start = tget(v := step.get("start_time")) or tadd(v, "start_time")
                    if start < 0:
                        raise BadRecordError("start_time: missing")
                    answer = tget(v := step.get("answer_time")) or tadd(v, "answer_time")
                    hangup = tget(v := step.get("hangup_time")) or tadd(v, "hangup_time")
                    callee = step["callee"]
                    if type(callee) is not str:
                        callee = text(callee, "callee")
                    redirection = step["redirection"]
                    if type(redirection) is not str:
                        redirection = text(redirection, "redirection")
                    target = step.get("redirection_target")
                    if target is not None:
                        target = text(target, "redirection_target")
                    steps.append(
                        (ordinal, uuid, si, callee, start, answer, hangup, redirection, target)
                    )
                    attempts = step.get("origination")
                    if attempts is None:
                        continue
                    if type(attempts) is not list:
                        raise BadRecordError(f"origination: not a list {short(attempts)}")
                    for ai, attempt in enumerate(attempts):
                        if type(attempt) is not dict and not isinstance(attempt, Mapping):
                            raise BadRecordError(
                                f"origination[{ai}]: not an object {short(attempt)}"
                            )
                        try:
                            destination = attempt.get("destination")
                            if type(destination) is not str:
                                if destination is None:
                                    raise BadRecordError("destination: missing")
                                destination = text(destination, "destination")
                            result = attempt.get("result", _ABSENT)
                            if type(result) is not str:
                                if result is _ABSENT:
                                    raise BadRecordError("result: missing")
                                result = text(result, "result")
                            start = tget(v := attempt.get("start_time")) or tadd(v, "start_time")
                            if start < 0:
                                raise BadRecordError("start_time: missing")
                            answer = tget(v := attempt.get("answer_time")) or tadd(v, "answer_time")
                            hangup = tget(v := attempt.get("hangup_time")) or tadd(v, "hangup_time")
                            attempts_rows.append(
                                (
                                    ordinal,
                                    uuid,
                                    si,
                                    ai,
                                    destination,
                                    start,
                                    answer,
                                    hangup,
                                    result,
                                )
                            )
                        except BadRecordError as exc:
                            raise BadRecordError(f"origination[{ai}].{exc}") from None
                except BadRecordError as exc:
                    raise BadRecordError(f"call_flow[{si}].{exc}") from None
        except BadRecordError as exc:
            rejects[ordinal] = reject_for(cdr, str(exc))
            continue
        except TypeError:  # an unhashable value (list/object) where a time belongs
            rejects[ordinal] = reject_for(cdr, _first_bad_time(cdr))
            continue
        cdr_rows.append(cdr_row)
        step_rows.extend(steps)
        origination_rows.extend(attempts_rows)
    return cdr_rows, step_rows, origination_rows


def _time_column(
    rows: list[tuple[Any, ...]],
    index: int,
    field: str,
    where: Callable[[tuple[Any, ...]], str],
    instants: np.ndarray,
    times: TimeCodes,
    payloads: Sequence[Mapping[str, Any]],
    rejects: dict[int, Reject],
) -> np.ndarray:
    """Instants of one time column; calls with an unparseable value go to ``rejects``.

    ``where(row)`` is the path of the row's record inside its call (``call_flow[0].``).
    """
    codes = int_column(rows, index)
    values = instants[codes]
    bad = np.isnat(values) & (codes >= 0)
    for position in np.flatnonzero(bad):
        row = rows[position]
        if row[0] not in rejects:
            value = short(times.text(row[index]))
            reason = f"{where(row)}{field}: unparseable time {value}"
            rejects[row[0]] = reject_for(payloads[row[0]], reason)
    return values


def normalize_details(payloads: Sequence[Mapping[str, Any]]) -> NormalizedDetails:
    """Normalise call details into the ``cdrs``, ``call_flow_steps``, ``originations`` frames.

    Args:
        payloads: the inner ``cdr`` objects of ``GET /cdr/{uuid}.json`` responses, in any
            dialect. A uuid that occurs more than once keeps its last occurrence.

    Returns:
        The three frames (columns as in ``docs/architecture.md``; ``cdrs`` without
        ``loaded_at``) and one ``normalize`` reject per bad call. A rejected call has no
        row in any frame. A call is bad when it is not an object, lacks ``uuid`` or
        ``call_time``, has a time that does not parse, a ``call_flow``/``origination``
        that is not a list, a step that is not an object or lacks ``callee``,
        ``start_time`` or ``redirection``, an origination that is not an object or lacks
        ``destination``, ``start_time`` or ``result``, a non-scalar where text belongs,
        a ``missing_call`` that is not a boolean, or an unparseable ``call_price``.
    """
    rejects: dict[int, Reject] = {}
    times = TimeCodes()
    cdr_rows, step_rows, origination_rows = _flatten_details(payloads, times, rejects)

    instants = times.parse()

    def instants_of(
        rows: list[tuple[Any, ...]],
        index: int,
        field: str,
        where: Callable[[tuple[Any, ...]], str] = lambda row: "",
    ) -> np.ndarray:
        return _time_column(rows, index, field, where, instants, times, payloads, rejects)

    def span(
        rows: list[tuple[Any, ...]], start: int, where: Callable[[tuple[Any, ...]], str]
    ) -> dict[str, pd.Series]:
        """The start/answer/hangup columns of step or origination rows."""
        return {
            field: utc_series(instants_of(rows, start + offset, field, where))
            for offset, field in enumerate(_TIME_FIELDS)
        }

    call_time = instants_of(cdr_rows, _C_CALL, "call_time")
    answer_time = instants_of(cdr_rows, _C_ANSWER, "answer_time")
    hangup_time = instants_of(cdr_rows, _C_HANGUP, "hangup_time")

    # --- cdrs ---
    answered = ~np.isnat(answer_time)
    ring_end = np.where(answered, answer_time, hangup_time)
    talk = whole_seconds(hangup_time, answer_time)
    talk[~answered] = 0
    directions = column(cdr_rows, _C_DIRECTION)
    derived_missing = (np.asarray(directions, dtype=object) == "IN") & ~answered
    missing_sent = column(cdr_rows, _C_MISSING)
    missing_call = np.fromiter(
        (d if s is None else s for s, d in zip(missing_sent, derived_missing, strict=True)),
        dtype=bool,
        count=len(missing_sent),
    )
    records = column(cdr_rows, _C_RECORD)
    causes = column(cdr_rows, _C_CAUSE)
    states = column(cdr_rows, _C_STATE)
    cdrs = pd.DataFrame(
        {
            "uuid": text_series(column(cdr_rows, _C_UUID)),
            "call_type": text_series(column(cdr_rows, _C_TYPE)),
            "direction": text_series(directions),
            "caller": text_series(column(cdr_rows, _C_CALLER)),
            "callee": text_series(column(cdr_rows, _C_CALLEE)),
            "extension": text_series(column(cdr_rows, _C_EXTENSION)),
            "call_time": utc_series(call_time),
            "answer_time": utc_series(answer_time),
            "hangup_time": utc_series(hangup_time),
            "call_date": local_dates(call_time),
            "answered": pd.Series(answered, dtype=bool),
            "ring_seconds": whole_seconds(ring_end, call_time),
            "talk_seconds": talk,
            "call_record": text_series(records),
            "has_recording": pd.Series(
                map_distinct(records, has_recording),
                dtype=bool,
            ),
            "hangup_cause": text_series(causes),
            "hangup_cause_code": text_series(map_distinct(causes, hangup_cause_code)),
            "hangup_state": text_series(states),
            "hangup_state_code": text_series(map_distinct(states, hangup_state_code)),
            "missing_call": pd.Series(missing_call, dtype=bool),
            "call_price": text_series(column(cdr_rows, _C_PRICE)),
        },
        columns=list(CDR_COLUMNS),
    )

    # --- call_flow_steps ---
    redirections = column(step_rows, _S_REDIR)
    kinds_targets = map_distinct(
        list(zip(redirections, column(step_rows, _S_TARGET), strict=True)), redirection_kind
    )
    steps = pd.DataFrame(
        {
            "cdr_uuid": text_series(column(step_rows, _S_UUID)),
            "step_index": int_column(step_rows, _S_INDEX),
            "callee": text_series(column(step_rows, _S_CALLEE)),
            **span(step_rows, _S_START, lambda row: f"call_flow[{row[_S_INDEX]}]."),
            "redirection": text_series(redirections),
            "redirection_kind": text_series(list(map(itemgetter(0), kinds_targets))),
            "redirection_target": text_series(list(map(itemgetter(1), kinds_targets))),
        },
        columns=list(CALL_FLOW_STEP_COLUMNS),
    )

    # --- originations ---
    results = column(origination_rows, _O_RESULT)
    outcomes = map_distinct(results, outcome_code)
    originations = pd.DataFrame(
        {
            "cdr_uuid": text_series(column(origination_rows, _O_UUID)),
            "step_index": int_column(origination_rows, _O_STEP),
            "attempt_index": int_column(origination_rows, _O_ATTEMPT),
            "destination": text_series(column(origination_rows, _O_DEST)),
            **span(
                origination_rows,
                _O_START,
                lambda row: f"call_flow[{row[_O_STEP]}].origination[{row[_O_ATTEMPT]}].",
            ),
            "result": text_series(results),
            "outcome": text_series(outcomes),
            # picked up by this phone (a lost race also carries the group's answer time)
            "answered": pd.Series(np.asarray(outcomes, dtype=object) == "ANSWERED", dtype=bool),
        },
        columns=list(ORIGINATION_COLUMNS),
    )

    if rejects:
        bad = np.fromiter(rejects, dtype=np.int64, count=len(rejects))
        cdrs = drop_ordinals(cdrs, int_column(cdr_rows, _C_ORD), bad)
        steps = drop_ordinals(steps, int_column(step_rows, _S_ORD), bad)
        originations = drop_ordinals(originations, int_column(origination_rows, _O_ORD), bad)
    return NormalizedDetails(
        cdrs=cdrs,
        call_flow_steps=steps,
        originations=originations,
        rejects=[rejects[o] for o in sorted(rejects)],
    )
