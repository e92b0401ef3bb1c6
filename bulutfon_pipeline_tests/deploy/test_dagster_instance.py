"""deploy/dagster.yaml: `dagster dev` keeps its runs and event log in a real PostgreSQL.

`dagster dev` (webserver, daemon, code server) starts on a ``DAGSTER_HOME`` holding the
shipped file as it is, with ``DAGSTER_POSTGRES_URL`` pointing at a fresh database of the
test server (over its Unix socket), against the simulator and a DuckDB warehouse in a
temporary folder. The refresh job is launched for one day through the webserver's GraphQL
API; the daemon dequeues it. Then the data: the run and its events in PostgreSQL's own
tables, nothing in SQLite, and the warehouse's calls of that day equal to the simulator's.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bulutfon_pipeline.simulator import SimulatorServer
from bulutfon_pipeline_tests.browser import stack
from bulutfon_pipeline_tests.browser.stack import (
    DAGSTER_DEV_GROUP,
    LOCATION,
    REPO_ROOT,
    DagsterDev,
    wait_for,
)
from bulutfon_pipeline_tests.helpers import expected_rows, read_table
from bulutfon_pipeline_tests.postgres import PostgresServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600), DAGSTER_DEV_GROUP]

INSTANCE_YAML = REPO_ROOT / "deploy" / "dagster.yaml"
JOB = "bulutfon_refresh"
MATERIALIZED = {"cdr_listing", "cdrs", "raw_cdr_details", "call_flow_steps", "originations"}
CHECKS = {
    "cdrs_uuid_unique",
    "cdrs_complete",
    "cdrs_reject_rate",
    "raw_cdr_details_uuid_unique",
    "call_flow_steps_key_unique",
    "call_flow_steps_has_parent",
    "originations_key_unique",
    "originations_has_parent",
}
STRICT_CHECKS = CHECKS - {"cdrs_complete", "cdrs_reject_rate"}
RUN_TIMEOUT_S = 240.0
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}

LAUNCH = """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename
  ... on LaunchRunSuccess { run { runId } }
  ... on RunConfigValidationInvalid { errors { message } }
  ... on Error { message } } }"""
RUN = """query($runId: ID!) { runOrError(runId: $runId) {
  __typename ... on Run { status } ... on Error { message } } }"""


def _launch(dagster: DagsterDev, day: dt.date) -> str:
    """Launch the refresh job for ``day`` (the tags a one-day ranged run carries)."""
    tags = {
        "dagster/asset_partition_range_start": day.isoformat(),
        "dagster/asset_partition_range_end": day.isoformat(),
    }
    params = {
        "selector": {
            "repositoryLocationName": LOCATION,
            "repositoryName": "__repository__",
            "jobName": JOB,
        },
        "runConfigData": {},
        "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
    }
    answer = dagster.graphql(LAUNCH, {"params": params})["launchRun"]
    assert answer["__typename"] == "LaunchRunSuccess", answer
    run_id: str = answer["run"]["runId"]
    return run_id


def _finished(dagster: DagsterDev, run_id: str) -> str:
    """Poll the run until it ends; its final status."""

    def probe() -> str | None:
        run = dagster.graphql(RUN, {"runId": run_id})["runOrError"]
        assert run["__typename"] == "Run", run
        return run["status"] if run["status"] in TERMINAL else None

    status: str = wait_for(f"run {run_id} to finish", probe, timeout=RUN_TIMEOUT_S, every=1.0)
    return status


def _query(server: PostgresServer, database: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(server.conninfo(database)) as con:
        return con.execute(sql, args or None).fetchall()


def test_dagster_dev_keeps_runs_and_events_in_postgres(
    postgres_server: PostgresServer,
    simulator_factory: Callable[..., SimulatorServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sim = simulator_factory(days=3, calls_per_day=20)
    config = sim.dataset.config
    first = config.end_date - dt.timedelta(days=config.days - 1)
    day = first + dt.timedelta(days=1)  # a whole day, neither the first nor today
    database = postgres_server.create_database()
    home = tmp_path / "dagster_home"
    warehouse = tmp_path / "warehouse.duckdb"
    (tmp_path / "data").mkdir()
    env = {
        **sim.env(auth="master"),
        "BULUTFON_DUCKDB_PATH": str(warehouse),
        "BULUTFON_DATA_DIR": str(tmp_path / "data"),
        "BULUTFON_START_DATE": first.isoformat(),
        "BULUTFON_MAX_RETRIES": "2",
        # What deploy/dagster.yaml reads: the psycopg2 driver, over the server's socket.
        "DAGSTER_POSTGRES_URL": postgres_server.url(database, driver="psycopg2"),
    }
    # DagsterDev writes its module's DAGSTER_YAML into DAGSTER_HOME: here, the shipped file.
    monkeypatch.setattr(stack, "DAGSTER_YAML", INSTANCE_YAML.read_text())
    try:
        dagster = DagsterDev(home, env, tmp_path / "dagster-dev.log")
        with dagster:
            try:
                run_id = _launch(dagster, day)
                status = _finished(dagster, run_id)
            except BaseException:
                print(f"dagster dev log (tail):\n{dagster.log_tail()}")
                raise
        assert status == "SUCCESS", f"run {run_id} ended {status}:\n{dagster.log_tail()}"
        assert (home / "dagster.yaml").read_text() == INSTANCE_YAML.read_text()

        # The run, its tags and its events are rows of Dagster's tables in PostgreSQL.
        runs = _query(postgres_server, database, "SELECT run_id, pipeline_name, status FROM runs")
        assert runs == [(run_id, JOB, "SUCCESS")]
        tag_rows = _query(
            postgres_server, database, "SELECT key, value FROM run_tags WHERE run_id = %s", run_id
        )
        tags = dict(tag_rows)
        assert tags["dagster/asset_partition_range_start"] == day.isoformat()
        assert tags["dagster/asset_partition_range_end"] == day.isoformat()
        events = _query(
            postgres_server,
            database,
            "SELECT dagster_event_type, asset_key FROM event_logs WHERE run_id = %s",
            run_id,
        )
        kinds = Counter(kind for kind, _ in events)
        # Stored under their old names: RUN_START is PIPELINE_START, and so on.
        assert kinds["PIPELINE_START"] == kinds["PIPELINE_SUCCESS"] == 1, kinds
        assert kinds["PIPELINE_FAILURE"] == kinds["STEP_FAILURE"] == 0, kinds
        materialized = Counter(
            key for kind, key in events if kind == "ASSET_MATERIALIZATION"
        )  # asset keys as Dagster stores them: JSON arrays
        assert materialized == Counter(f'["{asset}"]' for asset in MATERIALIZED), materialized
        # Queued by the webserver, launched by the daemon's run coordinator.
        assert kinds["PIPELINE_ENQUEUED"] == kinds["PIPELINE_STARTING"] == 1, kinds
        # The checks ran; those of keys and parents held (the others depend on the days
        # that this one-day run left unloaded).
        checks = dict(
            _query(
                postgres_server,
                database,
                "SELECT check_name, execution_status FROM asset_check_executions WHERE run_id = %s",
                run_id,
            )
        )
        assert set(checks) == CHECKS, checks
        assert {checks[name] for name in STRICT_CHECKS} == {"SUCCEEDED"}, checks
        assert set(checks.values()) <= {"SUCCEEDED", "FAILED"}, checks
        # The pool of the writing steps, with the file's default limit, lives here too.
        pools = _query(
            postgres_server, database, 'SELECT concurrency_key, "limit" FROM concurrency_limits'
        )
        assert pools == [("duckdb", 1)]
        # The daemon ran against the same database (it dequeued the run).
        heartbeats = _query(postgres_server, database, "SELECT daemon_type FROM daemon_heartbeats")
        daemons = {daemon for (daemon,) in heartbeats}
        assert "QUEUED_RUN_COORDINATOR" in daemons, daemons
        # Nothing went to SQLite: no runs.db, index.db or per-run event files.
        assert sorted(p.name for p in home.rglob("*.db")) == []

        # The warehouse holds that day's calls, equal to the simulator's truth.
        want = [r for r in expected_rows(sim.expected_tables(), "cdrs") if r["call_date"] == day]
        assert want, "the simulator has no calls on the chosen day"
        assert read_table(warehouse, "cdrs", list(want[0])) == want
    finally:
        postgres_server.drop_database(database)
