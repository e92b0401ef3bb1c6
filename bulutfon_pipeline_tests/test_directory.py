"""Loading the PBX's directory (``directory.py``): the simulator's directory, fetched,
normalized and versioned on DuckDB; normalize's rejects; v2 skips it."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from bulutfon_pipeline.api import BulutfonClient, ClientConfig, ServerError
from bulutfon_pipeline.directory import load_directory
from bulutfon_pipeline.normalize.directory import normalize_directory
from bulutfon_pipeline.warehouse import Warehouse
from bulutfon_pipeline_tests.helpers import BEGINNING, expected_rows, read_table, versions

T0 = dt.datetime(2015, 4, 2, 6, 0, tzinfo=dt.UTC)
T1 = dt.datetime(2015, 4, 10, 7, 0, tzinfo=dt.UTC)
TABLES = ("extensions", "ring_groups", "ring_group_members", "phone_numbers", "phone_number_hours")


def _load(sim: Any, wh: Warehouse, tmp_path: Path, **config: Any):
    client_config = ClientConfig(
        api_url=sim.url, access_token=sim.state.master_token, data_dir=tmp_path, **config
    )
    with BulutfonClient(client_config) as client:
        return load_directory(client, wh)


def test_sync_change_sync_versions_the_simulators_directory(simulator_factory, tmp_path) -> None:
    sim = simulator_factory(days=1, calls_per_day=5, clock=T0.isoformat())
    wh = Warehouse(tmp_path / "w.duckdb")
    wh.ensure_schema()
    before = sim.state.directory.expected()
    first = _load(sim, wh, tmp_path)
    # 3 lists + 20 extensions + 2 groups + 2 numbers, the Date header as the instant.
    assert (first.requests, first.first_load, first.observed_at) == (27, True, T0.isoformat())
    assert sim.stats()["directory"] == {"200": 27}
    for table in TABLES:
        want = expected_rows({table: versions(before[table])}, table)
        assert read_table(tmp_path / "w.duckdb", table) == want, table

    # Nothing changed: the same requests, nothing written.
    again = _load(sim, wh, tmp_path)
    assert again.writes == 0 and sum(again.unchanged.values()) == 20 + 2 + 20 + 2

    sim.update_config(clock=T1.isoformat())
    httpx.post(sim.url + "/_admin/directory/change").raise_for_status()
    after = sim.state.directory.expected()
    changed = _load(sim, wh, tmp_path)
    assert changed.opened == {"extensions": 1, "ring_groups": 0, "ring_group_members": 1,
                              "phone_numbers": 0}  # fmt: skip
    assert changed.closed == changed.opened
    # By hand: extension 1004 (id 5104) renamed; in group 101 (id 11) 1010 (5110) left,
    # 1011 (5111) joined; nothing else changed.
    old_name = next(r for r in before["extensions"] if r["extension_id"] == "5104")
    new_name = next(r for r in after["extensions"] if r["extension_id"] == "5104")
    assert new_name == {**old_name, "caller_name": old_name["caller_name"] + " Erdem"}
    others = [r for r in before["extensions"] if r["extension_id"] != "5104"]
    want_extensions = [*versions(others), *versions([old_name], BEGINNING, T1),
                       *versions([new_name], T1)]  # fmt: skip
    assert read_table(wh.path, "extensions") == expected_rows(
        {"extensions": want_extensions}, "extensions"
    )
    left = {"group_id": "11", "extension_id": "5110", "extension_number": "1010"}
    joined = {"group_id": "11", "extension_id": "5111", "extension_number": "1011"}
    stayed = [m for m in before["ring_group_members"] if m != left]

    def by_key(members: list[dict[str, str]]) -> list[dict[str, str]]:
        return sorted(members, key=lambda m: (m["group_id"], m["extension_id"]))

    assert by_key(after["ring_group_members"]) == by_key([*stayed, joined])
    want_members = [*versions(stayed), *versions([left], BEGINNING, T1), *versions([joined], T1)]
    assert read_table(wh.path, "ring_group_members") == expected_rows(
        {"ring_group_members": want_members}, "ring_group_members"
    )
    for table in ("ring_groups", "phone_numbers", "phone_number_hours"):
        want = expected_rows({table: versions(after[table])}, table)
        assert read_table(wh.path, table) == want, table


def test_v2_skips_the_directory_with_one_info_line(simulator_factory, tmp_path, caplog) -> None:
    sim = simulator_factory(days=1, calls_per_day=5, dialect="v2")
    wh = Warehouse(tmp_path / "w.duckdb")
    wh.ensure_schema()
    with caplog.at_level(logging.INFO, logger="bulutfon_pipeline.directory"):
        summary = _load(sim, wh, tmp_path, api_version="v2", api_key=sim.state.api_key)
    assert summary.skipped and summary.requests == 0
    assert [r.getMessage() for r in caplog.records if r.name == "bulutfon_pipeline.directory"] == [
        "directory of default skipped: the v2 API's directory is not public"
    ]
    assert sim.stats()["total"] == 0
    assert all(read_table(wh.path, table) == [] for table in TABLES)


_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_WEEK = {day: {"open": False} for day in _DAYS}


@pytest.mark.parametrize(
    "items, reason",
    [
        # an extension without an id: rejected, nothing of it kept
        ({"extensions": [{"number": 1001}]}, "extension: id missing or not a number None"),
        # voice_mail must be a boolean
        ({"extensions": [{"id": 5, "voice_mail": "yes"}]},
         "extension 5: voice_mail: not a boolean 'yes'"),
        # acl is a list of texts
        ({"extensions": [{"id": 5, "acl": "gsm"}]}, "extension 5: acl: not a list of texts 'gsm'"),
        # the same id twice: the second is rejected
        ({"extensions": [{"id": 5}, {"id": "5"}]}, "extension 5: listed twice"),
        # a group's timeout must be a whole number
        ({"groups": [{"id": 11, "timeout": "30s", "extensions": []}]},
         "group 11: timeout: not a whole number '30s'"),
        # a group's members must be a list
        ({"groups": [{"id": 11}]}, "group 11: extensions: the group's members are not a list None"),
        # a number's working hours need all seven days
        ({"dids": [{"id": 7, "working_hours": {"monday": {"open": False}}}]},
         "did 7: working_hours.tuesday: missing or not an object None"),
        # an open day needs its shift
        ({"dids": [{"id": 7, "working_hours": {**_WEEK, "monday": {"open": True}}}]},
         "did 7: working_hours.monday: open without shift_start/shift_finish"),
        # times are HH:MM
        ({"dids": [{"id": 7, "working_hours": {**_WEEK, "sunday": {
            "open": True, "shift_start": "9am", "shift_finish": "13:00"}}}]},
         "did 7: working_hours.sunday.shift_start: not an HH:MM time '9am'"),
    ],
)  # fmt: skip
def test_normalize_rejects_a_bad_item_with_its_reason(items, reason) -> None:
    out = normalize_directory(items)
    assert [(r.uuid, r.stage, r.reason) for r in out.rejects] == [(None, "directory", reason)]
    bad_rows = {t: rows for t, rows in out.tables.items() if rows}
    if "listed twice" in reason:  # the first of the two is loaded
        assert [r["extension_id"] for r in bad_rows.pop("extensions")] == ["5"]
    assert bad_rows == {}


def test_normalize_reads_numbers_as_text_and_days_as_iso_weekdays() -> None:
    week = {**_WEEK, "saturday": {"open": True, "shift_start": "09:00", "shift_finish": "13:00"}}
    out = normalize_directory({
        "extensions": [{"id": 5101, "number": 1001, "did": 908508850000, "acl": ["gsm", "domestic"],
                        "destination_number": 1003, "voice_mail": True}],
        "groups": [{"id": "11", "number": 101, "timeout": "30", "extensions": [
            {"id": 5101, "number": "1001"}, {"id": "5102", "number": 1002}]}],
        "dids": [{"id": 7, "number": "908508850000", "destination_type": "Auto attendant",
                  "destination_id": 1, "working_hour": True, "working_hours": week}],
    })  # fmt: skip
    assert out.rejects == []
    [ext] = out.tables["extensions"]
    assert (ext["extension_id"], ext["number"], ext["did"], ext["acl"]) == (
        "5101",
        "1001",
        "908508850000",
        "gsm,domestic",
    )
    assert ext["destination_number"] == "1003" and ext["caller_name"] is None
    assert out.tables["ring_groups"][0]["timeout"] == 30
    members = out.tables["ring_group_members"]
    assert [(m["extension_id"], m["extension_number"]) for m in members] == [
        ("5101", "1001"), ("5102", "1002")
    ]  # fmt: skip
    assert out.tables["phone_numbers"][0]["destination_type"] == "Auto attendant"
    hours = out.tables["phone_number_hours"]
    assert [(h["weekday"], h["open"]) for h in hours] == [
        (1, False), (2, False), (3, False), (4, False), (5, False), (6, True), (7, False)
    ]  # fmt: skip
    assert (hours[5]["shift_start"], hours[5]["shift_finish"]) == (dt.time(9), dt.time(13))


def _mock_client(tmp_path: Path, extensions: dict[int, int | dict[str, Any]]) -> BulutfonClient:
    """A client of a small API: ``extensions`` maps each listed id to its detail (or to
    the status its detail answers); no groups or numbers; ``Date`` 2015-04-10 06:00Z."""

    def handler(request: httpx.Request) -> httpx.Response:
        headers = {"Date": "Fri, 10 Apr 2015 06:00:00 GMT"}
        path = request.url.path
        if path == "/extensions":
            body: dict[str, Any] = {
                "extensions": [{"id": i, "number": 1000 + i} for i in extensions]
            }
        elif path in ("/groups", "/dids"):
            body = {path[1:]: []}
        else:
            answer = extensions[int(path.rsplit("/", 1)[1])]
            if isinstance(answer, int):
                return httpx.Response(answer, json={"error": "x"}, headers=headers)
            body = {"extension": answer}
        return httpx.Response(200, json=body, headers=headers)

    config = ClientConfig(
        api_url="https://api.test", access_token="tok", data_dir=tmp_path, max_retries=1,
        backoff_base_s=0.0,
    )  # fmt: skip
    return BulutfonClient(config, transport=httpx.MockTransport(handler))


def test_a_detail_that_404s_keeps_its_version_and_a_failing_one_writes_nothing(tmp_path) -> None:
    wh = Warehouse(tmp_path / "w.duckdb")
    wh.ensure_schema()
    with _mock_client(tmp_path, {1: {"caller_name": "Ayşe"}, 2: {"caller_name": "Can"}}) as c:
        assert load_directory(c, wh).opened["extensions"] == 2
    # Extension 2's detail now answers 404 (deleted meanwhile): its version stays open,
    # and 1's name change is loaded at the Date instant.
    with _mock_client(tmp_path, {1: {"caller_name": "Ayşe K."}, 2: 404}) as client:
        summary = load_directory(client, wh)
    assert (summary.requests, summary.opened["extensions"], summary.closed["extensions"]) == (
        5, 1, 1
    )  # fmt: skip
    at = dt.datetime(2015, 4, 10, 6, 0, tzinfo=dt.UTC)
    got = [(r["extension_id"], r["caller_name"], r["valid_from"], r["valid_to"])
           for r in read_table(wh.path, "extensions")]  # fmt: skip
    assert got == [("1", "Ayşe", BEGINNING, at), ("1", "Ayşe K.", at, None),
                   ("2", "Can", BEGINNING, None)]  # fmt: skip
    # A detail that keeps failing (500): the error is raised and nothing is written.
    failing = _mock_client(tmp_path, {1: {"caller_name": "Ayşe L."}, 2: 500})
    with failing as client, pytest.raises(ServerError):
        load_directory(client, wh)
    assert [r["caller_name"] for r in read_table(wh.path, "extensions")] == [
        "Ayşe",
        "Ayşe K.",
        "Can",
    ]
