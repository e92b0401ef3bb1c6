"""Change detection and the ``cdr_changes`` audit, on a DuckDB file and on PostgreSQL."""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from bulutfon_pipeline.normalize import normalize_details
from bulutfon_pipeline.warehouse import Warehouse, changes, schema
from bulutfon_pipeline.warehouse.changes import ChangedCall
from bulutfon_pipeline.warehouse.views import view_names
from bulutfon_pipeline_tests.fixtures import load_fixture
from bulutfon_pipeline_tests.warehouse.test_migrations import fixture_statements, with_bulk_keys

FETCHED = datetime(2015, 4, 17, 9, 0, tzinfo=UTC)


def _detail(name: str) -> dict[str, Any]:
    detail: dict[str, Any] = load_fixture(name)["cdr"]
    return detail


def _load(wh: Warehouse, detail: dict[str, Any], **kwargs: Any) -> Any:
    return wh.load_details(
        [(detail["uuid"], detail)], normalize_details([detail]), fetched_at=FETCHED, **kwargs
    )


def _listing_item(detail: dict[str, Any], **changed: Any) -> dict[str, Any]:
    item = {k: v for k, v in copy.deepcopy(detail).items() if k != "call_flow"}
    item.update(changed)
    return item


def _rows(wh: Warehouse, sql: str) -> list[tuple[Any, ...]]:
    with wh.transaction() as con:
        return con.execute(sql).fetchall()


@pytest.mark.parametrize("fixture", ["v1_cdr_detail.json", "seed_cdr_detail.json"])
def test_an_unchanged_listing_item_is_no_change(warehouse: Warehouse, fixture: str) -> None:
    detail = _detail(fixture)
    _load(warehouse, detail)
    assert changes.detect(warehouse, [_listing_item(detail)]) == []


@pytest.mark.parametrize(
    ("changed", "fields"),
    [
        # one case per tracked field, in the v1 dialect
        ({"call_record": "REMOVED"}, ("call_record",)),
        ({"call_price": "0.0200"}, ("call_price",)),
        ({"call_price": 0.0182}, ()),  # the same price as a JSON number
        ({"call_price": None}, ("call_price",)),
        ({"missing_call": True}, ("missing_call",)),
        ({"answer_time": None}, ("answer_time",)),  # missing_call is as sent (v1)
        ({"hangup_time": "2015-04-16T11:05:00+03:00"}, ("hangup_time",)),
        ({"hangup_time": "2015-04-16T08:04:00Z"}, ()),  # the same instant, other offset
        ({"hangup_cause": "USER_BUSY"}, ("hangup_cause",)),
        ({"hangup_state": "send_bye"}, ("hangup_state",)),
        ({"caller": "905320000000"}, ()),  # not a tracked field: a listing does not change it
    ],
)
def test_each_tracked_field_is_compared(
    warehouse: Warehouse, changed: dict[str, Any], fields: tuple[str, ...]
) -> None:
    detail = _detail("v1_cdr_detail.json")
    _load(warehouse, detail)
    found = changes.detect(warehouse, [_listing_item(detail, **changed)])
    want = [ChangedCall(detail["uuid"], date(2015, 4, 16), fields)] if fields else []
    assert found == want


def test_fields_the_listing_leaves_out_are_not_compared(warehouse: Warehouse) -> None:
    detail = _detail("v1_cdr_detail.json")
    _load(warehouse, detail)
    item = _listing_item(detail)
    for name in changes.TRACKED_FIELDS:
        del item[name]
    assert changes.detect(warehouse, [item]) == []


def test_calls_not_loaded_bad_items_and_days_after_the_end_are_left_out(
    warehouse: Warehouse,
) -> None:
    detail = _detail("v1_cdr_detail.json")
    _load(warehouse, detail)
    changed = _listing_item(detail, call_price="9.0000")
    stranger = _listing_item(detail, uuid="not-loaded", call_price="9.0000")
    bad = {"uuid": detail["uuid"], "call_time": "31-02-2015 10:00"}
    assert changes.detect(warehouse, [stranger, 42, None]) == []
    assert changes.detect(warehouse, [bad]) == []
    assert changes.detect(warehouse, [changed], last_day=date(2015, 4, 15)) == []
    assert len(changes.detect(warehouse, [changed], last_day=date(2015, 4, 16))) == 1


