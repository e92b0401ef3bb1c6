"""Replaying stored raw payloads through the normaliser: exact rows, batches, the command.

Every test runs on both warehouses (``target``: a DuckDB file, a PostgreSQL database):
replay reads the raw payloads back as stored and rewrites the rows on either.
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bulutfon_pipeline.cli.main import main
from bulutfon_pipeline.normalize import Reject, normalize_details
from bulutfon_pipeline.replay import ReplaySummary, replay_details
from bulutfon_pipeline.runner import sync_lock
from bulutfon_pipeline.warehouse import Warehouse
from bulutfon_pipeline_tests.fixtures import load_fixture
from bulutfon_pipeline_tests.fixtures.synthetic import make_details
from bulutfon_pipeline_tests.helpers import BACKENDS, WarehouseTarget, environment

pytestmark = pytest.mark.parametrize("backend", BACKENDS)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
#: Every table a replay may rewrite: its columns (``*``: all of them, in the table's order,
#: but ``cdrs.loaded_at``, the time of the write). The payload as text, as it is stored.
TABLES = {
    "cdrs": "*",
    "call_flow_steps": "*",
    "originations": "*",
    "raw_cdr_details": "uuid, fetched_at, CAST(payload AS VARCHAR)",
    "load_rejects": "uuid, stage, reason",
}
SKIPPED = {"loaded_at", "account"}  # account: every row is the one account's (checked below)


@pytest.fixture
def warehouse(target: WarehouseTarget) -> Warehouse:
    wh = target.warehouse()
    wh.ensure_schema()
    return wh


def load(wh: Warehouse, payloads: list[dict[str, Any]]) -> None:
    raw = [(p["uuid"], p) for p in payloads]
    wh.load_details(raw, normalize_details(payloads), fetched_at=T0)


def snapshot(wh: Warehouse) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of :data:`TABLES`, sorted (SQL that both engines run)."""
    tables = {}
    with wh.transaction() as con:
        for table, columns in TABLES.items():
            cursor = con.execute(f"SELECT {columns} FROM {table}")
            names = [d[0] for d in cursor.description]
            keep = [i for i, name in enumerate(names) if name not in SKIPPED]
            fetched = cursor.fetchall()
            if "account" in names:
                position = names.index("account")
                assert {row[position] for row in fetched} <= {"default"}, table
            rows = [tuple(row[i] for i in keep) for row in fetched]
            tables[table] = sorted(rows, key=lambda row: tuple((v is None, str(v)) for v in row))
    return tables


def damage(wh: Warehouse, *uuids: str) -> None:
    """What an older, wrong normaliser could have left: lost originations, a lost code."""
    with wh.transaction() as con:
        for uuid in uuids:
            con.execute("DELETE FROM originations WHERE cdr_uuid = ?", [uuid])
            con.execute("UPDATE cdrs SET hangup_cause_code = NULL WHERE uuid = ?", [uuid])


def test_replay_rewrites_exactly_what_the_payloads_load(warehouse: Warehouse) -> None:
    calls = make_details(5)
    load(warehouse, calls)
    before = snapshot(warehouse)
    assert len(before["originations"]) > 0
    uuids = sorted(c["uuid"] for c in calls)
    damage(warehouse, *uuids)
    assert snapshot(warehouse) != before

    summary = replay_details(warehouse, batch_size=2)

    # sorted by uuid in batches of 2: 2 + 2 + 1
    assert summary == ReplaySummary(
        payloads=5, updated=5, new=0, rejected=0, batches=3, seconds=summary.seconds
    )
    assert snapshot(warehouse) == before  # raw_cdr_details untouched, the rest restored


def test_replay_of_some_uuids_leaves_the_others_alone(warehouse: Warehouse) -> None:
    calls = make_details(3)
    load(warehouse, calls)
    first, second, third = sorted(c["uuid"] for c in calls)
    damage(warehouse, first, second, third)
    damaged = snapshot(warehouse)

    summary = replay_details(warehouse, [third, "not-stored"])

    assert (summary.payloads, summary.updated, summary.batches) == (1, 1, 1)
    after = snapshot(warehouse)
    assert [r for r in after["originations"] if r[0] != third] == damaged["originations"]
    assert {r[0] for r in after["originations"]} == {third}
    codes = {r[0]: r[16] for r in after["cdrs"]}  # hangup_cause_code
    assert codes[first] is None and codes[second] is None and codes[third] is not None


def test_a_call_an_older_normaliser_rejected_loads_and_loses_its_reject(
    warehouse: Warehouse,
) -> None:
    payload = load_fixture("seed_cdr_detail.json")["cdr"]
    uuid = payload["uuid"]
    # stored as the API sent it (a whole response), rejected by "the older normaliser"
    text = json.dumps({"cdr": payload}, ensure_ascii=False)
    rejected = Reject(uuid, "normalize", "call_time: unparseable (old bug)", text)
    empty = normalize_details([])
    warehouse.load_details([(uuid, text)], empty, fetched_at=T0, detail_rejects=())
    warehouse.add_rejects([rejected])
    assert snapshot(warehouse)["cdrs"] == []

    summary = replay_details(warehouse)

    assert (summary.payloads, summary.new, summary.updated, summary.rejected) == (1, 1, 0, 0)
    after = snapshot(warehouse)
    assert after["load_rejects"] == []
    assert [r[:3] for r in after["cdrs"]] == [(uuid, "voice", "IN")]
    assert len(after["call_flow_steps"]) == 4 and len(after["originations"]) == 4


