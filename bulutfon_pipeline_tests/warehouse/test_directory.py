"""The directory's versions (``warehouse/directory.py``), on DuckDB and PostgreSQL: every
expected row below is written by hand from the versioning rules in ``schema.py``."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from bulutfon_pipeline.normalize import Reject
from bulutfon_pipeline.warehouse import Warehouse, schema

UTC = dt.UTC
BEGINNING = dt.datetime(1970, 1, 1, tzinfo=UTC)
T1 = dt.datetime(2015, 4, 5, 9, 0, tzinfo=UTC)
T2 = dt.datetime(2015, 4, 10, 7, 0, tzinfo=UTC)
T3 = dt.datetime(2015, 4, 12, 8, 30, tzinfo=UTC)
H = dt.time.fromisoformat


def _ext(ext_id: str, number: str, name: str) -> dict[str, Any]:
    return {
        "extension_id": ext_id, "number": number, "caller_name": name,
        "email": f"{number}@ornek.com.tr", "did": "908508850000", "voice_mail": False,
        "redirection_type": "NONE", "destination_type": None, "destination_number": None,
        "external_number": None, "acl": "domestic,gsm",
    }  # fmt: skip


GROUP = {"group_id": "11", "number": "101", "name": "Satış", "timeout": 30, "delay_time": 0,
         "ring_duration": 20}  # fmt: skip
DID = {"did_id": "7", "number": "908508850000", "state": "CONFIRMED",
       "destination_type": "Auto attendant", "destination_id": "1", "destination_number": None,
       "working_hour": True}  # fmt: skip


def _member(ext_id: str, number: str) -> dict[str, Any]:
    return {"group_id": "11", "extension_id": ext_id, "extension_number": number}


def _hours(saturday_open: bool = True) -> list[dict[str, Any]]:
    week = [
        {"weekday": day, "open": True, "shift_start": H("08:30"), "shift_finish": H("18:30"),
         "lunch_break_start": H("12:30"), "lunch_break_finish": H("13:30")}
        for day in range(1, 6)
    ]  # fmt: skip
    saturday = {"weekday": 6, "open": saturday_open, "shift_start": H("09:00"),
                "shift_finish": H("13:00"), "lunch_break_start": None,
                "lunch_break_finish": None}  # fmt: skip
    if not saturday_open:
        saturday.update(shift_start=None, shift_finish=None)
    sunday = {"weekday": 7, "open": False, "shift_start": None, "shift_finish": None,
              "lunch_break_start": None, "lunch_break_finish": None}  # fmt: skip
    return [{"did_id": "7", **day} for day in [*week, saturday, sunday]]


def _directory(
    extensions: list[dict[str, Any]],
    members: list[dict[str, Any]],
    saturday_open: bool = True,
) -> dict[str, list[dict[str, Any]]]:
    return {
        "extensions": extensions,
        "ring_groups": [GROUP],
        "ring_group_members": members,
        "phone_numbers": [DID],
        "phone_number_hours": _hours(saturday_open),
    }


def _rows(wh: Warehouse, table: str) -> list[dict[str, Any]]:
    """``table``'s rows of the account, instants in UTC, sorted."""
    names = [c.name for c in schema.metadata.tables[table].c if c.name != "account"]
    with wh.transaction() as tx:
        fetched = tx.execute(
            f"SELECT {', '.join(names)} FROM {table} WHERE account = ?",
            [wh.account],
        ).fetchall()

    def utc(value: Any) -> Any:
        return value.astimezone(UTC) if isinstance(value, dt.datetime) else value

    rows = [{n: utc(v) for n, v in zip(names, r, strict=True)} for r in fetched]
    return sorted(rows, key=lambda r: [str(v) for v in r.values()])


def _versioned(row: dict[str, Any], start: dt.datetime, end: dt.datetime | None = None):
    """``row`` as stored: its key columns, then ``valid_from`` and ``valid_to``."""
    return {**row, "valid_from": start, "valid_to": end}


