"""The analysts' file: a reader never blocks a sync, `sql` works during one, a crash while
publishing leaves the previous copy, and a sync waits for another sync's lock in one line.
On PostgreSQL analysts read the warehouse itself: an open snapshot never blocks a sync,
and `sql` works during one."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from bulutfon_pipeline.faults import CRASH_ENV
from bulutfon_pipeline_tests.helpers import (
    Database,
    assert_tables_match,
    read_table,
    table_snapshot,
)
from bulutfon_pipeline_tests.reliability.conftest import CLI_TIMEOUT_S, WorkspaceFactory

pytestmark = pytest.mark.reliability

#: A reader in its own process, as a notebook holds one: it prints the cdrs uuids it
#: sees, waits for a line on stdin, then prints them again on the same connection.
READER = """
import json, sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
def uuids():
    return sorted(r[0] for r in con.execute("SELECT uuid FROM cdrs").fetchall())
print(json.dumps(uuids()), flush=True)
sys.stdin.readline()
print(json.dumps(uuids()), flush=True)
"""


def _analytics(ws) -> Path:
    return ws.data / "warehouse.analytics.duckdb"


def _uuids(db: Database) -> list[str]:
    return sorted(row["uuid"] for row in read_table(db, "cdrs"))


def _wait_for(condition, what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_reader_holding_the_analysts_file_does_not_block_a_sync(
    simulator_factory, workspace: WorkspaceFactory
) -> None:
    sim = simulator_factory(days=2, calls_per_day=25, seed=5)
    ws = workspace(sim, BULUTFON_MAX_CONCURRENCY="2")
    ws.sync()
    before = _uuids(ws.db)
    assert len(before) == 50
    assert table_snapshot(_analytics(ws)) == table_snapshot(ws.db)

    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(_analytics(ws))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert reader.stdout is not None and reader.stdin is not None
        # The reader holds its read-only connection from here on.
        assert json.loads(reader.stdout.readline()) == before
        added = sim.add_calls(5, where="head")
        ws.sync()  # finishes although the reader still holds the analysts' file
        reader.stdin.write("\n")
        reader.stdin.flush()
        # The reader's connection still sees its old, consistent copy.
        assert json.loads(reader.stdout.readline()) == before
        assert reader.wait(timeout=CLI_TIMEOUT_S) == 0
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
    # A new connection sees the new rows, equal to the warehouse's and the simulator's.
    after = _uuids(_analytics(ws))
    assert set(added) <= set(after) and len(after) == 55
    assert after == _uuids(ws.db)
    assert table_snapshot(_analytics(ws)) == table_snapshot(ws.db)
    assert_tables_match(_analytics(ws), sim.expected_tables())


# On PostgreSQL `sql` reads the server itself, and the reverse (a sync never waits for an
# analyst's open snapshot) is tested below: that variant runs in `make test-all` only.
@pytest.mark.parametrize(
    "backend", ["duckdb", pytest.param("postgres", marks=pytest.mark.extended)]
)
def test_sql_works_while_a_sync_runs(
    simulator_factory, workspace: WorkspaceFactory, backend: str
) -> None:
    sim = simulator_factory(days=2, calls_per_day=25, latency_ms=30, seed=6)
    # One detail batch for the 20 new calls: it commits only once all 20 are fetched.
    ws = workspace(sim, backend=backend, BULUTFON_MAX_CONCURRENCY="2",
                   BULUTFON_DETAIL_BATCH_SIZE="100")  # fmt: skip
    ws.sync()
    # What `sql` reads: the analysts' copy of the last load (DuckDB) or the server (PostgreSQL).
    readable = ws.warehouse if ws.is_postgres else _analytics(ws)
    before = _uuids(readable)
    sim.add_calls(20, where="head")
    sim.reset_stats()
    running = ws.start()
    try:
        _wait_for(lambda: sim.stats()["total"] > 0 or running.poll() is not None, "the sync")
        assert running.poll() is None, "the sync ended before the query started"
        # Slow the API right down so the sync is still loading while `sql` runs.
        sim.update_config(latency_ms=2000)
        query = ws.run(["sql", "SELECT uuid FROM cdrs ORDER BY uuid", "--format", "csv"])
        details_fetched = sum(sim.stats()["detail"].values())
        still_running = running.poll() is None
        sim.update_config(latency_ms=30)
    finally:
        code, _, stderr = ws.finish(running)
    assert query.returncode == 0, query.stderr
    assert still_running and details_fetched < 20, details_fetched
    # The new batch was not committed (nor published) yet: the query saw the last load.
    assert query.stdout.splitlines() == ["uuid", *before]
    assert code == 0, stderr
    assert_tables_match(readable, sim.expected_tables())


def test_sigkill_while_publishing_keeps_the_previous_analysts_file(
    simulator_factory, workspace: WorkspaceFactory
) -> None:
    sim = simulator_factory(days=2, calls_per_day=25, seed=7)
    ws = workspace(sim, BULUTFON_MAX_CONCURRENCY="2")
    ws.sync()
    previous = table_snapshot(_analytics(ws))
    sim.add_calls(6, where="head")
    crashed = ws.run(extra={CRASH_ENV: "publish_before_replace"})
    assert crashed.returncode == -signal.SIGKILL, (crashed.returncode, crashed.stderr)
    # The load committed; the analysts' file is the previous copy, whole and readable.
    assert len(_uuids(ws.db)) == 56
    assert table_snapshot(_analytics(ws)) == previous
    assert len(previous["cdrs"]) == 50
    ws.sync()
    assert not _analytics(ws).with_name(_analytics(ws).name + ".tmp").exists()
    assert table_snapshot(_analytics(ws)) == table_snapshot(ws.db)
    assert_tables_match(_analytics(ws), sim.expected_tables())


def test_a_sync_waits_for_another_syncs_lock_in_one_line(
    simulator_factory, workspace: WorkspaceFactory
) -> None:
    import os

    from bulutfon_pipeline.runner import sync_lock

    sim = simulator_factory(days=2, calls_per_day=10, seed=8)
    ws = workspace(sim)
    with sync_lock(ws.db):
        waiting = ws.start()
        assert waiting.stderr is not None
        # The line comes while the lock is still held (read before it is released).
        line = waiting.stderr.readline()
    assert line.startswith(f"waiting for another sync (pid {os.getpid()})"), line
    assert "BULUTFON_LOCK_TIMEOUT_S" in line
    code, _, stderr = ws.finish(waiting)
    assert code == 0, stderr
    assert "Traceback" not in stderr and "waiting" not in stderr
    assert_tables_match(ws.db, sim.expected_tables())


def test_a_sync_gives_up_on_the_lock_after_the_timeout_with_exit_3(
    workspace: WorkspaceFactory,
) -> None:
    import os

    from bulutfon_pipeline.runner import sync_lock

    ws = workspace(None, BULUTFON_ACCESS_TOKEN="x" * 20, BULUTFON_LOCK_TIMEOUT_S="0.5")
    with sync_lock(ws.db):
        result = ws.run()
    assert result.returncode == 3, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"waiting for another sync (pid {os.getpid()})")
    assert f"another sync (pid {os.getpid()}) is loading" in lines[1]
    assert "gave up after waiting 0.5 s" in lines[1]
    assert "Traceback" not in result.stderr
    assert not ws.db.exists()  # nothing was written


#: Another writer of the warehouse file itself (a DuckDB shell, a notebook opened
#: read-write): it holds DuckDB's own file lock until it reads a line on stdin.
WRITER = """
import sys, duckdb
con = duckdb.connect(sys.argv[1])
print("holding", flush=True)
sys.stdin.readline()
con.close()
"""


def test_a_sync_blocked_by_duckdbs_own_file_lock_says_who_and_exits_3(
    simulator_factory, workspace: WorkspaceFactory
) -> None:
    sim = simulator_factory(days=2, calls_per_day=10, seed=9)
    ws = workspace(sim, BULUTFON_LOCK_TIMEOUT_S="3")
    ws.sync()
    before = table_snapshot(ws.db)
    holder = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(ws.db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        result = ws.run()
    finally:
        holder.communicate("\n", timeout=CLI_TIMEOUT_S)
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    waiting = [line for line in result.stderr.splitlines() if line.startswith("waiting for")]
    assert len(waiting) == 1, result.stderr
    assert f"pid {holder.pid}" in waiting[0], waiting[0]
    assert "BULUTFON_LOCK_TIMEOUT_S" in waiting[0]
    last = result.stderr.strip().splitlines()[-1]
    assert f"pid {holder.pid}" in last and "gave up after 3s" in last, last
    # Nothing changed, and the next sync (the lock free again) loads as usual.
    assert table_snapshot(ws.db) == before
    sim.add_calls(4, where="head")
    ws.sync()
    assert_tables_match(ws.db, sim.expected_tables())


# --- PostgreSQL: analysts read the warehouse itself --------------------------------------


def _libpq_url(ws) -> str:
    """The workspace's URL as libpq (and so a BI tool or psql) takes it."""
    assert ws.warehouse_url is not None
    return ws.warehouse_url.replace("postgresql+psycopg://", "postgresql://", 1)


