"""The call report: one self-contained HTML page built from the marts (no dagster).

Charts are drawn with matplotlib (Agg backend, no display) and embedded as base64 PNG,
so the page opens offline with no CDN, script or external font. Numbers come only from
the marts (``daily_call_summary``, ``hourly_call_load``, ``ring_group_performance``,
``missed_calls``), so the report says what a SQL user would find.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display, no GUI toolkit

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from bulutfon_pipeline.settings import LOCAL_TZ
from bulutfon_pipeline.warehouse import Warehouse

__all__ = ["REPORTS_DIR", "CallReport", "ReportSummary", "build_report", "summarize"]

#: Folder under BULUTFON_DATA_DIR that holds the reports.
REPORTS_DIR = "reports"
TOP_MISSED_CALLERS = 10
WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
DIRECTION_COLORS = {"IN": "#1f77b4", "OUT": "#ff7f0e", "LOCAL": "#7f7f7f"}
DIRECTION_LABELS = {"IN": "incoming", "OUT": "outgoing", "LOCAL": "internal"}

#: Section ids and titles, in page order (tests look for each id).
SECTIONS = {
    "calls-per-day": "Calls per day by direction",
    "answer-rate": "Answer rate over time",
    "hourly-load": "When calls come in: hour × weekday",
    "ring-groups": "Ring-group answer share",
    "missed-callers": "Top missed callers",
}


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


@dataclass(frozen=True)
class CallReport:
    """A written report: the dated file, the ``latest`` copy and its numbers."""

    path: Path
    latest_path: Path
    summary: ReportSummary
    sections: list[str] = field(default_factory=list)


def _frames(warehouse: Warehouse) -> dict[str, pd.DataFrame]:
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


# --- charts -------------------------------------------------------------------------------


def _style() -> None:
    plt.rcParams.update(
        {
            "font.family": "DejaVu Sans",  # ships with matplotlib; has ç ğ ı ö ş ü
            "font.size": 10,
            "axes.titlesize": 12,
            "axes.titleweight": "bold",
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "figure.dpi": 100,
        }
    )


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _empty(message: str) -> str:
    fig, ax = plt.subplots(figsize=(10, 1.2))
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=12, color="#555")
    return _png(fig)


def _date_axis(ax: Any, days: list[dt.date]) -> None:
    step = max(1, len(days) // 12)
    ax.set_xticks(range(0, len(days), step))
    ax.set_xticklabels([f"{d:%d %b}" for d in days[::step]], rotation=0)


def chart_calls_per_day(daily: pd.DataFrame) -> str:
    if daily.empty:
        return _empty("No calls loaded yet")
    table = daily.pivot_table(index="call_date", columns="direction", values="calls", fill_value=0)
    days = list(table.index)
    fig, ax = plt.subplots(figsize=(11, 3.8))
    bottom = np.zeros(len(days))
    for direction in [d for d in DIRECTION_COLORS if d in table.columns]:
        values = table[direction].to_numpy()
        ax.bar(range(len(days)), values, bottom=bottom, color=DIRECTION_COLORS[direction],
               label=DIRECTION_LABELS[direction], width=0.8)  # fmt: skip
        bottom += values
    _date_axis(ax, days)
    ax.set_ylabel("calls")
    ax.set_title("Calls per local day")
    ax.grid(axis="x", visible=False)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return _png(fig)


def chart_answer_rate(daily: pd.DataFrame) -> str:
    if daily.empty:
        return _empty("No calls loaded yet")
    per_day = daily.groupby("call_date")[["calls", "answered"]].sum()
    incoming = daily[daily["direction"] == "IN"].set_index("call_date")
    days = list(per_day.index)
    fig, ax = plt.subplots(figsize=(11, 3.4))
    ax.plot(range(len(days)), 100 * per_day["answered"] / per_day["calls"], marker="o",
            markersize=3, color="#2ca02c", label="all calls")  # fmt: skip
    if len(incoming):
        rate = incoming.reindex(days)["answer_rate"] * 100
        ax.plot(range(len(days)), rate, marker="o", markersize=3, color=DIRECTION_COLORS["IN"],
                label="incoming calls")  # fmt: skip
    _date_axis(ax, days)
    ax.set_ylim(0, 100)
    ax.set_ylabel("answered (%)")
    ax.set_title("Share of calls answered, per local day")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return _png(fig)


def chart_hourly_load(hourly: pd.DataFrame) -> str:
    if hourly.empty:
        return _empty("No calls loaded yet")
    grid = np.zeros((7, 24), dtype=int)
    for weekday, hour, calls in hourly[["weekday", "hour", "calls"]].to_numpy().tolist():
        grid[int(weekday) - 1, int(hour)] = int(calls)
    fig, ax = plt.subplots(figsize=(11, 3.6))
    image = ax.imshow(grid, aspect="auto", cmap="YlOrRd")
    ax.set_yticks(range(7))
    ax.set_yticklabels(WEEKDAYS)
    ax.set_xticks(range(24))
    ax.set_xticklabels([f"{h:02d}" for h in range(24)])
    ax.set_xlabel("local hour of day (Europe/Istanbul)")
    ax.grid(False)
    ax.set_title("Calls per weekday and hour (all weeks together)")
    peak = grid.max() or 1
    for (y, x), value in np.ndenumerate(grid):
        if value:
            ax.text(x, y, str(value), ha="center", va="center", fontsize=7,
                    color="white" if value > 0.6 * peak else "#333")  # fmt: skip
    fig.colorbar(image, ax=ax, label="calls", fraction=0.03, pad=0.01)
    return _png(fig)


def chart_ring_groups(groups: pd.DataFrame) -> str:
    if groups.empty:
        return _empty("No ring group has rung yet")
    names = sorted(groups["ring_group"].astype(str).unique())
    members = int(groups.groupby("ring_group").size().max())
    height = max(2.2, 0.3 * members + 1.2)
    # Scale to the data (members of a big group each answer a small share), not to 100 %.
    right = min(100.0, float(groups["answer_share"].max()) * 100 * 1.3 + 5)
    fig, axes = plt.subplots(1, len(names), figsize=(11, height), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        part = groups[groups["ring_group"] == name].sort_values("answer_share")
        labels = [str(d) for d in part["destination"]]
        ax.barh(labels, 100 * part["answer_share"], color="#1f77b4")
        for y, row in enumerate(part.itertuples(index=False)):
            ax.text(100 * row.answer_share + right / 100, y,
                    f"{100 * row.answer_share:.1f}%  ({row.answers}/{row.rings})",
                    va="center", fontsize=8, color="#333")  # fmt: skip
        ax.set_xlim(0, right)
        ax.set_xlabel("rings answered (%)")
        ax.set_title(f"Group {name}")
        ax.grid(axis="y", visible=False)
    axes[0][0].set_ylabel("extension")
    fig.tight_layout()
    return _png(fig)


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


def chart_missed_callers(top: pd.DataFrame) -> str:
    if top.empty:
        return _empty("No missed incoming calls from a known number")
    part = top.iloc[::-1]
    fig, ax = plt.subplots(figsize=(11, 0.35 * len(part) + 1.2))
    colors = ["#d62728" if due else "#9e9e9e" for due in part["call_back_due"]]
    ax.barh([str(c) for c in part["caller"]], part["missed"], color=colors)
    ax.set_xlabel("missed incoming calls")
    ax.set_title("Callers missed most often (red: no call-back or answered call since)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(axis="y", visible=False)
    return _png(fig)


# --- page ------------------------------------------------------------------------------------

_CSS = """
body { font-family: "DejaVu Sans", "Segoe UI", Arial, sans-serif; margin: 2rem auto;
       max-width: 1150px; color: #222; padding: 0 1rem; }
h1 { margin-bottom: 0.2rem; } .muted { color: #666; }
section { margin: 2rem 0; } img { max-width: 100%; height: auto; }
table { border-collapse: collapse; margin: 0.6rem 0; font-size: 0.95rem; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3rem 0.8rem; text-align: left; }
td.num, th.num { text-align: right; }
.cards { display: flex; flex-wrap: wrap; gap: 0.8rem; margin: 1rem 0; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 0.6rem 1rem; min-width: 9rem; }
.card b { display: block; font-size: 1.4rem; }
"""


def _card(label: str, value: str) -> str:
    return f'<div class="card"><b>{html.escape(value)}</b>{html.escape(label)}</div>'


def _section(anchor: str, image: str, extra: str = "", note: str = "") -> str:
    title = html.escape(SECTIONS[anchor])
    note_html = f'<p class="muted">{html.escape(note)}</p>' if note else ""
    return (
        f'<section id="{anchor}"><h2>{title}</h2>{note_html}'
        f'<img alt="{title}" src="data:image/png;base64,{image}">{extra}</section>'
    )


def _missed_table(top: pd.DataFrame) -> str:
    if top.empty:
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(str(r['caller']))}</td><td class='num'>{int(r['missed'])}</td>"
        f"<td>{pd.Timestamp(r['last_try']):%Y-%m-%d %H:%M}</td>"
        f"<td>{'yes' if r['call_back_due'] else 'no'}</td></tr>"
        for r in top.to_dict("records")
    )
    return (
        "<table><thead><tr><th>caller</th><th class='num'>missed</th>"
        "<th>last try (local)</th><th>call-back due</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def render_html(frames: dict[str, pd.DataFrame], summary: ReportSummary, generated: str) -> str:
    """The whole page, self-contained."""
    _style()
    top = top_missed_callers(frames["missed"])
    masked = int(frames["missed"]["caller_masked"].astype(bool).sum())
    rate = "n/a" if summary.answer_rate is None else f"{summary.answer_rate:.1%}"
    period = (
        f"{summary.first_day:%d %b %Y} – {summary.last_day:%d %b %Y}"
        if summary.first_day and summary.last_day
        else "no calls yet"
    )
    cards = "".join(
        [
            _card("calls", f"{summary.calls:,}"),
            _card("answered", rate),
            _card("incoming answered", f"{summary.incoming_answered:,} / {summary.incoming:,}"),
            _card("missed incoming", f"{summary.missed_incoming:,}"),
            _card("callers to call back", f"{summary.callers_to_call_back:,}"),
        ]
    )
    sections = [
        _section("calls-per-day", chart_calls_per_day(frames["daily"])),
        _section("answer-rate", chart_answer_rate(frames["daily"])),
        _section("hourly-load", chart_hourly_load(frames["hourly"])),
        _section(
            "ring-groups",
            chart_ring_groups(frames["groups"]),
            note="For each ring group, the share of its rings each extension picked up "
            "(answered / rung).",
        ),
        _section(
            "missed-callers",
            chart_missed_callers(top),
            extra=_missed_table(top),
            note="Incoming calls nobody answered, per caller. Missed calls from masked "
            f"numbers (left out, they cannot be called back): {masked}.",
        ),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Bulutfon call report – {html.escape(period)}</title>"
        f"<style>{_CSS}</style></head><body>"
        f"<h1>Bulutfon call report</h1><p class='muted'>{html.escape(period)} · local time "
        f"Europe/Istanbul · generated {html.escape(generated)}</p>"
        f'<div class="cards">{cards}</div>{"".join(sections)}</body></html>\n'
    )


def build_report(
    warehouse: Warehouse, *, out_dir: Path, now: dt.datetime | None = None
) -> CallReport:
    """Write ``call_report_<local date>.html`` and ``call_report_latest.html`` to ``out_dir``.

    Args:
        warehouse: the warehouse (schema and views in place).
        out_dir: the reports folder (created if missing), normally
            ``BULUTFON_DATA_DIR/reports``.
        now: the generation time (default: now).

    Returns:
        The paths written and the headline numbers.
    """
    moment = (now or dt.datetime.now(dt.UTC)).astimezone(LOCAL_TZ)
    frames = _frames(warehouse)
    summary = summarize(frames)
    page = render_html(frames, summary, f"{moment:%Y-%m-%d %H:%M}")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"call_report_{moment:%Y-%m-%d}.html"
    tmp = path.with_suffix(".html.part")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    latest = out_dir / "call_report_latest.html"
    shutil.copyfile(path, latest)
    return CallReport(path=path, latest_path=latest, summary=summary, sections=list(SECTIONS))
