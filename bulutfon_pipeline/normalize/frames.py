"""The output shapes: column orders, the result dataclasses, and column builders.

Frame dtypes:

* text columns: ``object`` holding ``str`` or ``None`` (NULL);
* instants: ``datetime64[us, UTC]`` (``NaT`` is NULL);
* ``call_date``: ``object`` holding :class:`datetime.date`;
* ``answered``, ``has_recording``, ``missing_call`` (cdrs), ``answered`` (originations):
  ``bool``;
* ``ring_seconds``, ``talk_seconds``: nullable ``Int64``; indices ``int64``;
* ``call_price``: ``object`` holding :class:`decimal.Decimal` (4 decimal places) or ``None``.

Imports only :mod:`.records` from the package.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import numpy as np
import pandas as pd

from bulutfon_pipeline.normalize.records import Reject

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


def column(rows: list[tuple[Any, ...]], index: int) -> list[Any]:
    """Field ``index`` of every row tuple."""
    return list(map(itemgetter(index), rows))


def int_column(rows: list[tuple[Any, ...]], index: int) -> np.ndarray:
    """Integer field ``index`` of every row tuple, as ``int64``."""
    return np.fromiter(map(itemgetter(index), rows), dtype=np.int64, count=len(rows))


def text_series(values: Sequence[Any]) -> pd.Series:
    """A text column: ``str`` or ``None``."""
    # Explicit object dtype: pandas 3 would infer "str" and turn None into NaN.
    return pd.Series(values, dtype=object)


def drop_ordinals(frame: pd.DataFrame, ordinals: np.ndarray, bad: np.ndarray) -> pd.DataFrame:
    """``frame`` without the rows whose record ordinal is in ``bad``."""
    keep = ~np.isin(ordinals, bad)
    if keep.all():
        return frame
    return frame.loc[keep].reset_index(drop=True)
