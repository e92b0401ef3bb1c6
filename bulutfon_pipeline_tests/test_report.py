"""The call report: a self-contained page whose numbers are the marts'.

``marts`` is in ``target``, a DuckDB file or (tests parametrized with ``backend``) a
PostgreSQL database. The asset runs on both. The page, its numbers and its callers'
table run on DuckDB only: the report reads the marts through queries that
warehouse/test_marts_postgres.py runs on both engines and compares row by row.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import dagster as dg
import pytest

from bulutfon_pipeline.assets import call_report
from bulutfon_pipeline.report import SECTIONS, build_report
from bulutfon_pipeline.resources import SettingsResource, WarehouseResource
from bulutfon_pipeline.warehouse import Warehouse
from bulutfon_pipeline_tests.fixtures.marts import insert_calls
from bulutfon_pipeline_tests.helpers import BACKENDS, WarehouseTarget

NOW = dt.datetime(2024, 5, 8, 9, 0, tzinfo=dt.UTC)  # 12:00 in Istanbul


@pytest.fixture
def marts(target: WarehouseTarget) -> Warehouse:
    """The nine hand-made calls of ``fixtures/marts.py`` (its docstring has the table)."""
    wh = target.warehouse()
    wh.ensure_schema()
    return insert_calls(wh)


def test_report_is_self_contained_with_every_section(marts: Warehouse, tmp_path: Path) -> None:
    report = build_report(marts, out_dir=tmp_path / "reports", now=NOW)
    assert report.path == tmp_path / "reports" / "call_report_2024-05-08.html"
    assert report.latest_path.read_bytes() == report.path.read_bytes()
    page = report.path.read_text(encoding="utf-8")
    for anchor, title in SECTIONS.items():
        assert f'<section id="{anchor}">' in page
        assert f"<h2>{title}</h2>" in page
    # one inline PNG per chart, and nothing fetched from anywhere
    assert page.count('src="data:image/png;base64,') == len(SECTIONS)
    assert "http" not in page.lower()
    assert not re.search(r"<(script|link)\b", page)
    assert '<meta charset="utf-8">' in page


def test_summary_numbers_equal_the_marts(marts: Warehouse, tmp_path: Path) -> None:
    summary = build_report(marts, out_dir=tmp_path, now=NOW).summary
    with marts.transaction() as con:
        calls, answered = con.execute(
            "SELECT sum(calls), sum(answered) FROM daily_call_summary"
        ).fetchone() or (None, None)
        missed, to_call = con.execute(
            "SELECT count(*), count(DISTINCT caller) FILTER (WHERE needs_call_back) "
            "FROM missed_calls"
        ).fetchone() or (None, None)
    # by hand: 9 calls; c1, c4, c6, c7 answered; c2, c3, c5, c8, c9 missed incoming;
    # only 905559990000 (c5, c8) still waits for a call-back
    assert (summary.calls, summary.answered, summary.missed_incoming) == (9, 4, 5)
    assert (calls, answered, missed) == (9, 4, 5)
    assert summary.callers_to_call_back == to_call == 1
    assert (summary.incoming, summary.incoming_answered) == (7, 2)
    assert summary.answer_rate == pytest.approx(4 / 9)
    assert (summary.first_day, summary.last_day) == (dt.date(2024, 5, 6), dt.date(2024, 5, 7))
    # Monday 09 and Tuesday 09 both have 2 calls: the earlier weekday wins the tie
    assert (summary.busiest_weekday, summary.busiest_hour) == ("Monday", 9)
    assert "| calls | 9 |" in summary.markdown()
    assert "| callers awaiting a call-back | 1 |" in summary.markdown()


def test_top_missed_callers_table_shows_numbers_as_stored(marts: Warehouse, tmp_path: Path) -> None:
    page = build_report(marts, out_dir=tmp_path, now=NOW).path.read_text(encoding="utf-8")
    table = page[page.index('<section id="missed-callers">') :]
    # unmasked callers only, most missed first: 905559990000 twice (due), then the two
    # callers reached later (not due); the masked caller c3 is counted in the note
    callers = re.findall(r"<tr><td>(\d+)</td><td class='num'>(\d+)</td>", table)
    assert callers == [("905559990000", "2"), ("905441234567", "1"), ("905321110000", "1")]
    assert "Missed calls from masked numbers (left out, they cannot be called back): 1." in table


@pytest.mark.parametrize("backend", BACKENDS)
def test_call_report_asset_attaches_path_and_summary(
    target: WarehouseTarget, marts: Warehouse, tmp_path: Path
) -> None:
    result = dg.materialize(
        [call_report],
        resources={
            # marts' warehouse: its DuckDB file, or its PostgreSQL database's URL.
            "warehouse": WarehouseResource(
                database=target.env["BULUTFON_DUCKDB_PATH"],
                url=target.env["BULUTFON_WAREHOUSE_URL"],
            ),
            # The data folder comes from the settings resource (the launchpad's value).
            "settings": SettingsResource(data_dir=str(tmp_path / "data")),
        },
    )
    assert result.success
    (event,) = result.get_asset_materialization_events()
    metadata = event.materialization.metadata
    path = Path(metadata["path"].value)
    assert path.parent == (tmp_path / "data" / "reports").resolve()
    assert path.exists()
    assert "| missed incoming calls | 5 |" in metadata["summary"].value
    assert metadata["calls"].value == 9


def test_report_of_many_accounts_and_of_one(marts: Warehouse, tmp_path: Path) -> None:
    # The nine calls again, as a second account's: the whole report counts both and has a
    # row per account; the report of one account counts its calls only.
    insert_calls(marts, account="izmir")
    report = build_report(marts, out_dir=tmp_path, now=NOW)
    assert (report.summary.calls, report.summary.missed_incoming) == (18, 10)
    # the same caller in two accounts is two callers to call back
    assert report.summary.callers_to_call_back == 2
    page = report.path.read_text(encoding="utf-8")
    accounts = page[page.index('<section id="accounts">') : page.index("</section>")]
    assert re.findall(r"<tr><td>([a-z]+)</td><td class='num'>(\d+)</td>", accounts) == [
        ("default", "9"),
        ("izmir", "9"),
    ]
    # each account's numbers apart
    assert _table_rows(page, "working-hours") == [
        ("default · 02120000000", "7", "2 / 6", "33.3%", "0 / 1", "0.0%"),
        ("izmir · 02120000000", "7", "2 / 6", "33.3%", "0 / 1", "0.0%"),
    ]
    one = build_report(marts, out_dir=tmp_path, now=NOW, account="izmir")
    assert one.path == tmp_path / "call_report_izmir_2024-05-08.html"
    assert one.latest_path == tmp_path / "call_report_izmir_latest.html"
    assert (one.summary.calls, one.summary.missed_incoming) == (9, 5)
    assert one.summary.callers_to_call_back == 1
    alone = one.path.read_text(encoding="utf-8")
    assert "<h1>Bulutfon call report – izmir</h1>" in alone
    assert '<section id="accounts">' not in alone


def _table_rows(page: str, anchor: str) -> list[tuple[str, ...]]:
    """The body rows of the table in section ``anchor``, cells as text."""
    section = page[page.index(f'<section id="{anchor}">') :]
    section = section[: section.index("</section>")]
    body = section[section.index("<tbody>") : section.index("</tbody>")]
    return [
        tuple(re.findall(r"<td[^>]*>(.*?)</td>", row))
        for row in re.findall(r"<tr>(.*?)</tr>", body)
    ]


def test_names_and_working_hours_tables(marts: Warehouse, tmp_path: Path) -> None:
    page = build_report(marts, out_dir=tmp_path, now=NOW).path.read_text(encoding="utf-8")
    # fixtures/directory.py: 1004 renamed Ayşe Kaya on Monday afternoon (c1, c2 before,
    # c7 after), 1015 two extensions (Can, Deniz), 1008 not in the directory, group 102
    # Satış since 1 May; counts of test_marts.py's ring_group_performance
    assert _table_rows(page, "ring-groups") == [
        ("101 · Destek", "1004 · Ayşe", "2", "1", "0", "50.0%"),
        ("101 · Destek", "1008", "2", "0", "1", "0.0%"),
        ("102 · Satış", "1004 · Ayşe Kaya", "1", "0", "1", "0.0%"),
        ("102 · Satış", "1015 · Can / Deniz", "1", "1", "0", "100.0%"),
    ]
    # the DID 02120000000 (Mon-Fri 08:30-18:30, lunch 12:30-13:30) took the 7 incoming
    # calls: within hours c1 (answered), c2, c3, c9, c7 (answered), c8; outside c5 (00:30)
    assert _table_rows(page, "working-hours") == [
        ("02120000000", "7", "2 / 6", "33.3%", "0 / 1", "0.0%"),
    ]
