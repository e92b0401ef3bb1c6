"""Listing items (``GET /cdr.json`` ``cdrs`` entries) -> the listing frame + rejects."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from bulutfon_pipeline.normalize import records
from bulutfon_pipeline.normalize.frames import (
    LISTING_COLUMNS,
    NormalizedListing,
    column,
    int_column,
    text_series,
)
from bulutfon_pipeline.normalize.times import TimeCodes, local_dates, utc_series


def normalize_listing(items: Sequence[Mapping[str, Any]]) -> NormalizedListing:
    """Normalise listing items (``GET /cdr.json`` ``cdrs`` entries).

    Args:
        items: the listing items as decoded from JSON, in any dialect. A uuid that occurs
            more than once (the live list shifts while paging) keeps its last occurrence.

    Returns:
        The frame (:data:`LISTING_COLUMNS`) and one ``normalize`` reject per bad item
        (not an object, no uuid, no or unparseable ``call_time``, non-scalar number).
    """
    rejects: dict[int, records.Reject] = {}
    superseded = records.dedupe_last(items)
    times = TimeCodes()
    coded: list[tuple[Any, ...]] = []
    for ordinal, item in enumerate(items):
        if ordinal in superseded:
            continue
        try:
            if not records.is_object(item):
                raise records.BadRecordError(f"item: not an object {records.short(item)}")
            call_time = item.get("call_time")
            if call_time is None:
                raise records.BadRecordError("call_time: missing")
            if type(call_time) is not str:
                raise records.BadRecordError(
                    f"call_time: expected a time string, got {records.short(call_time)}"
                )
            code = times.codes.get(call_time)
            if code is None:
                code = times.add(call_time, "call_time")
            coded.append(
                (
                    ordinal,
                    records.as_uuid(item),
                    code,
                    call_time,
                    records.as_text(item.get("direction"), "direction"),
                    records.as_text(item.get("caller"), "caller"),
                    records.as_text(item.get("callee"), "callee"),
                )
            )
        except records.BadRecordError as exc:
            rejects[ordinal] = records.reject_for(item, str(exc))

    instants = times.parse()
    call_time_utc = instants[int_column(coded, 2)]
    bad = np.isnat(call_time_utc)
    for position in np.flatnonzero(bad):
        ordinal, raw = coded[position][0], coded[position][3]
        rejects[ordinal] = records.reject_for(
            items[ordinal], f"call_time: unparseable time {records.short(raw)}"
        )
    frame = pd.DataFrame(
        {
            "uuid": text_series(column(coded, 1)),
            "call_time": utc_series(call_time_utc),
            "call_date": local_dates(call_time_utc),
            "direction": text_series(column(coded, 4)),
            "caller": text_series(column(coded, 5)),
            "callee": text_series(column(coded, 6)),
        },
        columns=list(LISTING_COLUMNS),
    )
    if bad.any():
        frame = frame.loc[~bad].reset_index(drop=True)
    return NormalizedListing(frame=frame, rejects=[rejects[o] for o in sorted(rejects)])
