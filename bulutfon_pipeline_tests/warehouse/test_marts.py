"""The five marts against values computed by hand from nine calls inserted below.

The calls (times UTC; Istanbul is UTC+3 all year since 2016, so local = UTC + 3 h):

| call | dir   | caller       | local start     | ring | talk | flow                        |
|------|-------|--------------|-----------------|------|------|-----------------------------|
| c1   | IN    | 905321110000 | Mon 05-06 09:00 | 20   | 300  | grp 101: 1004 ANS, 1008 LR  |
| c2   | IN    | 905321110000 | Mon 05-06 09:30 | 40   | -    | grp 101: 1004, 1008 no ans  |
| c3   | IN    | 90532xxxxxxx | Mon 05-06 10:10 | 15   | -    | none (masked caller)        |
| c4   | OUT   | 902120000000 | Mon 05-06 11:00 | 10   | 120  | ext 1004 calls c2 back      |
| c5   | IN    | 905559990000 | Tue 05-07 00:30 | 30   | -    | none (Mon 21:30 UTC!)       |
| c6   | LOCAL | 1008         | Tue 05-07 09:15 | 5    | 60   | connecting to ext 1004, ans |
| c9   | IN    | 905441234567 | Tue 05-07 09:50 | 20   | -    | none                        |
| c7   | IN    | 905441234567 | Tue 05-07 10:00 | 10   | 90   | grp 102: 1015 ANS, 1004 LR  |
| c8   | IN    | 905559990000 | Tue 05-07 15:00 | 25   | -    | none                        |

(ANS = ANSWERED with the call's talk time, LR = LOSE_RACE.)
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from bulutfon_pipeline.warehouse import Warehouse

DAY1 = datetime(2024, 5, 6, tzinfo=UTC)  # a Monday
DID = "902120000000"


def at(hours: float, day: int = 0) -> datetime:
    return DAY1 + timedelta(days=day, hours=hours)


def _call(uuid, direction, caller, callee, start, ring, talk, extension=None):
    """A cdrs row: ring seconds until the answer (or hang-up), then talk seconds."""
    answer = start + timedelta(seconds=ring) if talk is not None else None
    hangup = (answer + timedelta(seconds=talk)) if answer else start + timedelta(seconds=ring)
    local_date = (start + timedelta(hours=3)).date()
    return (uuid, "voice", direction, caller, callee, extension, start, answer, hangup,
            local_date, answer is not None, ring, talk or 0, "NO", False, None,
            "NORMAL_CLEARING" if answer else "NO_ANSWER", None, None,
            direction == "IN" and answer is None, None, DAY1)  # fmt: skip


CALLS = [
    _call("c1", "IN", "905321110000", DID, at(6), 20, 300),
    _call("c2", "IN", "905321110000", DID, at(6.5), 40, None),
    _call("c3", "IN", "90532xxxxxxx", DID, at(7 + 10 / 60), 15, None),
    _call("c4", "OUT", DID, "905321110000", at(8), 10, 120, extension="1004"),
    _call("c5", "IN", "905559990000", DID, at(21.5), 30, None),
    _call("c6", "LOCAL", "1008", "1004", at(6.25, 1), 5, 60),
    _call("c9", "IN", "905441234567", DID, at(6 + 50 / 60, 1), 20, None),
    _call("c7", "IN", "905441234567", DID, at(7, 1), 10, 90),
    _call("c8", "IN", "905559990000", DID, at(12, 1), 25, None),
]

S = timedelta(seconds=1)
STEPS = [  # cdr_uuid, step_index, callee, start, answer, hangup, redirection, kind, target
    ("c1", 0, "11", at(6), None, None, None, "REDIRECTED_TO_GROUP", "101"),
    ("c1", 1, "101", at(6), at(6) + 20 * S, at(6) + 320 * S, None, "CONNECTING_TO_GROUP", None),
    ("c2", 0, "101", at(6.5), None, at(6.5) + 40 * S, None, "CONNECTING_TO_GROUP", None),
    ("c6", 0, "1004", at(6.25, 1), at(6.25, 1) + 5 * S, at(6.25, 1) + 65 * S, None,
     "CONNECTING_TO_EXTENSION", None),
    ("c7", 0, "11", at(7, 1), None, None, None, "REDIRECTED_TO_GROUP", "102"),
    ("c7", 1, "102", at(7, 1), at(7, 1) + 10 * S, at(7, 1) + 100 * S, None,
     "CONNECTING_TO_GROUP", None),
]  # fmt: skip

ORIGINATIONS = [  # cdr_uuid, step, attempt, destination, start, answer, hangup, result, outcome
    ("c1", 1, 0, "1004", at(6), at(6) + 20 * S, at(6) + 320 * S, "ANSWERED", "ANSWERED"),
    ("c1", 1, 1, "1008", at(6), None, at(6) + 20 * S, "LOSE_RACE", "LOSE_RACE"),
    ("c2", 0, 0, "1004", at(6.5), None, at(6.5) + 40 * S, "NO_ANSWER", "OTHER"),
    ("c2", 0, 1, "1008", at(6.5), None, at(6.5) + 40 * S, "NO_ANSWER", "OTHER"),
    ("c7", 1, 0, "1015", at(7, 1), at(7, 1) + 10 * S, at(7, 1) + 100 * S, "ANSWERED",
     "ANSWERED"),
    ("c7", 1, 1, "1004", at(7, 1), None, at(7, 1) + 10 * S, "LOSE_RACE", "LOSE_RACE"),
]  # fmt: skip


@pytest.fixture
def marts(warehouse: Warehouse) -> Warehouse:
    with warehouse.transaction() as con:
        con.executemany(f"INSERT INTO cdrs VALUES ({', '.join(['?'] * 22)})", CALLS)
        con.executemany(f"INSERT INTO call_flow_steps VALUES ({', '.join(['?'] * 9)})", STEPS)
        con.executemany(
            "INSERT INTO originations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(*row, row[-1] == "ANSWERED") for row in ORIGINATIONS],
        )
    return warehouse


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
    got = rows(marts, "SELECT * FROM daily_call_summary ORDER BY call_date, direction")
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
    got = rows(marts, "SELECT * FROM ring_group_performance ORDER BY ring_group, destination")
    assert got == [
        # group 101 rang 1004 and 1008 on c1 and c2: 1004 answered c1, missed c2
        ("101", "1004", 2, 1, 0, 0.5),
        # 1008 lost the race on c1 and missed c2
        ("101", "1008", 2, 0, 1, 0.0),
        # group 102 on c7: 1015 answered, 1004 lost the race
        ("102", "1004", 1, 0, 1, 0.0),
        ("102", "1015", 1, 1, 0, 1.0),
    ]


def test_hourly_call_load(marts: Warehouse) -> None:
    got = rows(marts, "SELECT * FROM hourly_call_load ORDER BY weekday, hour")
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
    got = rows(marts, "SELECT * FROM extension_activity ORDER BY extension")
    assert got == [
        # extension, rings, answered_calls, talk_seconds, missed_rings, lost_races,
        # outgoing_calls, outgoing_talk_seconds
        # 1004 rang 4 times: c1 (answered, 300 s), c2 (nobody answered: missed),
        # c7 (lost the race), c6 (direct, answered, 60 s); it made c4 (OUT, 120 s).
        ("1004", 4, 2, 360, 1, 1, 1, 120),
        # 1008: c1 lost the race, c2 missed; its LOCAL call c6 counts at 1004.
        ("1008", 2, 0, 0, 1, 1, 0, 0),
        # 1015: c7 answered, 90 s
        ("1015", 1, 1, 90, 0, 0, 0, 0),
    ]


def test_missed_calls(marts: Warehouse) -> None:
    got = rows(
        marts,
        "SELECT uuid, call_date, local_call_time, caller, ring_seconds, caller_masked, "
        "caller_missed_calls, reached_at, needs_call_back FROM missed_calls ORDER BY call_time",
    )
    local = lambda h, m, d=6: datetime(2024, 5, d, h, m)  # noqa: E731
    assert got == [
        # c2: called back by c4 (OUT to the number, answered, later): reached at c4's start
        ("c2", date(2024, 5, 6), local(9, 30), "905321110000", 40, False, 1, at(8), False),
        # c3: masked, never matched, no call-back possible
        ("c3", date(2024, 5, 6), local(10, 10), "90532xxxxxxx", 15, True, 1, None, False),
        # c5 and c8: the same caller missed twice, never reached afterwards
        ("c5", date(2024, 5, 7), local(0, 30, 7), "905559990000", 30, False, 2, None, True),
        # c9: the caller tried again at 10:00 (c7) and was answered
        ("c9", date(2024, 5, 7), local(9, 50, 7), "905441234567", 20, False, 1, at(7, 1),
         False),
        ("c8", date(2024, 5, 7), local(15, 0, 7), "905559990000", 25, False, 2, None, True),
    ]  # fmt: skip
