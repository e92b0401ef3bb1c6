"""Pure normalisation: raw Bulutfon CDR payloads -> typed pandas DataFrames + rejects.

No I/O and no dagster. Both API dialects (the seed document's Turkish labels and local
times, and the later v1 codes with ISO-8601 offsets) map onto the canonical vocabulary
of ``docs/architecture.md``.

Speed matters (a benchmark normalises ~1M rows): records are flattened with plain
Python loops into row tuples, labels are mapped through per-distinct-value dicts, and
every time value of a batch is parsed in one vectorised pass over its distinct strings.

A record that cannot be normalised becomes one :class:`Reject` and contributes no row
to any frame (all or nothing per call). Bad data never raises.

Frame dtypes:

* text columns: ``object`` holding ``str`` or ``None`` (NULL);
* instants: ``datetime64[us, UTC]`` (``NaT`` is NULL);
* ``call_date``: ``object`` holding :class:`datetime.date`;
* ``answered``, ``has_recording``, ``missing_call`` (cdrs), ``answered`` (originations):
  ``bool``;
* ``ring_seconds``, ``talk_seconds``: nullable ``Int64``; indices ``int64``;
* ``call_price``: ``object`` holding :class:`decimal.Decimal` (4 decimal places) or ``None``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from operator import itemgetter
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from bulutfon_pipeline.settings import LOCAL_TZ_NAME

__all__ = [
    "CALL_FLOW_STEP_COLUMNS",
    "CDR_COLUMNS",
    "LISTING_COLUMNS",
    "ORIGINATION_COLUMNS",
    "NormalizedDetails",
    "NormalizedListing",
    "Reject",
    "normalize_details",
    "normalize_listing",
    "parse_api_time",
]

STAGE = "normalize"

LISTING_COLUMNS: tuple[str, ...] = (
    "uuid",
    "call_time",
    "call_date",
    "direction",
    "caller",
    "callee",
)
CDR_COLUMNS: tuple[str, ...] = (
    "uuid",
    "call_type",
    "direction",
    "caller",
    "callee",
    "extension",
    "call_time",
    "answer_time",
    "hangup_time",
    "call_date",
    "answered",
    "ring_seconds",
    "talk_seconds",
    "call_record",
    "has_recording",
    "hangup_cause",
    "hangup_cause_code",
    "hangup_state",
    "hangup_state_code",
    "missing_call",
    "call_price",
)
CALL_FLOW_STEP_COLUMNS: tuple[str, ...] = (
    "cdr_uuid",
    "step_index",
    "callee",
    "start_time",
    "answer_time",
    "hangup_time",
    "redirection",
    "redirection_kind",
    "redirection_target",
)
ORIGINATION_COLUMNS: tuple[str, ...] = (
    "cdr_uuid",
    "step_index",
    "attempt_index",
    "destination",
    "start_time",
    "answer_time",
    "hangup_time",
    "result",
    "outcome",
    "answered",
)

# --- time formats -----------------------------------------------------------------------
#: Seed listing / top-level detail times: day-month-year, no seconds, local time.
SEED_TOP_TIME_FORMAT = "%d-%m-%Y %H:%M"
#: Seed call-flow times: local time.
SEED_FLOW_TIME_FORMAT = "%d/%m/%Y - %H:%M:%S"
_ISO_OFFSET_RE = r"(?:[Zz]|[+-]\d\d(?::?\d\d)?)$"
_TIME_UNIT = "datetime64[us]"

# --- canonical vocabulary (docs/architecture.md) ----------------------------------------
_RECORDING_PRESENT = frozenset({"Var", "YES"})
_HANGUP_CAUSE_TR = {
    "Normal": "NORMAL_CLEARING",
    "Aramayı başlatan cevaplanmadan iptal ediyor.": "ORIGINATOR_CANCEL",
    "Meşgul": "USER_BUSY",
    "Cevap yok": "NO_ANSWER",
}
#: v1 sends Q.850 / FreeSWITCH cause names (upper snake case); they pass through.
_Q850_NAME_RE = re.compile(r"[A-Z][A-Z0-9_]*")
_HANGUP_STATE_TR = {
    "İstemci tarafından sonlandırılan çağrı": "recv_bye",
    "Sistem tarafından sonlandırılan çağrı": "send_bye",
    "Arayan tarafından iptal edildi": "recv_cancel",
    "Reddedildi": "send_refuse",
}
_HANGUP_STATE_CODES = frozenset(
    {"send_bye", "recv_bye", "send_cancel", "recv_cancel", "send_refuse", "recv_refuse"}
)
_REDIRECTED_TR_RE = re.compile(r"(Menüye|Gruba|Dahiliye) Yönlendi - \((.*)\)", re.DOTALL)
_TARGET_KIND_TR = {"Menüye": "MENU", "Gruba": "GROUP", "Dahiliye": "EXTENSION"}
_CONNECTING_TR = {
    "Menüye bağlanılıyor": "CONNECTING_TO_MENU",
    "Gruba bağlanılıyor": "CONNECTING_TO_GROUP",
    "Dahiliye bağlanılıyor": "CONNECTING_TO_EXTENSION",
}
_REDIRECTION_CODES = frozenset(
    f"{verb}_TO_{target}"
    for verb in ("REDIRECTED", "CONNECTING")
    for target in ("MENU", "GROUP", "EXTENSION")
) | {"OTHER"}
_OUTCOME = {
    "Cevapladı": "ANSWERED",
    "Başkası açtı": "LOSE_RACE",
    "ANSWERED": "ANSWERED",
    "LOSE_RACE": "LOSE_RACE",
}
_MAX_PRICE = Decimal(10) ** 8  # DECIMAL(12,4): 8 integer digits
_PRICE_QUANTUM = Decimal("0.0001")


@dataclass(frozen=True)
class Reject:
    """A record that could not be loaded.

    Attributes:
        uuid: the call's uuid when the record has a usable one, else ``None``.
        stage: ``listing``, ``detail``, ``normalize`` or ``recording``.
        reason: short human text naming the field and the offending value.
        payload: JSON text of the offending record, if any.
    """

    uuid: str | None
    stage: str
    reason: str
    payload: str | None


@dataclass
class NormalizedListing:
    """Listing items as a frame with :data:`LISTING_COLUMNS`, plus the rejected items."""

    frame: pd.DataFrame
    rejects: list[Reject]


@dataclass
class NormalizedDetails:
    """Detail payloads as the ``cdrs``/``call_flow_steps``/``originations`` frames."""

    cdrs: pd.DataFrame
    call_flow_steps: pd.DataFrame
    originations: pd.DataFrame
    rejects: list[Reject]


class _BadRecordError(Exception):
    """Internal: the current record cannot be normalised (message = reject reason)."""


# --- scalar helpers ---------------------------------------------------------------------


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _dump(record: object) -> str | None:
    try:
        return json.dumps(record, ensure_ascii=False, default=str)
    except (TypeError, ValueError):  # circular structures and the like
        return _short(record, 10_000)


def _text(value: object, field: str) -> str | None:
    """Text exactly as sent; a JSON number becomes its decimal text."""
    kind = type(value)
    if kind is str or value is None:
        return value  # type: ignore[return-value]
    if kind is int:
        return str(value)
    if kind is float:
        assert isinstance(value, float)
        if not math.isfinite(value):
            raise _BadRecordError(f"{field}: not a finite number {_short(value)}")
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, Decimal) and value.is_finite():
        return str(value)
    raise _BadRecordError(f"{field}: expected text or number, got {_short(value)}")


def _uuid(record: Mapping[str, Any]) -> str:
    value = record.get("uuid")
    if type(value) is str and value.strip():
        return value
    if value is None:
        raise _BadRecordError("uuid: missing")
    raise _BadRecordError(f"uuid: not a non-empty string {_short(value)}")


def _price(value: object) -> Decimal | None:
    if value is None:
        return None
    if type(value) is bool or not isinstance(value, (int, float, str, Decimal)):
        raise _BadRecordError(f"call_price: not a number {_short(value)}")
    try:
        # str() first so a float keeps its shortest decimal spelling (0.0182, not 0.01819...)
        amount = Decimal(value.strip() if isinstance(value, str) else str(value))
    except InvalidOperation:
        raise _BadRecordError(f"call_price: unparseable {_short(value)}") from None
    if not amount.is_finite():
        raise _BadRecordError(f"call_price: not a finite number {_short(value)}")
    amount = amount.quantize(_PRICE_QUANTUM, rounding=ROUND_HALF_UP)
    if abs(amount) >= _MAX_PRICE:
        raise _BadRecordError(f"call_price: out of range for DECIMAL(12,4) {_short(value)}")
    return amount


def _missing_call(value: object) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if type(value) is int and value in (0, 1):
        return bool(value)
    raise _BadRecordError(f"missing_call: not a boolean {_short(value)}")


def _hangup_cause_code(value: str | None) -> str | None:
    if value is None:
        return None
    label = value.strip()
    if label in _HANGUP_CAUSE_TR:
        return _HANGUP_CAUSE_TR[label]
    return value if _Q850_NAME_RE.fullmatch(value) else None


def _hangup_state_code(value: str | None) -> str | None:
    if value is None:
        return None
    if value in _HANGUP_STATE_CODES:
        return value
    return _HANGUP_STATE_TR.get(value.strip())


def _redirection(key: tuple[str | None, str | None]) -> tuple[str, str | None]:
    """(redirection as sent, redirection_target as sent) -> (kind, target)."""
    value, sent_target = key
    if value is None:
        return "OTHER", None
    if value in _REDIRECTION_CODES:
        return value, sent_target
    label = value.strip()
    match = _REDIRECTED_TR_RE.fullmatch(label)
    if match:
        return f"REDIRECTED_TO_{_TARGET_KIND_TR[match[1]]}", match[2].strip() or None
    return _CONNECTING_TR.get(label, "OTHER"), None


def _map_distinct(values: list[Any], func: Callable[[Any], Any]) -> list[Any]:
    """``[func(v) for v in values]``, calling ``func`` once per distinct value."""
    table: dict[Hashable, Any] = {v: func(v) for v in set(values)}
    return [table[v] for v in values]


# --- vectorised time parsing --------------------------------------------------------------

_NAT = np.datetime64("NaT", "us")
#: The earliest instant accepted: any local time of 0001-01-01 has a Python date in UTC.
_EARLIEST = np.datetime64("0001-01-02T00:00:00", "us")
#: Seed formats: exact shape (zero padded, valid clock fields) before Arrow's strptime,
#: whose day-of-month is then cross-checked because strptime rolls 31-02 over to 03-03.
_SEED_FORMATS = (
    (SEED_TOP_TIME_FORMAT, r"^\d\d-\d\d-\d{4} ([01]\d|2[0-3]):[0-5]\d$"),
    (SEED_FLOW_TIME_FORMAT, r"^\d\d/\d\d/\d{4} - ([01]\d|2[0-3]):[0-5]\d:[0-5]\d$"),
)


def _local_to_utc(naive: np.ndarray) -> np.ndarray:
    """Istanbul wall-clock times -> naive UTC ``datetime64[us]`` (first of two, shift gaps)."""
    aware = pd.Series(naive, dtype=_TIME_UNIT).dt.tz_localize(
        LOCAL_TZ_NAME,
        ambiguous=np.ones(len(naive), dtype=bool),  # fall-back hour: the DST occurrence
        nonexistent="shift_forward",
    )
    return aware.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype=_TIME_UNIT)


def _strptime_exact(texts: pa.Array, fmt: str, shape: str) -> np.ndarray:
    """Naive ``datetime64[us]`` for texts of exactly ``fmt`` (day first), else ``NaT``."""
    shape_ok = pc.match_substring_regex(texts, shape)
    parsed = pc.strptime(texts, format=fmt, unit="us", error_is_null=True)
    day_text = pc.if_else(shape_ok, pc.utf8_slice_codeunits(texts, 0, 2), "00")
    same_day = pc.equal(pc.day(parsed), pc.cast(day_text, pa.int64()))
    ok = pc.fill_null(pc.and_kleene(shape_ok, same_day), False).to_numpy(zero_copy_only=False)
    out = parsed.to_numpy(zero_copy_only=False).astype(_TIME_UNIT)
    out[~ok] = _NAT
    return out


def _parse_distinct(values: Sequence[str]) -> np.ndarray:
    """Parse time strings of any supported format to naive UTC; bad ones become ``NaT``."""
    out = np.full(len(values), _NAT, dtype=_TIME_UNIT)
    if not values:
        return out
    texts = pa.array(values, type=pa.string())
    third = pc.utf8_slice_codeunits(texts, 2, 3)
    seen = np.zeros(len(values), dtype=bool)
    for (fmt, shape), sep in zip(_SEED_FORMATS, ("-", "/"), strict=True):
        mask = pc.equal(third, sep).to_numpy(zero_copy_only=False)
        if mask.any():
            out[mask] = _local_to_utc(_strptime_exact(texts.filter(pa.array(mask)), fmt, shape))
            seen |= mask
    if not seen.all():
        # ISO-8601 (v1); pandas' ISO parser validates the calendar.
        rest = np.flatnonzero(~seen)
        iso_texts = texts.take(pa.array(rest))
        iso = pd.Series(iso_texts.to_pandas(), dtype=object)
        has_offset = pc.match_substring_regex(iso_texts, _ISO_OFFSET_RE).to_numpy(
            zero_copy_only=False
        )
        if has_offset.any():
            aware = pd.to_datetime(iso[has_offset], format="ISO8601", utc=True, errors="coerce")
            out[rest[has_offset]] = aware.dt.tz_localize(None).to_numpy(dtype=_TIME_UNIT)
        if not has_offset.all():
            # ISO without an offset is Turkey local time, like every offset-less API time.
            naive = pd.to_datetime(iso[~has_offset], format="ISO8601", errors="coerce")
            out[rest[~has_offset]] = _local_to_utc(naive.to_numpy(dtype=_TIME_UNIT))
    # Year 0 parses (as do dates just after it) but has no Python date: not a real time.
    out[out < _EARLIEST] = _NAT
    return out


class _TimeCodes:
    """Interns time strings while flattening; every distinct string is parsed once.

    Rows carry an int code per time field (-1 = NULL) instead of the string, so a whole
    batch needs one vectorised parse of its distinct strings.
    """

    def __init__(self) -> None:
        self.codes: dict[str | None, int] = {None: -1}
        self.texts: list[str] = []

    def add(self, value: object, field: str) -> int:
        """Code of a not-yet-seen value (the hot path is an inline ``codes.get``)."""
        if type(value) is not str:
            raise _BadRecordError(f"{field}: expected a time string, got {_short(value)}")
        code = self.codes[value] = len(self.texts)
        self.texts.append(value)
        return code

    def parse(self) -> np.ndarray:
        """Naive UTC instants indexed by code; index -1 (the extra last slot) is NaT."""
        return np.append(_parse_distinct(self.texts), _NAT)


def _column(rows: list[tuple[Any, ...]], index: int) -> list[Any]:
    return list(map(itemgetter(index), rows))


def _codes(rows: list[tuple[Any, ...]], index: int) -> np.ndarray:
    return np.fromiter(map(itemgetter(index), rows), dtype=np.int64, count=len(rows))


def parse_api_time(value: object) -> datetime | None:
    """Parse one API time in any supported dialect.

    Args:
        value: ``"16-04-2015 16:17"``, ``"16/04/2015 - 11:02:02"`` (Istanbul local time)
            or ISO-8601 (with offset; without one it is Istanbul local time), or ``None``.

    Returns:
        An aware UTC ``datetime``, or ``None`` for ``None``.

    Raises:
        ValueError: the value is not a string in one of the supported formats.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"not a time string: {_short(value)}")
    parsed = _parse_distinct([value])[0]
    if np.isnat(parsed):
        raise ValueError(f"unparseable time: {_short(value)}")
    return pd.Timestamp(parsed).tz_localize("UTC").to_pydatetime()


