"""What the report says: the mart frames it reads and the numbers derived from them.

Numbers come only from the marts (``daily_call_summary``, ``hourly_call_load``,
``ring_group_performance``, ``missed_calls``, ``working_hours_service_level``), so the
report says what a SQL user would find. Extensions and ring groups are shown as their
number and their name at the call's time (:func:`labelled`). No matplotlib and no HTML
here (``charts.py`` and ``page.py`` draw them).

The marts are per account (issue 14). :func:`read_marts` reads one account's rows or every
account's; :func:`across_accounts` folds several accounts' frames into the shapes the
charts and :func:`summarize` take (counts summed per day or hour; ring groups and callers
named with their account, so none is merged with another account's), and
:func:`account_summary` has one row per account.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd

from bulutfon_pipeline.warehouse import Warehouse

__all__ = [
    "TOP_MISSED_CALLERS",
    "ReportSummary",
    "account_summary",
    "across_accounts",
    "labelled",
    "read_marts",
    "ring_group_table",
    "service_level_table",
    "summarize",
    "top_missed_callers",
]

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


def read_marts(warehouse: Warehouse, *, account: str | None = None) -> dict[str, pd.DataFrame]:
    """The mart frames the report is drawn from: ``daily``, ``hourly``, ``groups``,
    ``missed``, ``service`` (working hours), each with its ``account`` column.

    Args:
        account: only this account's rows; default every account's.
    """
    where, params = ("", []) if account is None else ("WHERE account = ? ", [account])

    def read(sql: str, order: str) -> pd.DataFrame:
        return warehouse.fetch_frame(f"{sql} {where}ORDER BY account, {order}", params)

    return {
        "daily": read("SELECT * FROM daily_call_summary", "call_date, direction"),
        "hourly": read("SELECT * FROM hourly_call_load", "weekday, hour"),
        "groups": read(
            "SELECT * FROM ring_group_performance",
            "ring_group, ring_group_name, destination, destination_name",
        ),
        "missed": read(
            "SELECT account, caller, caller_masked, needs_call_back, local_call_time "
            "FROM missed_calls",
            "local_call_time, caller",
        ),
        "service": read("SELECT * FROM working_hours_service_level", "number, call_date"),
    }


def _accounts(frames: dict[str, pd.DataFrame]) -> list[str]:
    names: set[str] = set()
    for frame in frames.values():
        if "account" in frame:
            names.update(str(name) for name in frame["account"].unique())
    return sorted(names)


def across_accounts(frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """``frames`` (of :func:`read_marts`) as one account's would be: the same frames when
    they hold one account; for several, calls summed per day and direction and per
    weekday and hour (the averages, percentiles and rates of one account do not add up,
    so ``daily`` keeps counts and an ``answer_rate`` of the sums), and ring groups and
    callers and numbers named ``account · name``."""
    if len(_accounts(frames)) <= 1:
        return frames
    daily = (
        frames["daily"]
        .groupby(["call_date", "direction"], as_index=False, dropna=False)[
            ["calls", "answered", "missed"]
        ]
        .sum()
    )
    daily["answer_rate"] = daily["answered"] / daily["calls"]
    counts = ["calls", "incoming", "outgoing", "answered", "missed_incoming"]
    hourly = (
        frames["hourly"].groupby(["weekday", "weekday_name", "hour"], as_index=False)[counts].sum()
    )

    def named(frame: pd.DataFrame, column: str) -> pd.DataFrame:
        out = frame.copy()
        out[column] = out["account"].astype(str) + " · " + out[column].astype(str)
        return out

    return {
        "daily": daily,
        "hourly": hourly,
        "groups": named(frames["groups"], "ring_group"),
        "missed": named(frames["missed"], "caller"),
        "service": named(frames["service"], "number"),
    }


def account_summary(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per account of :func:`read_marts`'s frames: ``account``, ``calls``,
    ``answered``, ``answer_rate``, ``missed_incoming``, ``callers_to_call_back``."""
    rows = []
    for name in _accounts(frames):
        one = {key: frame[frame["account"] == name] for key, frame in frames.items()}
        summary = summarize(one)
        rows.append(
            {
                "account": name,
                "calls": summary.calls,
                "answered": summary.answered,
                "answer_rate": summary.answer_rate,
                "missed_incoming": summary.missed_incoming,
                "callers_to_call_back": summary.callers_to_call_back,
            }
        )
    columns = ["account", "calls", "answered", "answer_rate", "missed_incoming"]
    return pd.DataFrame(rows, columns=[*columns, "callers_to_call_back"])


def summarize(frames: dict[str, pd.DataFrame]) -> ReportSummary:
    """The headline numbers from the mart frames of :func:`build_report` (of every account
    they hold: :func:`across_accounts` first)."""
    frames = across_accounts(frames)
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


def labelled(number: object, name: object) -> str:
    """``1004 · Ayşe``: a number with its directory name, or the number alone without one."""
    if name is None or (isinstance(name, float) and pd.isna(name)) or name == "":
        return str(number)
    return f"{number} · {name}"


def ring_group_table(groups: pd.DataFrame) -> pd.DataFrame:
    """``ring_group_performance`` rows per ring group and phone, labelled with their names
    (a renamed group's or phone's rows apart, one per name): ``group``, ``phone``,
    ``rings``, ``answers``, ``lost_races``, ``answer_share``; by group, then phone."""
    columns = ["group", "phone", "rings", "answers", "lost_races", "answer_share"]
    if groups.empty:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame(
        {
            "group": [
                labelled(n, m)
                for n, m in zip(groups["ring_group"], groups["ring_group_name"], strict=True)
            ],
            "phone": [
                labelled(n, m)
                for n, m in zip(groups["destination"], groups["destination_name"], strict=True)
            ],
            "rings": groups["rings"],
            "answers": groups["answers"],
            "lost_races": groups["lost_races"],
        }
    )
    out = frame.groupby(["group", "phone"], as_index=False)[["rings", "answers", "lost_races"]]
    table = out.sum()
    table["answer_share"] = table["answers"] / table["rings"]
    return table.sort_values(["group", "phone"]).reset_index(drop=True)[columns]


def service_level_table(service: pd.DataFrame) -> pd.DataFrame:
    """``working_hours_service_level`` over the report's days, per number: ``number``,
    ``calls``, ``calls_in_hours``, ``answered_in_hours``, ``answer_rate_in_hours``,
    ``calls_out_of_hours``, ``answered_out_of_hours``, ``answer_rate_out_of_hours`` (a
    rate NaN without calls); by number."""
    counts = [
        "calls", "calls_in_hours", "answered_in_hours", "calls_out_of_hours",
        "answered_out_of_hours",
    ]  # fmt: skip
    columns = ["number", *counts[:3], "answer_rate_in_hours", *counts[3:]]
    if service.empty:
        return pd.DataFrame(columns=[*columns, "answer_rate_out_of_hours"])
    table = service.groupby("number", as_index=False)[counts].sum()
    for part in ("in_hours", "out_of_hours"):
        calls = table[f"calls_{part}"].where(table[f"calls_{part}"] > 0)
        table[f"answer_rate_{part}"] = table[f"answered_{part}"] / calls
    return table.sort_values("number").reset_index(drop=True)[
        [*columns, "answer_rate_out_of_hours"]
    ]
