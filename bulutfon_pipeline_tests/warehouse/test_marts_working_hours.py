"""Working hours in ``missed_calls`` and ``working_hours_service_level``, against values
computed by hand from the hours calls of ``fixtures/directory.py`` (its docstring has
them as a table): the boundary instants of a shift and of its lunch break, a closed day,
a day with no row, Istanbul's UTC+2 winter and UTC+3 summer of 2015, a DID spelt three
ways, and the calls that have no working hours (unknown, masked, gone, not following)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from bulutfon_pipeline.warehouse import Warehouse
from bulutfon_pipeline_tests.fixtures.directory import insert_hours_calls


@pytest.fixture(scope="module")
def hours(tmp_path_factory: pytest.TempPathFactory) -> Warehouse:
    """One DuckDB warehouse for the module: the tests only read it."""
    path: Path = tmp_path_factory.mktemp("hours") / "bulutfon.duckdb"
    warehouse = Warehouse(path, lock_timeout_s=10.0)
    warehouse.ensure_schema()
    return insert_hours_calls(warehouse)


def rows(wh: Warehouse, sql: str) -> list[tuple]:
    with wh.transaction() as con:
        return con.execute(sql).fetchall()


def test_missed_calls_say_whether_they_came_in_working_hours(hours: Warehouse) -> None:
    got = dict(rows(hours, "SELECT uuid, in_working_hours FROM missed_calls"))
    assert got == {
        # 2024, d1 version B: Mon-Fri 08:30-18:30, lunch 12:30-13:30 (h04-h06: answered)
        "h01": False,  # 08:29: before the shift
        "h02": True,  # 08:30: the shift's first minute
        "h03": False,  # 12:30: the lunch break's first minute
        "h07": False,  # Sunday: closed
        "h16": False,  # Saturday: no row, closed
        # 2015, d1 version A (09:00-17:00, spelt 8508850000) at the offset of the day
        "h09": False,  # 17:30 local in summer (+03); 16:30 at +02 would be within
        "h10": False,  # 08:30 local in winter (+02); 09:30 at +03 would be within
        "h11": True,  # 16:30 local in winter; 17:30 at +03 would be outside
        "h12": None,  # d2 does not follow working hours
        "h13": None,  # not a DID of the directory
        "h14": None,  # masked callee
        "h15": None,  # d3 left the directory in March
    }


def test_working_hours_service_level(hours: Warehouse) -> None:
    got = rows(hours, "SELECT * EXCLUDE (account) FROM working_hours_service_level ORDER BY ALL")
    assert got == [
        # number (the directory's spelling), call_date, calls,
        # in hours: calls, answered, rate; out of hours: calls, answered, rate
        # Saturday h16 and Sunday h07: closed, missed
        ("08508850000", date(2024, 5, 11), 1, 0, 0, None, 1, 0, 0.0),
        ("08508850000", date(2024, 5, 12), 1, 0, 0, None, 1, 0, 0.0),
        # Monday: within h02 (missed), h04, h05 (answered); outside h01, h03 (missed),
        # h06 (answered at 18:30)
        ("08508850000", date(2024, 5, 13), 6, 3, 2, pytest.approx(2 / 3), 3, 1,
         pytest.approx(1 / 3)),
        # d2: counted, but neither within nor outside hours; h13, h14, h15 have no DID
        ("8503330000", date(2024, 5, 13), 1, 0, 0, None, 0, 0, None),
        # winter 2015: h11 within (missed), h10 outside (missed)
        ("8508850000", date(2015, 1, 5), 2, 1, 0, 0.0, 1, 0, 0.0),
        # summer 2015: h08 09:00 within (answered), h09 17:30 outside (missed)
        ("8508850000", date(2015, 7, 6), 2, 1, 1, 1.0, 1, 0, 0.0),
    ]  # fmt: skip


def test_each_incoming_call_to_a_did_counts_once(hours: Warehouse) -> None:
    # 16 calls: h13 (unknown), h14 (masked) and h15 (gone) have no DID; the others one
    # row each, none counted twice though d1 has two versions and fourteen hours rows
    got = rows(hours, "SELECT sum(calls), count(*) FROM working_hours_service_level")
    assert got == [(13, 6)]
