"""The report's charts: matplotlib (Agg backend, no display), each returned as base64 PNG.

Each ``chart_*`` function takes one mart frame (or the top missed callers) and draws a
placeholder message when it is empty.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display, no GUI toolkit

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

__all__ = [
    "apply_style",
    "chart_answer_rate",
    "chart_calls_per_day",
    "chart_hourly_load",
    "chart_missed_callers",
    "chart_ring_groups",
    "chart_working_hours",
]

WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
DIRECTION_COLORS = {"IN": "#1f77b4", "OUT": "#ff7f0e", "LOCAL": "#7f7f7f"}
DIRECTION_LABELS = {"IN": "incoming", "OUT": "outgoing", "LOCAL": "internal"}


def apply_style() -> None:
    """The house style of every chart (font with Turkish letters, light grid)."""
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


def chart_ring_groups(table: pd.DataFrame) -> str:
    """Per ring group, the share of its rings each phone answered; ``table`` is
    ``data.ring_group_table``'s (groups and phones labelled with their names)."""
    if table.empty:
        return _empty("No ring group has rung yet")
    names = sorted(table["group"].astype(str).unique())
    members = int(table.groupby("group").size().max())
    height = max(2.2, 0.3 * members + 1.2)
    # Scale to the data (members of a big group each answer a small share), not to 100 %.
    right = min(100.0, float(table["answer_share"].max()) * 100 * 1.3 + 5)
    fig, axes = plt.subplots(1, len(names), figsize=(11, height), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        part = table[table["group"] == name].sort_values("answer_share")
        labels = [str(d) for d in part["phone"]]
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


def chart_working_hours(service: pd.DataFrame) -> str:
    """Per local day, the share of incoming calls answered within the called numbers'
    working hours and outside them (``working_hours_service_level``, every number)."""
    if service.empty:
        return _empty("No incoming call to a number with working hours yet")
    counts = ["calls_in_hours", "answered_in_hours", "calls_out_of_hours", "answered_out_of_hours"]
    per_day = service.groupby("call_date")[counts].sum()
    days = list(per_day.index)
    fig, ax = plt.subplots(figsize=(11, 3.4))
    for part, label, color in (("in_hours", "within working hours", "#2ca02c"),
                               ("out_of_hours", "outside working hours", "#9467bd")):  # fmt: skip
        calls = per_day[f"calls_{part}"].where(per_day[f"calls_{part}"] > 0)
        ax.plot(range(len(days)), 100 * per_day[f"answered_{part}"] / calls, marker="o",
                markersize=3, color=color, label=label)  # fmt: skip
    _date_axis(ax, days)
    ax.set_ylim(0, 100)
    ax.set_ylabel("answered (%)")
    ax.set_title("Incoming calls answered within and outside working hours, per local day")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return _png(fig)


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
