"""Detail batches through ``Warehouse.detail_writer`` (in the background on PostgreSQL), and
the two write paths of a batch: calls none of which is stored go straight into their
tables; a batch with stored calls is upserted. Both paths must leave the same rows.

Each test runs on DuckDB and on PostgreSQL (a real server).
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bulutfon_pipeline.normalize import Reject, normalize_details
from bulutfon_pipeline.warehouse import DetailLoadResult, Warehouse, WarehouseError
from bulutfon_pipeline.warehouse.postgres_backend import Postgres
from bulutfon_pipeline_tests.fixtures import load_fixture
from bulutfon_pipeline_tests.warehouse.conftest import BACKENDS, make_warehouse

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
T1 = datetime(2024, 5, 1, 12, 15, tzinfo=UTC)
UUID = "dd3b3506-e40e-11e4-9880-17aee3ce4e7b"
#: Every table a detail load writes, with the columns that hold load times left out.
TABLES = {
    "cdrs": "uuid, call_type, caller, callee, call_time, hangup_cause, hangup_cause_code, "
    "ring_seconds, talk_seconds, call_price",
    "call_flow_steps": "cdr_uuid, step_index, callee, start_time, redirection",
    "originations": "cdr_uuid, step_index, attempt_index, destination, outcome, answered",
    "raw_cdr_details": "uuid, CAST(payload AS VARCHAR)",
    "load_rejects": "uuid, stage, reason",
}


def _calls() -> list[dict[str, Any]]:
    """The seed detail (4 steps, 4 originations) and the four seed listing calls."""
    return [
        load_fixture("seed_cdr_detail.json")["cdr"],
        *load_fixture("seed_cdr_list.json")["cdrs"],
    ]


def _raw(payloads: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    return [(p["uuid"], p) for p in payloads]


def _load(wh: Warehouse, payloads: list[dict[str, Any]], **kwargs: Any) -> DetailLoadResult:
    return wh.load_details(_raw(payloads), normalize_details(payloads), **kwargs)


def _tables(wh: Warehouse) -> dict[str, list[tuple[Any, ...]]]:
    """The tables' rows (``TABLES``' columns), sorted."""
    with wh.transaction() as tx:
        return {
            table: sorted(tx.execute(f"SELECT {columns} FROM {table}").fetchall(), key=repr)
            for table, columns in TABLES.items()
        }


@pytest.fixture(params=BACKENDS)
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Warehouse, Warehouse]:
    """Two empty warehouses on one backend (PostgreSQL: two schemas of one database)."""
    first = make_warehouse(request, request.param, tmp_path)
    if request.param == "duckdb":
        second = Warehouse(tmp_path / "second.duckdb", lock_timeout_s=10.0)
    else:
        url = request.getfixturevalue("postgres_url")
        second = Warehouse.on(Postgres(url, schema="second", lock_timeout_s=10.0))
    second.ensure_schema()
    return first, second


def test_a_batch_of_new_and_stored_calls_gives_the_rows_of_a_first_load(
    pair: tuple[Warehouse, Warehouse],
) -> None:
    """One warehouse loads two calls, then a batch of those two (one changed: another
    hang-up cause, a step and its originations gone) and three new ones; the other loads
    the final batch only, all new (COPY straight into the tables on PostgreSQL). Same rows."""
    mixed, fresh = pair
    calls = _calls()
    first = _load(mixed, calls[:2], fetched_at=T0)
    assert (first.new, first.updated) == (2, 0)
    final = copy.deepcopy(calls)
    final[0]["hangup_cause"] = "Meşgul"
    final[0]["call_flow"] = final[0]["call_flow"][:3]

    again = _load(mixed, final, fetched_at=T1)
    once = _load(fresh, final, fetched_at=T1)

    assert (again.new, again.updated, again.changes) == (4, 2, 1)
    assert (once.new, once.updated, once.changes) == (6, 0, 0)
    assert _tables(mixed) == _tables(fresh)
    tables = _tables(fresh)
    assert len(tables["cdrs"]) == 6 and tables["load_rejects"] == []
    assert [r[:2] for r in tables["call_flow_steps"] if r[0] == UUID] == [
        (UUID, i) for i in range(3)
    ]
    assert [r for r in tables["originations"] if r[0] == UUID] == []
    seed = next(r for r in tables["cdrs"] if r[0] == UUID)
    assert seed[5:7] == ("Meşgul", "USER_BUSY")
    with mixed.transaction() as tx:
        changes = tx.execute("SELECT uuid, field, new_value FROM cdr_changes").fetchall()
    assert changes == [(UUID, "hangup_cause", "Meşgul")]


def test_a_first_load_clears_the_rejects_of_the_calls_it_loads(warehouse: Warehouse) -> None:
    """Calls whose fetch failed (no raw payload stored) then load in an all-new batch: their
    ``detail`` rejects go, other calls' rejects stay."""
    calls = _calls()
    failed = [Reject(c["uuid"], "detail", "HTTP 503", None) for c in calls[:2]]
    _load(
        warehouse, [], fetched_at=T0, detail_rejects=[*failed, Reject("x", "detail", "404", None)]
    )

    result = _load(warehouse, calls, fetched_at=T1)

    assert (result.new, result.updated) == (6, 0)
    assert _tables(warehouse)["load_rejects"] == [("x", "detail", "404")]
    assert len(_tables(warehouse)["raw_cdr_details"]) == 6


def test_the_writer_commits_every_batch_in_order(warehouse: Warehouse) -> None:
    calls = _calls()
    done: list[tuple[int, int, int]] = []
    with warehouse.session(), warehouse.detail_writer() as writer:
        for index, batch in enumerate((calls[:2], calls[2:], calls[:1])):
            writer.submit(
                _raw(batch),
                normalize_details(batch),
                fetched_at=T0,
                then=lambda loaded, i=index: done.append((i, loaded.new, loaded.updated)),
            )
    assert done == [(0, 2, 0), (1, 4, 0), (2, 0, 1)]
    assert len(_tables(warehouse)["cdrs"]) == 6


def test_a_failed_batch_stops_the_writer_and_keeps_the_batches_before_it(
    warehouse: Warehouse,
) -> None:
    calls = _calls()
    broken = normalize_details(calls[2:4])
    broken.cdrs.loc[0, "call_date"] = None  # NOT NULL: the write fails in the database
    done: list[int] = []
    first = normalize_details(calls[:2])
    with pytest.raises(WarehouseError, match=r"(?i)not.null"), warehouse.detail_writer() as writer:
        writer.submit(_raw(calls[:2]), first, fetched_at=T0, then=lambda r: done.append(r.new))
        writer.submit(_raw(calls[2:4]), broken, fetched_at=T0, then=lambda r: done.append(r.new))
        writer.submit(_raw(calls[4:]), normalize_details(calls[4:]), fetched_at=T0)
    assert done == [2]
    tables = _tables(warehouse)
    assert {r[0] for r in tables["cdrs"]} == {c["uuid"] for c in calls[:2]}
    assert {r[0] for r in tables["raw_cdr_details"]} == {c["uuid"] for c in calls[:2]}


def test_the_batch_in_flight_commits_before_the_callers_error_propagates(
    warehouse: Warehouse,
) -> None:
    calls = _calls()
    with pytest.raises(RuntimeError, match="fetch failed"), warehouse.detail_writer() as writer:
        writer.submit(_raw(calls), normalize_details(calls), fetched_at=T0)
        raise RuntimeError("fetch failed")
    assert len(_tables(warehouse)["cdrs"]) == 6
