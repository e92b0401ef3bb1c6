"""What the report says: the mart frames it reads and the numbers derived from them.

Numbers come only from the marts (``daily_call_summary``, ``hourly_call_load``,
``ring_group_performance``, ``missed_calls``), so the report says what a SQL user would
find. No matplotlib and no HTML here (``charts.py`` and ``page.py`` draw them).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd

from bulutfon_pipeline.warehouse import Warehouse

__all__ = ["TOP_MISSED_CALLERS", "ReportSummary", "read_marts", "summarize", "top_missed_callers"]

TOP_MISSED_CALLERS = 10


@dataclass(frozen=True)
class ReportSummary:
    """The headline numbers of a report, all taken from the marts."""

    first_day: dt.date | None
    last_day: dt.date | None
    calls: int
    answered: int
    answer_rate: float | None
    incoming: int
    incoming_answered: int
    missed_incoming: int
    callers_to_call_back: int
    busiest_weekday: str | None
    busiest_hour: int | None

    def markdown(self) -> str:
        """A short markdown table (Dagster metadata, the demo)."""
        rate = "n/a" if self.answer_rate is None else f"{self.answer_rate:.1%}"
        busiest = (
            "n/a"
            if self.busiest_weekday is None
            else f"{self.busiest_weekday} {self.busiest_hour:02d}:00–{self.busiest_hour:02d}:59"
        )
        rows = [
            ("days", f"{self.first_day} … {self.last_day}" if self.first_day else "none"),
            ("calls", f"{self.calls}"),
            ("answered", f"{self.answered} ({rate})"),
            ("incoming / answered", f"{self.incoming} / {self.incoming_answered}"),
            ("missed incoming calls", f"{self.missed_incoming}"),
            ("callers awaiting a call-back", f"{self.callers_to_call_back}"),
            ("busiest hour (local)", busiest),
        ]
        lines = ["| what | value |", "|---|---|", *(f"| {a} | {b} |" for a, b in rows)]
        return "\n".join(lines)


def read_marts(warehouse: Warehouse) -> dict[str, pd.DataFrame]:
    """The mart frames the report is drawn from: ``daily``, ``hourly``, ``groups``, ``missed``."""
    return {
        "daily": warehouse.fetch_frame(
            "SELECT * FROM daily_call_summary ORDER BY call_date, direction"
        ),
        "hourly": warehouse.fetch_frame("SELECT * FROM hourly_call_load ORDER BY weekday, hour"),
        "groups": warehouse.fetch_frame(
            "SELECT * FROM ring_group_performance ORDER BY ring_group, destination"
        ),
        "missed": warehouse.fetch_frame(
            "SELECT caller, caller_masked, needs_call_back, local_call_time FROM missed_calls"
        ),
    }


def summarize(frames: dict[str, pd.DataFrame]) -> ReportSummary:
    """The headline numbers from the mart frames of :func:`build_report`."""
    daily, hourly, missed = frames["daily"], frames["hourly"], frames["missed"]
    calls = int(daily["calls"].sum())
    answered = int(daily["answered"].sum())
    incoming = daily[daily["direction"] == "IN"]
    busiest_weekday: str | None = None
    busiest_hour: int | None = None
    if len(hourly):
        top = hourly.sort_values(["calls", "weekday", "hour"], ascending=[False, True, True])
        busiest_weekday = str(top.iloc[0]["weekday_name"])
        busiest_hour = int(top.iloc[0]["hour"])
    due = missed[missed["needs_call_back"].astype(bool)]
    return ReportSummary(
        first_day=pd.Timestamp(daily["call_date"].min()).date() if len(daily) else None,
        last_day=pd.Timestamp(daily["call_date"].max()).date() if len(daily) else None,
        calls=calls,
        answered=answered,
        answer_rate=answered / calls if calls else None,
        incoming=int(incoming["calls"].sum()),
        incoming_answered=int(incoming["answered"].sum()),
        missed_incoming=len(missed),
        callers_to_call_back=int(due["caller"].nunique()),
        busiest_weekday=busiest_weekday,
        busiest_hour=busiest_hour,
    )


def top_missed_callers(missed: pd.DataFrame, limit: int = TOP_MISSED_CALLERS) -> pd.DataFrame:
    """Unmasked callers with the most missed incoming calls (ties: latest try first)."""
    known = missed[~missed["caller_masked"].astype(bool)]
    if known.empty:
        return pd.DataFrame(columns=["caller", "missed", "last_try", "call_back_due"])
    grouped = known.groupby("caller").agg(
        missed=("caller", "size"),
        last_try=("local_call_time", "max"),
        call_back_due=("needs_call_back", "any"),
    )
    ordered = grouped.reset_index().sort_values(
        ["missed", "last_try", "caller"], ascending=[False, False, True]
    )
    return ordered.head(limit).reset_index(drop=True)
