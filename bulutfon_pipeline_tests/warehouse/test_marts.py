"""The marts against values computed by hand from the nine calls of ``fixtures/marts.py``
(its docstring has them as a table) and their directory (``fixtures/directory.py``: a
rename of 1004, two extensions numbered 1015, 1008 unknown, the DID's working hours)."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from bulutfon_pipeline.warehouse import Warehouse
from bulutfon_pipeline_tests.fixtures.marts import at, insert_calls


@pytest.fixture
def warehouse(duckdb_warehouse: Warehouse) -> Warehouse:
    """DuckDB only until the marts' SQL is portable (views.py)."""
    return duckdb_warehouse


@pytest.fixture
def marts(warehouse: Warehouse) -> Warehouse:
    return insert_calls(warehouse)


def rows(wh: Warehouse, sql: str) -> list[tuple]:
    with wh.transaction() as con:
        return con.execute(sql).fetchall()


def test_the_calls_land_on_their_local_dates(marts: Warehouse) -> None:
    # c5 starts 21:30 UTC on Monday: it is a Tuesday call in Istanbul.
    assert rows(marts, "SELECT call_date, count(*) FROM cdrs GROUP BY 1 ORDER BY 1") == [
        (date(2024, 5, 6), 4),
        (date(2024, 5, 7), 5),
    ]


def test_daily_call_summary(marts: Warehouse) -> None:
    got = rows(
        marts, "SELECT * EXCLUDE (account) FROM daily_call_summary ORDER BY call_date, direction"
    )
    assert got == [
        # Mon IN: c1 (ring 20, talk 300), c2 (ring 40, missed), c3 (ring 15, missed).
        # avg ring (20+40+15)/3 = 25; p90 of [15, 20, 40]: rank 0.9*2 = 1.8 -> 20 + 0.8*20 = 36
        (date(2024, 5, 6), "IN", 3, 1, 2, pytest.approx(1 / 3), 25.0, pytest.approx(36.0),
         300.0, 300.0),
        # Mon OUT: c4 alone (ring 10, talk 120)
        (date(2024, 5, 6), "OUT", 1, 1, 0, 1.0, 10.0, 10.0, 120.0, 120.0),
        # Tue IN: c5 (30, missed), c9 (20, missed), c7 (10, talk 90), c8 (25, missed).
        # avg ring 85/4 = 21.25; p90 of [10, 20, 25, 30]: rank 2.7 -> 25 + 0.7*5 = 28.5
        (date(2024, 5, 7), "IN", 4, 1, 3, 0.25, 21.25, pytest.approx(28.5), 90.0, 90.0),
        # Tue LOCAL: c6 (ring 5, talk 60)
        (date(2024, 5, 7), "LOCAL", 1, 1, 0, 1.0, 5.0, 5.0, 60.0, 60.0),
    ]  # fmt: skip


def test_ring_group_performance(marts: Warehouse) -> None:
    got = rows(
        marts,
        "SELECT * EXCLUDE (account) FROM ring_group_performance ORDER BY ring_group, destination",
    )
    assert got == [
        # group 101 (Destek) rang 1004 and 1008 on c1 and c2 (Monday morning, 1004 was
        # still Ayşe): 1004 answered c1, missed c2
        ("101", "Destek", "1004", "Ayşe", 2, 1, 0, 0.5),
        # 1008 (not in the directory) lost the race on c1 and missed c2
        ("101", "Destek", "1008", None, 2, 0, 1, 0.0),
        # group 102 on c7 (Tuesday: Satış since 1 May, 1004 renamed Ayşe Kaya): 1015
        # (two extensions, Can and Deniz, share the number) answered, 1004 lost the race
        ("102", "Satış", "1004", "Ayşe Kaya", 1, 0, 1, 0.0),
        ("102", "Satış", "1015", "Can / Deniz", 1, 1, 0, 1.0),
    ]


def test_hourly_call_load(marts: Warehouse) -> None:
    got = rows(marts, "SELECT * EXCLUDE (account) FROM hourly_call_load ORDER BY weekday, hour")
    assert got == [
        # weekday, name, local hour, calls, incoming, outgoing, answered, missed_incoming
        (1, "Monday", 9, 2, 2, 0, 1, 1),  # c1 09:00 answered, c2 09:30 missed
        (1, "Monday", 10, 1, 1, 0, 0, 1),  # c3 10:10 missed
        (1, "Monday", 11, 1, 0, 1, 1, 0),  # c4 11:00 outgoing
        (2, "Tuesday", 0, 1, 1, 0, 0, 1),  # c5 00:30 local (Monday 21:30 UTC)
        (2, "Tuesday", 9, 2, 1, 0, 1, 1),  # c6 09:15 local call answered, c9 09:50 missed
        (2, "Tuesday", 10, 1, 1, 0, 1, 0),  # c7 10:00 answered
        (2, "Tuesday", 15, 1, 1, 0, 0, 1),  # c8 15:00 missed
    ]