def test_a_sync_does_not_wait_for_an_analysts_open_snapshot_on_postgres(
    simulator_factory, workspace: WorkspaceFactory
) -> None:
    sim = simulator_factory(days=2, calls_per_day=25, seed=5)
    # A sync that had to wait for a lock would give up after 2 s and fail, not hang.
    ws = workspace(sim, backend="postgres", BULUTFON_MAX_CONCURRENCY="2",
                   BULUTFON_LOCK_TIMEOUT_S="2")  # fmt: skip
    ws.sync()
    before = _uuids(ws.warehouse)
    assert len(before) == 50
    summary_sql = "SELECT * FROM daily_call_summary ORDER BY 1, 2"
    with psycopg.connect(_libpq_url(ws)) as analyst:
        # A notebook's long transaction: one snapshot of the tables and a view over them.
        analyst.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        seen = sorted(r[0] for r in analyst.execute("SELECT uuid FROM cdrs").fetchall())
        summary = analyst.execute(summary_sql).fetchall()
        assert seen == before and summary
        added = sim.add_calls(5, where="head")
        ws.sync()  # finishes while the analyst's transaction still holds its locks
        # The analyst still sees its snapshot, whole.
        again = sorted(r[0] for r in analyst.execute("SELECT uuid FROM cdrs").fetchall())
        assert again == before
        assert analyst.execute(summary_sql).fetchall() == summary
        analyst.execute("COMMIT")
        # A new transaction sees the new rows.
        after = sorted(r[0] for r in analyst.execute("SELECT uuid FROM cdrs").fetchall())
    assert set(added) <= set(after) and len(after) == 55
    assert after == _uuids(ws.warehouse)
    assert_tables_match(ws.warehouse, sim.expected_tables())
