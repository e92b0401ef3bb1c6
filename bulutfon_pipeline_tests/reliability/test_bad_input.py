"""Bad input from the API and from the user."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import subprocess
from pathlib import Path

import pytest

from bulutfon_pipeline.simulator.render import UNKNOWN_TOP_FIELDS
from bulutfon_pipeline_tests.helpers import assert_tables_match, read_table
from bulutfon_pipeline_tests.postgres import PostgresServer
from bulutfon_pipeline_tests.reliability.conftest import (
    WorkspaceFactory,
    url_with_password,
)

pytestmark = pytest.mark.reliability

#: API values that would break SQL built by string formatting.
HOSTILE = ["90'; DROP TABLE cdrs; --", "1' OR '1'='1", 'x"); DELETE FROM cdr_listing; --']


def _make_hostile(sim) -> str:
    """Give one call hostile caller/callee and flow-step values, in the simulator's own
    model, so the ground truth carries them too. Returns the call's uuid."""
    data = sim.dataset
    with data._lock:
        index = next(i for i, c in enumerate(data._calls) if c.flow)
        call = data._calls[index]
        flow = (call.flow[0]._replace(callee=HOSTILE[2]), *call.flow[1:])
        hostile = dataclasses.replace(call, caller=HOSTILE[0], callee=HOSTILE[1], flow=flow)
        data._calls[index] = hostile
        data._by_uuid[call.uuid] = hostile
    return call.uuid


# PostgreSQL's rejects are also tested where they are written (warehouse/test_postgres.py);
# this end-to-end variant on it runs in `make test-all` only.
@pytest.mark.parametrize(
    "backend", ["duckdb", pytest.param("postgres", marks=pytest.mark.extended)]
)
def test_bad_api_records_are_rejected_with_reasons_and_the_rest_is_exact(
    backend: str, simulator_factory, workspace: WorkspaceFactory
) -> None:
    # malformed cycles: impossible date, call_flow not a list, origination missing
    # fields, HTML with status 200, empty body; plus one 404 and three unknown fields.
    sim = simulator_factory(days=2, calls_per_day=30, malformed_count=5, missing_detail_count=1,
                            unknown_field_count=3, seed=12)  # fmt: skip
    hostile = _make_hostile(sim)
    ws = workspace(sim, backend=backend, BULUTFON_MAX_RETRIES="2")
    ws.sync()
    expected = sim.expected_tables()
    assert_tables_match(ws.warehouse, expected)
    rejects = read_table(ws.warehouse, "load_rejects")
    faults = sim.dataset.faults
    bad = {u for u, f in faults.items() if f != "unknown_field"}
    assert {r["uuid"] for r in rejects} == bad and len(rejects) == 6
    assert all(r["reason"] and r["reason"].strip() for r in rejects)
    by_stage = {r["uuid"]: r["stage"] for r in rejects}
    for uuid, fault in faults.items():
        if fault in ("missing", "malformed:html_200", "malformed:empty_200"):
            assert by_stage[uuid] == "detail", fault
        elif fault.startswith("malformed:"):
            assert by_stage[uuid] == "normalize", fault
    # Unknown new fields are kept in the raw payload and ignored by the normalizer.
    unknown = [u for u, f in faults.items() if f == "unknown_field"]
    raw = {r["uuid"]: r["payload"] for r in read_table(ws.warehouse, "raw_cdr_details")}
    assert len(unknown) == 3
    for uuid in unknown:
        stored = json.loads(raw[uuid])
        stored = stored.get("cdr", stored)
        assert set(UNKNOWN_TOP_FIELDS) <= set(stored), uuid
    # Hostile strings load verbatim (parameters, never SQL text), and nothing was dropped.
    row = next(r for r in read_table(ws.warehouse, "cdrs") if r["uuid"] == hostile)
    assert (row["caller"], row["callee"]) == (HOSTILE[0], HOSTILE[1])
    step = next(r for r in read_table(ws.warehouse, "call_flow_steps")
                if r["cdr_uuid"] == hostile and r["step_index"] == 0)  # fmt: skip
    assert step["callee"] == HOSTILE[2]
    # A second run changes nothing and refetches no rejected call.
    sim.reset_stats()
    ws.sync()
    assert sum(sim.stats()["detail_uuids"].values()) == 0
    assert_tables_match(ws.warehouse, expected)