def test_extension_activity(marts: Warehouse) -> None:
    got = rows(
        marts,
        "SELECT * EXCLUDE (account) FROM extension_activity ORDER BY extension, extension_name",
    )
    assert got == [
        # extension, extension_name, rings, answered_calls, talk_seconds, missed_rings,
        # lost_races, outgoing_calls, outgoing_talk_seconds
        # 1004 rang 4 times and made c4 (OUT, 120 s). It was renamed on Monday at 15:00
        # local: as Ayşe, c1 (answered, 300 s) and c2 (nobody answered: missed) rang it
        # and it made c4 (11:00); as Ayşe Kaya, c6 (direct, answered, 60 s) and c7 (lost
        # the race) on Tuesday.
        ("1004", "Ayşe", 2, 1, 300, 1, 0, 1, 120),
        ("1004", "Ayşe Kaya", 2, 1, 60, 0, 1, 0, 0),
        # 1008 (no name: not in the directory): c1 lost the race, c2 missed; its LOCAL
        # call c6 counts at 1004.
        ("1008", None, 2, 0, 0, 1, 1, 0, 0),
        # 1015: c7 answered, 90 s, counted once under both extensions' names
        ("1015", "Can / Deniz", 1, 1, 90, 0, 0, 0, 0),
    ]


def test_missed_calls(marts: Warehouse) -> None:
    got = rows(
        marts,
        "SELECT uuid, call_date, local_call_time, caller, ring_seconds, caller_masked, "
        "caller_missed_calls, reached_at, needs_call_back, in_working_hours FROM missed_calls "
        "ORDER BY call_time",
    )
    local = lambda h, m, d=6: datetime(2024, 5, d, h, m)  # noqa: E731
    # in_working_hours: the DID 02120000000 (the CDRs' 902120000000) is open Mon-Fri
    # 08:30-18:30 with lunch 12:30-13:30
    assert got == [
        # c2: called back by c4 (OUT to the number, answered, later): reached at c4's start
        ("c2", date(2024, 5, 6), local(9, 30), "905321110000", 40, False, 1, at(8), False,
         True),
        # c3: masked, never matched, no call-back possible (the callee is known: in hours)
        ("c3", date(2024, 5, 6), local(10, 10), "90532xxxxxxx", 15, True, 1, None, False,
         True),
        # c5 and c8: the same caller missed twice, never reached afterwards; c5 at 00:30
        ("c5", date(2024, 5, 7), local(0, 30, 7), "905559990000", 30, False, 2, None, True,
         False),
        # c9: the caller tried again at 10:00 (c7) and was answered
        ("c9", date(2024, 5, 7), local(9, 50, 7), "905441234567", 20, False, 1, at(7, 1),
         False, True),
        ("c8", date(2024, 5, 7), local(15, 0, 7), "905559990000", 25, False, 2, None, True,
         True),
    ]  # fmt: skip


def test_working_hours_service_level(marts: Warehouse) -> None:
    got = rows(marts, "SELECT * EXCLUDE (account) FROM working_hours_service_level ORDER BY ALL")
    assert got == [
        # number, call_date, calls, in hours: calls, answered, rate; out of hours: the same
        # Monday: c1 09:00 (answered), c2 09:30, c3 10:10: all within hours
        ("02120000000", date(2024, 5, 6), 3, 3, 1, pytest.approx(1 / 3), 0, 0, None),
        # Tuesday: c9 09:50, c7 10:00 (answered), c8 15:00 within; c5 00:30 outside
        ("02120000000", date(2024, 5, 7), 4, 3, 1, pytest.approx(1 / 3), 1, 0, 0.0),
    ]  # fmt: skip


MARTS = (
    "daily_call_summary", "ring_group_performance", "hourly_call_load", "extension_activity",
    "missed_calls", "working_hours_service_level",
)  # fmt: skip


def test_every_mart_starts_with_the_account(marts: Warehouse) -> None:
    for view in MARTS:
        frame = marts.fetch_frame(f"SELECT * FROM {view}")
        assert frame.columns[0] == "account", view
        assert set(frame["account"]) == {"default"}, view


def test_the_marts_keep_accounts_apart(warehouse: Warehouse) -> None:
    # The same nine calls (same uuids, callers, extensions) in two accounts: each
    # account's mart rows are exactly those of the account alone; nothing is counted,
    # joined or matched (missed-call call-backs) across the two.
    insert_calls(warehouse)
    alone = {view: rows(warehouse, f"SELECT * FROM {view} ORDER BY ALL") for view in MARTS}
    insert_calls(warehouse, account="izmir")
    for view in MARTS:
        got = rows(warehouse, f"SELECT * FROM {view} ORDER BY ALL")
        assert [row for row in got if row[0] == "default"] == alone[view], view
        assert [row[1:] for row in got if row[0] == "izmir"] == [r[1:] for r in alone[view]]
        assert {row[0] for row in got} == {"default", "izmir"}