def _sync_running(target: WarehouseTarget, wh: Warehouse) -> contextlib.AbstractContextManager:
    """Hold the sync's lock, as a running sync does: the file lock beside a DuckDB file,
    PostgreSQL's advisory lock."""
    if isinstance(target.db, Path):
        return sync_lock(target.db)
    return wh.advisory_lock(0.0)


def test_the_replay_command(target: WarehouseTarget, warehouse: Warehouse, tmp_path: Path) -> None:
    wh = warehouse
    calls = make_details(3)
    load(wh, calls)
    before = snapshot(wh)
    uuids = sorted(c["uuid"] for c in calls)
    damage(wh, *uuids)
    damaged = snapshot(wh)

    env = {
        **target.env,
        "BULUTFON_DATA_DIR": str(tmp_path / "data"),
        "BULUTFON_LOCK_TIMEOUT_S": "0",  # give up at once instead of waiting for the lock
    }
    with environment(env):
        with _sync_running(target, wh):  # a sync is running: the replay writes nothing
            busy = CliRunner().invoke(main, ["replay"])
        assert snapshot(wh) == damaged
        one = CliRunner().invoke(main, ["replay", "--uuid", uuids[0]])
        every = CliRunner().invoke(main, ["replay"])

    assert busy.exit_code == 3 and "another sync" in busy.output, busy.output

    assert one.exit_code == 0, one.output
    assert one.output == (
        "replayed 1 stored payloads in 1 batches: 1 calls rewritten, 0 new, 0 rejected\n"
    )
    assert every.exit_code == 0, every.output
    assert every.output == (
        "replayed 3 stored payloads in 1 batches: 3 calls rewritten, 0 new, 0 rejected\n"
    )
    assert snapshot(wh) == before


def test_the_replay_command_per_account_and_through_the_v2_field_map(
    target: WarehouseTarget, warehouse: Warehouse, tmp_path: Path
) -> None:
    # Two accounts of a file share the warehouse; each has calls whose payloads name the
    # extension in a v2 field that BULUTFON_V2_FIELD_MAP maps (a name of this test's own).
    izmir, ankara = (Warehouse.on(warehouse.db, account=name) for name in ("izmir", "ankara"))
    payloads = {}
    for wh, calls in ((izmir, make_details(2)), (ankara, make_details(2, seed=9))):
        for number, call in enumerate(calls):
            call["dahili_no"] = f"10{number}{wh.account[0]}"
        load(wh, calls)
        damage(wh, *(c["uuid"] for c in calls))
        payloads[wh.account] = calls
    accounts_file = tmp_path / "accounts.toml"
    accounts_file.write_text(
        "[accounts.izmir]\naccess_token_env = 'T1'\n[accounts.ankara]\naccess_token_env = 'T2'\n"
    )
    env = {
        **target.env,
        "BULUTFON_DATA_DIR": str(tmp_path / "data"),
        "BULUTFON_ACCOUNTS_FILE": str(accounts_file),
        "BULUTFON_V2_FIELD_MAP": "dahili_no=extension",
    }

    def extensions(wh: Warehouse) -> dict[str, str | None]:
        frame = wh.fetch_frame("SELECT uuid, extension FROM cdrs WHERE account = ?", [wh.account])
        return dict(zip(frame["uuid"], frame["extension"], strict=True))

    def origination_count(wh: Warehouse) -> int:
        frame = wh.fetch_frame(
            "SELECT count(*) AS n FROM originations WHERE account = ?", [wh.account]
        )
        return int(frame["n"][0])

    assert origination_count(izmir) == origination_count(ankara) == 0  # damaged
    with environment(env):
        one = CliRunner().invoke(main, ["replay", "--account", "izmir"])
        assert one.exit_code == 0, one.output
        assert extensions(izmir) == {c["uuid"]: c["dahili_no"] for c in payloads["izmir"]}
        assert origination_count(izmir) > 0
        assert set(extensions(ankara).values()) == {None}  # not replayed yet
        assert origination_count(ankara) == 0
        every = CliRunner().invoke(main, ["replay"])
        unknown = CliRunner().invoke(main, ["replay", "--account", "bursa"])
    assert every.exit_code == 0, every.output
    assert every.output.startswith("replayed 4 stored payloads in 2 batches: 4 calls rewritten")
    assert extensions(ankara) == {c["uuid"]: c["dahili_no"] for c in payloads["ankara"]}
    assert unknown.exit_code == 2 and "unknown account(s) 'bursa'" in unknown.output