def _utc_series(values: np.ndarray) -> pd.Series:
    return pd.Series(values, dtype=_TIME_UNIT).dt.tz_localize("UTC")


def _text_series(values: Sequence[Any]) -> pd.Series:
    # Explicit object dtype: pandas 3 would infer "str" and turn None into NaN.
    return pd.Series(values, dtype=object)


def _local_dates(utc_values: np.ndarray) -> pd.Series:
    local = _utc_series(utc_values).dt.tz_convert(LOCAL_TZ_NAME)
    return pd.Series(local.dt.date, dtype=object)


def _whole_seconds(end: np.ndarray, start: np.ndarray) -> pd.Series:
    """Whole seconds from ``start`` to ``end`` (truncated), NULL where either is missing."""
    missing = np.isnat(end) | np.isnat(start)
    delta = np.where(missing, 0, (end - start).astype("timedelta64[us]").astype(np.int64))
    seconds = np.where(delta >= 0, delta // 1_000_000, -(-delta // 1_000_000))
    return pd.Series(pd.arrays.IntegerArray(seconds.astype(np.int64), missing))


def _dedupe_last(records: Sequence[object]) -> set[int]:
    """Ordinals of records that a later record with the same uuid supersedes."""
    last: dict[str, int] = {}
    superseded: set[int] = set()
    for ordinal, record in enumerate(records):
        if isinstance(record, Mapping):
            uuid = record.get("uuid")
            if type(uuid) is str and uuid:
                previous = last.get(uuid)
                if previous is not None:
                    superseded.add(previous)
                last[uuid] = ordinal
    return superseded


def _reject_for(record: object, reason: str) -> Reject:
    uuid = record.get("uuid") if isinstance(record, Mapping) else None
    return Reject(
        uuid=uuid if type(uuid) is str and uuid else None,
        stage=STAGE,
        reason=reason,
        payload=_dump(record),
    )


# --- listing ---------------------------------------------------------------------------


def _is_object(value: object) -> bool:
    return type(value) is dict or isinstance(value, Mapping)


def normalize_listing(items: Sequence[Mapping[str, Any]]) -> NormalizedListing:
    """Normalise listing items (``GET /cdr.json`` ``cdrs`` entries).

    Args:
        items: the listing items as decoded from JSON, in any dialect. A uuid that occurs
            more than once (the live list shifts while paging) keeps its last occurrence.

    Returns:
        The frame (:data:`LISTING_COLUMNS`) and one ``normalize`` reject per bad item
        (not an object, no uuid, no or unparseable ``call_time``, non-scalar number).
    """
    rejects: dict[int, Reject] = {}
    superseded = _dedupe_last(items)
    times = _TimeCodes()
    coded: list[tuple[Any, ...]] = []
    for ordinal, item in enumerate(items):
        if ordinal in superseded:
            continue
        try:
            if not _is_object(item):
                raise _BadRecordError(f"item: not an object {_short(item)}")
            call_time = item.get("call_time")
            if call_time is None:
                raise _BadRecordError("call_time: missing")
            if type(call_time) is not str:
                raise _BadRecordError(f"call_time: expected a time string, got {_short(call_time)}")
            code = times.codes.get(call_time)
            if code is None:
                code = times.add(call_time, "call_time")
            coded.append(
                (
                    ordinal,
                    _uuid(item),
                    code,
                    call_time,
                    _text(item.get("direction"), "direction"),
                    _text(item.get("caller"), "caller"),
                    _text(item.get("callee"), "callee"),
                )
            )
        except _BadRecordError as exc:
            rejects[ordinal] = _reject_for(item, str(exc))

    instants = times.parse()
    call_time_utc = instants[_codes(coded, 2)]
    bad = np.isnat(call_time_utc)
    for position in np.flatnonzero(bad):
        ordinal, raw = coded[position][0], coded[position][3]
        rejects[ordinal] = _reject_for(items[ordinal], f"call_time: unparseable time {_short(raw)}")
    frame = pd.DataFrame(
        {
            "uuid": _text_series(_column(coded, 1)),
            "call_time": _utc_series(call_time_utc),
            "call_date": _local_dates(call_time_utc),
            "direction": _text_series(_column(coded, 4)),
            "caller": _text_series(_column(coded, 5)),
            "callee": _text_series(_column(coded, 6)),
        },
        columns=list(LISTING_COLUMNS),
    )
    if bad.any():
        frame = frame.loc[~bad].reset_index(drop=True)
    return NormalizedListing(frame=frame, rejects=[rejects[o] for o in sorted(rejects)])


# --- details ---------------------------------------------------------------------------

# Row layouts (tuples while flattening; time fields hold _TimeCodes codes).
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
        if not _is_object(step):
            continue
        candidates += [(f"call_flow[{si}].{n}", step.get(n)) for n in _TIME_FIELDS]
        attempts = step.get("origination")
        for ai, attempt in enumerate(attempts if isinstance(attempts, list) else ()):
            if _is_object(attempt):
                candidates += [
                    (f"call_flow[{si}].origination[{ai}].{n}", attempt.get(n)) for n in _TIME_FIELDS
                ]
    for name, value in candidates:
        if value is not None and type(value) is not str:
            return f"{name}: expected a time string, got {_short(value)}"
    return "unexpected value type"


def _flatten_details(
    payloads: Sequence[Mapping[str, Any]],
    times: _TimeCodes,
    rejects: dict[int, Reject],
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The hot loop: payloads -> row tuples, bad calls -> ``rejects`` (by ordinal)."""
    superseded = _dedupe_last(payloads)
    cdr_rows: list[tuple[Any, ...]] = []
    step_rows: list[tuple[Any, ...]] = []
    origination_rows: list[tuple[Any, ...]] = []
    tget = times.codes.get
    tadd = times.add
    text = _text
    for ordinal, cdr in enumerate(payloads):
        if ordinal in superseded:
            continue
        try:
            if not _is_object(cdr):
                raise _BadRecordError(f"cdr: not an object {_short(cdr)}")
            uuid = _uuid(cdr)
            v = cdr.get("call_time")
            if v is None:
                raise _BadRecordError("call_time: missing")
            call_time = tget(v)
            if call_time is None:
                call_time = tadd(v, "call_time")
            v = cdr.get("answer_time")
            answer_time = tget(v)
            if answer_time is None:
                answer_time = tadd(v, "answer_time")
            v = cdr.get("hangup_time")
            hangup_time = tget(v)
            if hangup_time is None:
                hangup_time = tadd(v, "hangup_time")
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
                _missing_call(cdr.get("missing_call")),
                _price(cdr.get("call_price")),
            )
            flow = cdr.get("call_flow")
            if flow is None:
                flow = ()
            elif type(flow) is not list:
                raise _BadRecordError(f"call_flow: not a list {_short(flow)}")
            steps: list[tuple[Any, ...]] = []
            attempts_rows: list[tuple[Any, ...]] = []
            for si, step in enumerate(flow):
                if type(step) is not dict and not isinstance(step, Mapping):
                    raise _BadRecordError(f"call_flow[{si}]: not an object {_short(step)}")
                try:
                    if "callee" not in step or "redirection" not in step:
                        missing = "callee" if "callee" not in step else "redirection"
                        raise _BadRecordError(f"{missing}: missing")
                    v = step.get("start_time")
                    if v is None:
                        raise _BadRecordError("start_time: missing")
                    start = tget(v)
                    if start is None:
                        start = tadd(v, "start_time")
                    v = step.get("answer_time")
                    answer = tget(v)
                    if answer is None:
                        answer = tadd(v, "answer_time")
                    v = step.get("hangup_time")
                    hangup = tget(v)
                    if hangup is None:
                        hangup = tadd(v, "hangup_time")
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
                        raise _BadRecordError(f"origination: not a list {_short(attempts)}")
                    for ai, attempt in enumerate(attempts):
                        if type(attempt) is not dict and not isinstance(attempt, Mapping):
                            raise _BadRecordError(
                                f"origination[{ai}]: not an object {_short(attempt)}"
                            )
                        try:
                            destination = attempt.get("destination")
                            if type(destination) is not str:
                                if destination is None:
                                    raise _BadRecordError("destination: missing")
                                destination = text(destination, "destination")
                            result = attempt.get("result", _ABSENT)
                            if type(result) is not str:
                                if result is _ABSENT:
                                    raise _BadRecordError("result: missing")
                                result = text(result, "result")
                            v = attempt.get("start_time")
                            if v is None:
                                raise _BadRecordError("start_time: missing")
                            start = tget(v)
                            if start is None:
                                start = tadd(v, "start_time")
                            v = attempt.get("answer_time")
                            answer = tget(v)
                            if answer is None:
                                answer = tadd(v, "answer_time")
                            v = attempt.get("hangup_time")
                            hangup = tget(v)
                            if hangup is None:
                                hangup = tadd(v, "hangup_time")
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
                        except _BadRecordError as exc:
                            raise _BadRecordError(f"origination[{ai}].{exc}") from None
                except _BadRecordError as exc:
                    raise _BadRecordError(f"call_flow[{si}].{exc}") from None
        except _BadRecordError as exc:
            rejects[ordinal] = _reject_for(cdr, str(exc))
            continue
        except TypeError:  # an unhashable value (list/object) where a time belongs
            rejects[ordinal] = _reject_for(cdr, _first_bad_time(cdr))
            continue
        cdr_rows.append(cdr_row)
        step_rows.extend(steps)
        origination_rows.extend(attempts_rows)
    return cdr_rows, step_rows, origination_rows


def _time_column(
    rows: list[tuple[Any, ...]],
    index: int,
    instants: np.ndarray,
    texts: list[str],
    field_of: Callable[[tuple[Any, ...]], str],
    payloads: Sequence[Mapping[str, Any]],
    rejects: dict[int, Reject],
) -> np.ndarray:
    """Instants of one time column; calls with an unparseable value go to ``rejects``."""
    codes = _codes(rows, index)
    values = instants[codes]
    bad = np.isnat(values) & (codes >= 0)
    for position in np.flatnonzero(bad):
        row = rows[position]
        if row[0] not in rejects:
            reason = f"{field_of(row)}: unparseable time {_short(texts[row[index]])}"
            rejects[row[0]] = _reject_for(payloads[row[0]], reason)
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
    times = _TimeCodes()
    cdr_rows, step_rows, origination_rows = _flatten_details(payloads, times, rejects)

    instants = times.parse()
    texts = times.texts

    def cdr_times(index: int, name: str) -> np.ndarray:
        return _time_column(cdr_rows, index, instants, texts, lambda row: name, payloads, rejects)

    def step_times(index: int, name: str) -> np.ndarray:
        return _time_column(
            step_rows,
            index,
            instants,
            texts,
            lambda row: f"call_flow[{row[_S_INDEX]}].{name}",
            payloads,
            rejects,
        )

    def attempt_times(index: int, name: str) -> np.ndarray:
        return _time_column(
            origination_rows,
            index,
            instants,
            texts,
            lambda row: f"call_flow[{row[_O_STEP]}].origination[{row[_O_ATTEMPT]}].{name}",
            payloads,
            rejects,
        )

    call_time = cdr_times(_C_CALL, "call_time")
    answer_time = cdr_times(_C_ANSWER, "answer_time")
    hangup_time = cdr_times(_C_HANGUP, "hangup_time")

    # --- cdrs ---
    answered = ~np.isnat(answer_time)
    ring_end = np.where(answered, answer_time, hangup_time)
    talk = _whole_seconds(hangup_time, answer_time)
    talk[~answered] = 0
    directions = _column(cdr_rows, _C_DIRECTION)
    derived_missing = (np.asarray(directions, dtype=object) == "IN") & ~answered
    missing_sent = _column(cdr_rows, _C_MISSING)
    missing_call = np.fromiter(
        (d if s is None else s for s, d in zip(missing_sent, derived_missing, strict=True)),
        dtype=bool,
        count=len(missing_sent),
    )
    records = _column(cdr_rows, _C_RECORD)
    causes = _column(cdr_rows, _C_CAUSE)
    states = _column(cdr_rows, _C_STATE)
    cdrs = pd.DataFrame(
        {
            "uuid": _text_series(_column(cdr_rows, _C_UUID)),
            "call_type": _text_series(_column(cdr_rows, _C_TYPE)),
            "direction": _text_series(directions),
            "caller": _text_series(_column(cdr_rows, _C_CALLER)),
            "callee": _text_series(_column(cdr_rows, _C_CALLEE)),
            "extension": _text_series(_column(cdr_rows, _C_EXTENSION)),
            "call_time": _utc_series(call_time),
            "answer_time": _utc_series(answer_time),
            "hangup_time": _utc_series(hangup_time),
            "call_date": _local_dates(call_time),
            "answered": pd.Series(answered, dtype=bool),
            "ring_seconds": _whole_seconds(ring_end, call_time),
            "talk_seconds": talk,
            "call_record": _text_series(records),
            "has_recording": pd.Series(
                _map_distinct(records, lambda v: v is not None and v.strip() in _RECORDING_PRESENT),
                dtype=bool,
            ),
            "hangup_cause": _text_series(causes),
            "hangup_cause_code": _text_series(_map_distinct(causes, _hangup_cause_code)),
            "hangup_state": _text_series(states),
            "hangup_state_code": _text_series(_map_distinct(states, _hangup_state_code)),
            "missing_call": pd.Series(missing_call, dtype=bool),
            "call_price": _text_series(_column(cdr_rows, _C_PRICE)),
        },
        columns=list(CDR_COLUMNS),
    )

    # --- call_flow_steps ---
    redirections = _column(step_rows, _S_REDIR)
    kinds_targets = _map_distinct(
        list(zip(redirections, _column(step_rows, _S_TARGET), strict=True)), _redirection
    )
    steps = pd.DataFrame(
        {
            "cdr_uuid": _text_series(_column(step_rows, _S_UUID)),
            "step_index": _codes(step_rows, _S_INDEX),
            "callee": _text_series(_column(step_rows, _S_CALLEE)),
            "start_time": _utc_series(step_times(_S_START, "start_time")),
            "answer_time": _utc_series(step_times(_S_ANSWER, "answer_time")),
            "hangup_time": _utc_series(step_times(_S_HANGUP, "hangup_time")),
            "redirection": _text_series(redirections),
            "redirection_kind": _text_series(list(map(itemgetter(0), kinds_targets))),
            "redirection_target": _text_series(list(map(itemgetter(1), kinds_targets))),
        },
        columns=list(CALL_FLOW_STEP_COLUMNS),
    )

    # --- originations ---
    results = _column(origination_rows, _O_RESULT)
    outcomes = _map_distinct(
        results, lambda v: "OTHER" if v is None else _OUTCOME.get(v.strip(), "OTHER")
    )
    originations = pd.DataFrame(
        {
            "cdr_uuid": _text_series(_column(origination_rows, _O_UUID)),
            "step_index": _codes(origination_rows, _O_STEP),
            "attempt_index": _codes(origination_rows, _O_ATTEMPT),
            "destination": _text_series(_column(origination_rows, _O_DEST)),
            "start_time": _utc_series(attempt_times(_O_START, "start_time")),
            "answer_time": _utc_series(attempt_times(_O_ANSWER, "answer_time")),
            "hangup_time": _utc_series(attempt_times(_O_HANGUP, "hangup_time")),
            "result": _text_series(results),
            "outcome": _text_series(outcomes),
            # picked up by this phone (a lost race also carries the group's answer time)
            "answered": pd.Series(np.asarray(outcomes, dtype=object) == "ANSWERED", dtype=bool),
        },
        columns=list(ORIGINATION_COLUMNS),
    )

    if rejects:
        bad = np.fromiter(rejects, dtype=np.int64, count=len(rejects))
        cdrs = _drop_ordinals(cdrs, _codes(cdr_rows, _C_ORD), bad)
        steps = _drop_ordinals(steps, _codes(step_rows, _S_ORD), bad)
        originations = _drop_ordinals(originations, _codes(origination_rows, _O_ORD), bad)
    return NormalizedDetails(
        cdrs=cdrs,
        call_flow_steps=steps,
        originations=originations,
        rejects=[rejects[o] for o in sorted(rejects)],
    )


def _drop_ordinals(frame: pd.DataFrame, ordinals: np.ndarray, bad: np.ndarray) -> pd.DataFrame:
    keep = ~np.isin(ordinals, bad)
    if keep.all():
        return frame
    return frame.loc[keep].reset_index(drop=True)