def _expect(table: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    order = [c.name for c in schema.metadata.tables[table].c if c.name != "account"]
    out = [{name: row[name] for name in order} for row in rows]
    return sorted(out, key=lambda r: [str(v) for v in r.values()])


def _snapshot(wh: Warehouse) -> dict[str, list[dict[str, Any]]]:
    return {t.name: _rows(wh, t.name) for t in schema.DIRECTORY_TABLES}


def test_versions_open_close_and_stay_put(warehouse: Warehouse) -> None:
    ayse, mehmet = _ext("1", "1001", "Ayşe Yılmaz"), _ext("2", "1002", "Mehmet Kaya")
    members = [_member("1", "1001"), _member("2", "1002")]

    # 1. The first load: every version valid from the beginning, none closed.
    first = warehouse.merge_directory(_directory([ayse, mehmet], members), observed_at=T1)
    assert first.first_load
    assert (first.opened, first.closed) == (
        {"extensions": 2, "ring_groups": 1, "ring_group_members": 2, "phone_numbers": 1},
        dict.fromkeys(first.opened, 0),
    )
    assert _rows(warehouse, "extensions") == _expect(
        "extensions", [_versioned(ayse, BEGINNING), _versioned(mehmet, BEGINNING)]
    )
    assert _rows(warehouse, "ring_groups") == _expect("ring_groups", [_versioned(GROUP, BEGINNING)])
    assert _rows(warehouse, "ring_group_members") == _expect(
        "ring_group_members", [_versioned(m, BEGINNING) for m in members]
    )
    assert _rows(warehouse, "phone_numbers") == _expect(
        "phone_numbers", [_versioned(DID, BEGINNING)]
    )
    assert _rows(warehouse, "phone_number_hours") == _expect(
        "phone_number_hours", [_versioned(h, BEGINNING) for h in _hours()]
    )

    # 2. The same directory again, later: nothing is written.
    before = _snapshot(warehouse)
    again = warehouse.merge_directory(_directory([ayse, mehmet], members), observed_at=T2)
    assert again.writes == 0 and not again.first_load
    assert again.unchanged == {"extensions": 2, "ring_groups": 1, "ring_group_members": 2,
                               "phone_numbers": 1}  # fmt: skip
    assert _snapshot(warehouse) == before

    # 3. At T2: Ayşe renamed, 1002 leaves the group and 1003 joins, a new extension 1003
    # (not a first load: valid from T2).
    renamed, zeynep = _ext("1", "1001", "Ayşe Yılmaz Demir"), _ext("3", "1003", "Zeynep Aydın")
    members_t2 = [_member("1", "1001"), _member("3", "1003")]
    changed = warehouse.merge_directory(
        _directory([renamed, mehmet, zeynep], members_t2), observed_at=T2
    )
    assert (changed.opened["extensions"], changed.closed["extensions"]) == (2, 1)
    assert (changed.opened["ring_group_members"], changed.closed["ring_group_members"]) == (1, 1)
    assert _rows(warehouse, "extensions") == _expect("extensions", [
        _versioned(ayse, BEGINNING, T2), _versioned(renamed, T2),
        _versioned(mehmet, BEGINNING), _versioned(zeynep, T2),
    ])  # fmt: skip
    assert _rows(warehouse, "ring_group_members") == _expect("ring_group_members", [
        _versioned(_member("1", "1001"), BEGINNING),
        _versioned(_member("2", "1002"), BEGINNING, T2),
        _versioned(_member("3", "1003"), T2),
    ])  # fmt: skip
    assert _rows(warehouse, "ring_groups") == before["ring_groups"]
    assert _rows(warehouse, "phone_number_hours") == before["phone_number_hours"]

    # 4. At T3: Saturday closes (the number and its seven days get a new version
    # together), 1002 is gone (closed), 1003's item was unreadable (kept as it is).
    reject = Reject(None, "directory", "extension 3: voice_mail: not a boolean 'yes'", "{}")
    later = warehouse.merge_directory(
        _directory([renamed], members_t2, saturday_open=False),
        observed_at=T3,
        unreadable={"extensions": {"3"}},
        rejects=[reject],
    )
    assert (later.opened["phone_numbers"], later.closed["phone_numbers"]) == (1, 1)
    assert (later.opened["extensions"], later.closed["extensions"]) == (0, 1)
    assert _rows(warehouse, "phone_numbers") == _expect(
        "phone_numbers", [_versioned(DID, BEGINNING, T3), _versioned(DID, T3)]
    )
    assert _rows(warehouse, "phone_number_hours") == _expect("phone_number_hours", [
        *(_versioned(h, BEGINNING, T3) for h in _hours()),
        *(_versioned(h, T3) for h in _hours(saturday_open=False)),
    ])  # fmt: skip
    assert _rows(warehouse, "extensions") == _expect("extensions", [
        _versioned(ayse, BEGINNING, T2), _versioned(renamed, T2),
        _versioned(mehmet, BEGINNING, T3), _versioned(zeynep, T2),
    ])  # fmt: skip
    rejects = warehouse.fetch_frame(
        "SELECT uuid, stage, reason FROM load_rejects WHERE account = ?", [warehouse.account]
    )
    assert rejects.to_dict("records") == [
        {"uuid": None, "stage": "directory", "reason": reject.reason}
    ]

    # 5. Also at T3: Ayşe renamed again (her version from T2 closes at T3) and Saturday
    # reopens: the number's version opened at T3 is rewritten in place (a version never
    # lasts zero seconds).
    third = _ext("1", "1001", "Ayşe Demir")
    same_instant = warehouse.merge_directory(
        _directory([third, zeynep], members_t2), observed_at=T3
    )
    assert (same_instant.opened["phone_numbers"], same_instant.closed["phone_numbers"]) == (1, 0)
    assert [r for r in _rows(warehouse, "extensions") if r["extension_id"] == "1"] == _expect(
        "extensions", [_versioned(ayse, BEGINNING, T2), _versioned(renamed, T2, T3),
                       _versioned(third, T3)]
    )  # fmt: skip
    assert _rows(warehouse, "phone_numbers") == _expect(
        "phone_numbers", [_versioned(DID, BEGINNING, T3), _versioned(DID, T3)]
    )
    assert _rows(warehouse, "phone_number_hours") == _expect("phone_number_hours", [
        *(_versioned(h, BEGINNING, T3) for h in _hours()),
        *(_versioned(h, T3) for h in _hours()),
    ])  # fmt: skip


def test_the_version_check_counts_overlaps_and_backwards_versions(warehouse: Warehouse) -> None:
    from bulutfon_pipeline.warehouse.integrity import directory_version_errors

    warehouse.merge_directory(
        _directory([_ext("1", "1001", "Ayşe"), _ext("2", "1002", "Mehmet")], []), observed_at=T1
    )
    assert directory_version_errors(warehouse) == dict.fromkeys(
        ("extensions", "ring_groups", "ring_group_members", "phone_numbers",
         "phone_number_hours"), 0
    )  # fmt: skip
    columns = "account, extension_id, valid_from, valid_to, number, caller_name"
    with warehouse.transaction() as con:
        # a second open version of extension 1; extension 2 closed before it opened; an
        # other account's overlap, which this account's check does not see
        rows = [
            ("default", "1", T2, None, "1001", "Ayşe Y."),
            ("default", "2", T2, T1, "1002", "Mehmet"),
            ("izmir", "9", T1, None, "1009", "A"),
            ("izmir", "9", T2, None, "1009", "B"),
        ]
        for row in rows:
            con.execute(f"INSERT INTO extensions ({columns}) VALUES (?, ?, ?, ?, ?, ?)", row)
    errors = directory_version_errors(warehouse)
    # 1's open versions overlap (1); 2's new version overlaps its open first one (1) and
    # ends before it starts (1); izmir's rows are not this account's
    assert errors["extensions"] == 3
    assert sum(errors.values()) == 3


def test_accounts_merged_together_get_what_each_merged_alone_gets(warehouse: Warehouse) -> None:
    from bulutfon_pipeline.warehouse.directory import DirectoryObservation

    ayse, mehmet = _ext("1", "1001", "Ayşe Yılmaz"), _ext("2", "1002", "Mehmet Kaya")
    renamed, zeynep = _ext("1", "1001", "Ayşe Demir"), _ext("3", "1003", "Zeynep Aydın")
    reject = Reject(None, "directory", "extension 3: voice_mail: not a boolean 'yes'", "{}")
    # Per account: its observations, in order. izmir changes at T2 and T3 (a rename, a
    # member leaving, Saturday closing, an unreadable item with its reject); ankara stays.
    observations = {
        "izmir": [
            (_directory([ayse, mehmet], [_member("1", "1001"), _member("2", "1002")]), T1, {}, []),
            (_directory([renamed, mehmet, zeynep], [_member("1", "1001")]), T2, {}, []),
            (_directory([renamed], [_member("1", "1001")], saturday_open=False), T3,
             {"extensions": {"3"}}, [reject]),
        ],
        "ankara": [(_directory([zeynep], [_member("3", "1003")]), t, {}, []) for t in (T1, T2, T3)],
    }  # fmt: skip
    together = Warehouse.on(warehouse.db, account="izmir")
    for step in range(3):
        merged = together.merge_directories([
            DirectoryObservation(account, steps[step][0], steps[step][1], steps[step][2],
                                 steps[step][3])
            for account, steps in observations.items()
        ])  # fmt: skip
        for (account, steps), result in zip(observations.items(), merged, strict=True):
            tables, at, unreadable, rejects = steps[step]
            alone = Warehouse.on(warehouse.db, account=f"{account}-alone")
            expected = alone.merge_directory(
                tables, observed_at=at, unreadable=unreadable, rejects=rejects
            )
            assert result == expected, (account, step)
            assert result.first_load == (step == 0)
    assert merged[0].closed["extensions"] == 1 and merged[1].writes == 0  # T3
    for account in observations:
        mine = Warehouse.on(warehouse.db, account=account)
        assert _snapshot(mine) == _snapshot(Warehouse.on(warehouse.db, account=f"{account}-alone"))
        assert _snapshot(mine)["extensions"]  # not two empty snapshots
    rejects = warehouse.fetch_frame("SELECT account, reason FROM load_rejects ORDER BY account")
    assert rejects.to_dict("records") == [
        {"account": "izmir", "reason": reject.reason},
        {"account": "izmir-alone", "reason": reject.reason},
    ]
    with pytest.raises(ValueError, match="one observation per account"):
        together.merge_directories([DirectoryObservation("izmir", {}, T3)] * 2)
