"""The report page: one self-contained HTML document around the charts.

Charts are embedded as base64 PNG, so the page opens offline with no CDN, script or
external font.
"""

from __future__ import annotations

import html

import pandas as pd

from bulutfon_pipeline.report.charts import (
    apply_style,
    chart_answer_rate,
    chart_calls_per_day,
    chart_hourly_load,
    chart_missed_callers,
    chart_ring_groups,
    chart_working_hours,
)
from bulutfon_pipeline.report.data import (
    ReportSummary,
    account_summary,
    across_accounts,
    ring_group_table,
    service_level_table,
    top_missed_callers,
)

__all__ = ["SECTIONS", "render_html"]

#: Section ids and titles, in page order (tests look for each id).
SECTIONS = {
    "calls-per-day": "Calls per day by direction",
    "answer-rate": "Answer rate over time",
    "hourly-load": "When calls come in: hour × weekday",
    "ring-groups": "Ring-group answer share",
    "working-hours": "Within and outside working hours",
    "missed-callers": "Top missed callers",
}


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


def _groups_table(table: pd.DataFrame) -> str:
    if table.empty:
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(str(r['group']))}</td><td>{html.escape(str(r['phone']))}</td>"
        f"<td class='num'>{int(r['rings'])}</td><td class='num'>{int(r['answers'])}</td>"
        f"<td class='num'>{int(r['lost_races'])}</td>"
        f"<td class='num'>{_rate(r['answer_share'])}</td></tr>"
        for r in table.to_dict("records")
    )
    return (
        "<table><thead><tr><th>ring group</th><th>extension</th><th class='num'>rings</th>"
        "<th class='num'>answered</th><th class='num'>lost races</th>"
        f"<th class='num'>answer share</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _service_table(table: pd.DataFrame) -> str:
    if table.empty:
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(str(r['number']))}</td><td class='num'>{int(r['calls'])}</td>"
        f"<td class='num'>{int(r['answered_in_hours'])} / {int(r['calls_in_hours'])}</td>"
        f"<td class='num'>{_rate(r['answer_rate_in_hours'])}</td>"
        f"<td class='num'>{int(r['answered_out_of_hours'])} / {int(r['calls_out_of_hours'])}</td>"
        f"<td class='num'>{_rate(r['answer_rate_out_of_hours'])}</td></tr>"
        for r in table.to_dict("records")
    )
    return (
        "<table><thead><tr><th>number</th><th class='num'>incoming calls</th>"
        "<th class='num'>answered / calls in hours</th><th class='num'>answer rate</th>"
        "<th class='num'>answered / calls out of hours</th><th class='num'>answer rate</th>"
        f"</tr></thead><tbody>{rows}</tbody></table>"
    )


def _rate(value: float | None) -> str:
    return "n/a" if value is None or pd.isna(value) else f"{value:.1%}"


def _accounts_table(per_account: pd.DataFrame) -> str:
    """One row per account (only when the report covers several)."""
    if len(per_account) <= 1:
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(str(r['account']))}</td><td class='num'>{int(r['calls']):,}</td>"
        f"<td class='num'>{int(r['answered']):,}</td>"
        f"<td class='num'>{_rate(r['answer_rate'])}</td>"
        f"<td class='num'>{int(r['missed_incoming']):,}</td>"
        f"<td class='num'>{int(r['callers_to_call_back']):,}</td></tr>"
        for r in per_account.to_dict("records")
    )
    return (
        '<section id="accounts"><h2>Accounts</h2><table><thead><tr><th>account</th>'
        "<th class='num'>calls</th><th class='num'>answered</th><th class='num'>answer rate</th>"
        "<th class='num'>missed incoming</th><th class='num'>callers to call back</th>"
        f"</tr></thead><tbody>{rows}</tbody></table></section>"
    )


def render_html(
    frames: dict[str, pd.DataFrame],
    summary: ReportSummary,
    generated: str,
    *,
    account: str | None = None,
) -> str:
    """The whole page, self-contained: of one ``account``, or of every account the frames
    hold (then with a table per account, and the charts over them all)."""
    apply_style()
    per_account = account_summary(frames)
    frames = across_accounts(frames)
    top = top_missed_callers(frames["missed"])
    groups = ring_group_table(frames["groups"])
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
            chart_ring_groups(groups),
            extra=_groups_table(groups),
            note="For each ring group, the share of its rings each extension picked up "
            "(answered / rung). Groups and extensions carry their name at the call's time: "
            "a renamed one has a row per name.",
        ),
        _section(
            "working-hours",
            chart_working_hours(frames["service"]),
            extra=_service_table(service_level_table(frames["service"])),
            note="Incoming calls to the numbers of the PBX's directory, by the number's "
            "working hours (local time). Calls to a number without working hours count "
            "in its incoming calls only.",
        ),
        _section(
            "missed-callers",
            chart_missed_callers(top),
            extra=_missed_table(top),
            note="Incoming calls nobody answered, per caller. Missed calls from masked "
            f"numbers (left out, they cannot be called back): {masked}.",
        ),
    ]
    heading = "" if account is None else f" – {html.escape(account)}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Bulutfon call report – {html.escape(period)}</title>"
        f"<style>{_CSS}</style></head><body>"
        f"<h1>Bulutfon call report{heading}</h1><p class='muted'>{html.escape(period)} · "
        f"local time Europe/Istanbul · generated {html.escape(generated)}</p>"
        f'<div class="cards">{cards}</div>{_accounts_table(per_account)}'
        f"{''.join(sections)}</body></html>\n"
    )