def test_a_reload_writes_one_change_row_per_field_and_clears_the_mark(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    detail = _detail("v1_cdr_detail.json")
    _load(warehouse, detail)
    uuid = detail["uuid"]
    recording = tmp_path / "recordings" / "2015" / "04" / "16" / f"{uuid}.wav"
    recording.parent.mkdir(parents=True)
    recording.write_bytes(b"RIFF....WAVE")
    with warehouse.transaction() as con:
        con.execute(
            "INSERT INTO call_recordings VALUES ('default', ?, ?, 'audio/wav', 12, 'x', ?)",
            [uuid, f"recordings/2015/04/16/{uuid}.wav", FETCHED],
        )
    detected = datetime(2015, 4, 17, 8, 0, tzinfo=UTC)
    changes.mark_for_refetch(
        warehouse, [ChangedCall(uuid, date(2015, 4, 16), ("call_record",))], detected_at=detected
    )
    later = {**detail, "call_record": "REMOVED", "call_price": None,
             "hangup_time": "2015-04-16T11:05:00+03:00"}  # fmt: skip
    result = _load(warehouse, later, mirror_recording_deletes=tmp_path)
    assert (result.changes, result.recordings_deleted, result.updated) == (4, 1, 1)
    audit = "SELECT uuid, call_date, field, old_value, new_value, detected_at, seen_at"
    assert sorted(_rows(warehouse, audit + " FROM cdr_changes")) == [
        (uuid, date(2015, 4, 16), "call_price", "0.0182", None, detected, FETCHED),
        (uuid, date(2015, 4, 16), "call_record", "YES", "REMOVED", detected, FETCHED),
        (
            uuid,
            date(2015, 4, 16),
            "hangup_time",
            "2015-04-16T08:04:00Z",
            "2015-04-16T08:05:00Z",
            detected,
            FETCHED,
        ),
        (
            uuid,
            date(2015, 4, 16),
            "recording_file",
            f"recordings/2015/04/16/{uuid}.wav",
            None,
            detected,
            FETCHED,
        ),
    ]
    assert not recording.exists()
    assert _rows(warehouse, "SELECT count(*) FROM call_recordings") == [(0,)]
    assert _rows(warehouse, "SELECT count(*) FROM _cdr_refetch") == [(0,)]
    # Loading the same detail again changes nothing, so it audits nothing.
    again = _load(warehouse, later, mirror_recording_deletes=tmp_path)
    assert again.changes == 0
    assert _rows(warehouse, "SELECT count(*) FROM cdr_changes") == [(4,)]


def test_a_first_load_audits_nothing(warehouse: Warehouse) -> None:
    result = _load(warehouse, _detail("v1_cdr_detail.json"))
    assert (result.new, result.changes) == (1, 0)
    assert _rows(warehouse, "SELECT count(*) FROM cdr_changes") == [(0,)]


def test_a_warehouse_from_before_gets_the_new_tables_on_the_next_sync(
    warehouse: Warehouse,
) -> None:
    # A fresh database with the tables of a release before change detection (and before
    # migrations): the fixture of test_migrations without cdr_changes and _cdr_refetch.
    wh = Warehouse.on(warehouse.db)
    with wh.transaction() as con:
        for table in ("_views_state", "alembic_version", *(v for v in view_names())):
            kind = "VIEW" if table in view_names() else "TABLE"
            con.execute(f"DROP {kind} IF EXISTS {table}")
        for table in reversed(schema.metadata.sorted_tables):
            con.execute(f"DROP TABLE IF EXISTS {table.name}")
        statements = fixture_statements()
        if wh.is_server:
            statements = with_bulk_keys(statements)
        for statement in statements:
            if "cdr_changes" not in statement and "_cdr_refetch" not in statement:
                con.execute(statement)
    wh.ensure_schema()
    assert _rows(wh, "SELECT count(*) FROM cdr_changes") == [(0,)]
    assert _rows(wh, "SELECT count(*) FROM _cdr_refetch") == [(0,)]
    assert _rows(wh, "SELECT account, count(*) FROM cdrs GROUP BY account") == [("default", 2)]
    _load(wh, _detail("v1_cdr_detail.json"))
    assert _rows(wh, "SELECT account, count(*) FROM cdrs GROUP BY account") == [("default", 3)]


def test_a_call_marked_for_refetch_is_pending_everywhere(warehouse: Warehouse) -> None:
    # The uuids to fetch, the days to load and a stopped sync's "still to load" agree.
    detail = _detail("v1_cdr_detail.json")
    _load(warehouse, detail)
    uuid, day = detail["uuid"], date(2015, 4, 16)
    with warehouse.transaction() as con:
        con.execute(
            "INSERT INTO cdr_listing "
            "(account, uuid, call_time, call_date, first_seen_at, last_seen_at) "
            "VALUES ('default', ?, ?, ?, ?, ?)",
            [uuid, datetime(2015, 4, 16, 8, 0, tzinfo=UTC), day, FETCHED, FETCHED],
        )
    assert warehouse.pending_dates() == []
    assert warehouse.load_progress(FETCHED).pending_calls == 0
    changes.mark_for_refetch(
        warehouse, [ChangedCall(uuid, day, ("call_price",))], detected_at=FETCHED
    )
    assert warehouse.pending_uuids(day, day) == [uuid]
    assert warehouse.pending_dates() == [day]
    progress = warehouse.load_progress(FETCHED)
    assert (progress.pending_calls, progress.pending_days) == (1, (day,))