@pytest.mark.slow
def test_a_listing_page_of_5000_items(simulator_factory, workspace: WorkspaceFactory) -> None:
    sim = simulator_factory(days=5, calls_per_day=1000, max_page_size=5000, seed=13)
    last = sim.dataset.config.end_date
    # One page holds all 5,000 calls; only the last day is inside the start date.
    ws = workspace(sim, BULUTFON_PAGE_SIZE="5000", BULUTFON_START_DATE=last.isoformat())
    ws.sync()
    assert sim.stats()["listing"] == {"200": 1}
    expected = {
        table: [r for r in rows if (r.get("call_date") or last) >= last]
        for table, rows in sim.expected_tables().items()
    }
    day_uuids = {r["uuid"] for r in expected["cdrs"]}
    for table in ("call_flow_steps", "originations"):
        expected[table] = [r for r in expected[table] if r["cdr_uuid"] in day_uuids]
    assert len(read_table(ws.db, "cdr_listing")) == len(day_uuids) > 900
    assert_tables_match(ws.db, expected)


# --- the user -----------------------------------------------------------------------------


def _one_clear_line(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode not in (0, None), result.stdout
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def _immutable(path: Path) -> bool:
    """``chattr +i``: even root cannot write the file (tests run as root, so mode bits
    would not stop anything). False where the filesystem does not support it."""
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
    return done.returncode == 0


def test_bad_user_input_gives_one_line_naming_the_fix(
    simulator_factory, workspace: WorkspaceFactory, tmp_path: Path
) -> None:
    # (The date formats, end-before-start, unreachable URL, bad master token and missing
    # folder cases are in test_pipeline.py; these add the rest, against a live simulator.)
    sim = simulator_factory(days=1, calls_per_day=5)
    ws = workspace(sim, auth="oauth")
    # A wrong OAuth client secret.
    ws.secrets.append("wrong-client-secret-123456")
    bad_secret = ws.run(extra={"BULUTFON_CLIENT_SECRET": "wrong-client-secret-123456"})
    _one_clear_line(bad_secret, "invalid_client", "bulutfon-pipeline auth")
    # The warehouse path is a folder.
    folder = tmp_path / "a-folder.duckdb"
    folder.mkdir()
    is_folder = ws.run(extra={"BULUTFON_DUCKDB_PATH": str(folder)})
    _one_clear_line(is_folder, "BULUTFON_DUCKDB_PATH")
    # A read-only warehouse file (immutable, so root too is refused).
    ws.sync()
    assert _immutable(ws.db), "chattr +i is not supported here"
    try:
        read_only = ws.run()
    finally:
        subprocess.run(["chattr", "-i", str(ws.db)], check=True)
    _one_clear_line(read_only, "read-only", "BULUTFON_DUCKDB_PATH")
    # A date range given the wrong way round, through the same one-line path.
    today = dt.date.today().isoformat()
    backwards = ws.run(["backfill", "--start", today, "--end", "2015-01-01", "--no-progress"])
    _one_clear_line(backwards, "before --start")


def test_a_bad_warehouse_url_gives_one_line_without_the_password(
    simulator_factory, workspace: WorkspaceFactory, postgres_server: PostgresServer,
    tmp_path: Path,
) -> None:  # fmt: skip
    sim = simulator_factory(days=1, calls_per_day=5)
    ws = workspace(sim)
    password = "warehouse-pw-0123456789"
    ws.secrets.append(password)  # the workspace's scan: in no output, no file
    nowhere = tmp_path / "no-server-here"
    nowhere.mkdir()
    sync, sql = ["sync", "--no-progress"], ["sql", "SELECT count(*) FROM cdrs"]
    cases = [
        # not a URL at all (a port that is not a number)
        (f"postgresql+psycopg://loader:{password}@db.internal:port/calls", [sync, sql],
         ["BULUTFON_WAREHOUSE_URL", "not a SQLAlchemy URL"]),
        # another database
        (f"mysql://loader:{password}@db.internal/calls", [sync],
         ["BULUTFON_WAREHOUSE_URL", "'mysql'"]),
        # PostgreSQL, but a driver without COPY
        (f"postgresql+psycopg2://loader:{password}@db.internal/calls", [sql],
         ["BULUTFON_WAREHOUSE_URL", "psycopg"]),
        # no server on that socket
        (f"postgresql+psycopg://loader:{password}@/calls?host={nowhere}&port=5432", [sync, sql],
         ["cannot open warehouse", "loader:***@", "No such file"]),
        # a running server, without that database
        (url_with_password(postgres_server, "no_such_db", password), [sync],
         ["cannot open warehouse", "postgres:***@", '"no_such_db" does not exist']),
    ]  # fmt: skip
    for url, commands, needles in cases:
        for args in commands:
            result = ws.run(args, extra={"BULUTFON_WAREHOUSE_URL": url})
            # Exit 2, a problem the user fixes, as for a DuckDB path that cannot be used.
            assert result.returncode == 2, (url, args, result.returncode, result.stderr)
            _one_clear_line(result, *needles)
            assert password not in result.stdout + result.stderr
    # Nothing was written: no DuckDB file either, and the API was never called.
    assert not ws.db.exists()
    assert sim.stats()["total"] == 0
