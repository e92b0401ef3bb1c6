"""API times: every dialect's time strings -> UTC instants, parsed in vectorised passes.

Rows carry an int code per time field while flattening (:class:`TimeCodes`), so a whole
batch needs one parse of its distinct strings. Also the time-derived frame columns
(UTC instants, local dates, whole seconds). Imports only :mod:`.records` from the package.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from bulutfon_pipeline.normalize.records import BadRecordError, short
from bulutfon_pipeline.settings import LOCAL_TZ_NAME

#: Seed listing / top-level detail times: day-month-year, no seconds, local time.
SEED_TOP_TIME_FORMAT = "%d-%m-%Y %H:%M"
#: Seed call-flow times: local time.
SEED_FLOW_TIME_FORMAT = "%d/%m/%Y - %H:%M:%S"
_ISO_OFFSET_RE = r"(?:[Zz]|[+-]\d\d(?::?\d\d)?)$"
_TIME_UNIT = "datetime64[us]"
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


class TimeCodes:
    """Interns time strings while flattening; every distinct string is parsed once.

    Rows carry an int code per time field instead of the string, so a whole batch needs
    one vectorised parse of its distinct strings. NULL is -1 and strings count from 1:
    no code is 0, so the hot loop can write ``codes.get(v) or add(v, field)``.
    """

    def __init__(self) -> None:
        self.codes: dict[str | None, int] = {None: -1}
        self.texts: list[str] = []

    def add(self, value: object, field: str) -> int:
        """Code of a not-yet-seen value (the hot path is an inline ``codes.get``)."""
        if type(value) is not str:
            raise BadRecordError(f"{field}: expected a time string, got {short(value)}")
        self.texts.append(value)
        code = self.codes[value] = len(self.texts)
        return code

    def text(self, code: int) -> str:
        """The string of a (non-NULL) code."""
        return self.texts[code - 1]

    def parse(self) -> np.ndarray:
        """Naive UTC instants indexed by code; slot 0 (unused) and -1 (NULL) are NaT."""
        out = np.full(len(self.texts) + 2, _NAT, dtype=_TIME_UNIT)
        out[1:-1] = _parse_distinct(self.texts)
        return out


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
        raise ValueError(f"not a time string: {short(value)}")
    parsed = _parse_distinct([value])[0]
    if np.isnat(parsed):
        raise ValueError(f"unparseable time: {short(value)}")
    return pd.Timestamp(parsed).tz_localize("UTC").to_pydatetime()


def utc_series(values: np.ndarray) -> pd.Series:
    """Naive UTC ``datetime64[us]`` values -> a ``datetime64[us, UTC]`` column."""
    return pd.Series(values, dtype=_TIME_UNIT).dt.tz_localize("UTC")


def local_dates(utc_values: np.ndarray) -> pd.Series:
    """Naive UTC instants -> their Istanbul calendar dates (``call_date``)."""
    local = utc_series(utc_values).dt.tz_convert(LOCAL_TZ_NAME)
    return pd.Series(local.dt.date, dtype=object)


def whole_seconds(end: np.ndarray, start: np.ndarray) -> pd.Series:
    """Whole seconds from ``start`` to ``end`` (truncated), NULL where either is missing."""
    missing = np.isnat(end) | np.isnat(start)
    delta = np.where(missing, 0, (end - start).astype("timedelta64[us]").astype(np.int64))
    seconds = np.where(delta >= 0, delta // 1_000_000, -(-delta // 1_000_000))
    return pd.Series(pd.arrays.IntegerArray(seconds.astype(np.int64), missing))
