"""A 10-day UI backfill on a PostgreSQL warehouse: several runs load at once, exactly.

`dagster dev` runs with ``BULUTFON_WAREHOUSE_URL`` set to a fresh database of the test
server, on an instance kept in another database of it (the shipped deploy/dagster.yaml:
the run queue takes 3 runs at once). On PostgreSQL the writing assets have no concurrency
pool and the backfill policy batches up to 3 days per run. The listing is materialized
first, then the ten days of the detail assets are backfilled through the UI's GraphQL
mutation. The backfill's runs, their ranges and their start and end times come from
Dagster's run records: four runs, at least two of them loading at the same time, all
successful. Then the warehouse equals the simulator's truth, each call's detail was
requested once, and each day was materialized once.
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
from bulutfon_pipeline_tests.helpers import assert_tables_match, expected_rows, read_table
from bulutfon_pipeline_tests.postgres import PostgresServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600), DAGSTER_DEV_GROUP]

INSTANCE_YAML = REPO_ROOT / "deploy" / "dagster.yaml"
DAYS, CALLS_PER_DAY = 10, 12
#: The backfill policy's batch on PostgreSQL (assets._common.DAYS_PER_BACKFILL_RUN, read
#: by the code server with BULUTFON_WAREHOUSE_URL set; this process has it unset).
DAYS_PER_RUN = 3
MAX_RUNS_AT_ONCE = 3  # deploy/dagster.yaml's run queue
DETAIL_ASSETS = ["cdrs", "raw_cdr_details", "call_flow_steps", "originations"]
RUN_TIMEOUT_S = 240.0
BACKFILL_TIMEOUT_S = 420.0
TERMINAL_RUN = {"SUCCESS", "FAILURE", "CANCELED"}
TERMINAL_BACKFILL = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}

LAUNCH_RUN = """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename
  ... on LaunchRunSuccess { run { runId } }
  ... on Error { message } } }"""
RUN = """query($runId: ID!) { runOrError(runId: $runId) {
  __typename ... on Run { status } ... on Error { message } } }"""
LAUNCH_BACKFILL = """mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message } } }"""
BACKFILL = """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
  __typename ... on PartitionBackfill {
    status numPartitions
    runs { runId status startTime endTime tags { key value } } }
  ... on Error { message } } }"""


def _materialize_listing(dagster: DagsterDev) -> str:
    """Materialize ``cdr_listing`` the way its asset page's button does; its final status."""
    params = {
        "selector": {
            "repositoryLocationName": LOCATION,
            "repositoryName": "__repository__",
            "jobName": "__ASSET_JOB",
            "assetSelection": [{"path": ["cdr_listing"]}],
        },
        "runConfigData": {},
    }
    answer = dagster.graphql(LAUNCH_RUN, {"params": params})["launchRun"]
    assert answer["__typename"] == "LaunchRunSuccess", answer
    run_id = answer["run"]["runId"]

    def probe() -> str | None:
        run = dagster.graphql(RUN, {"runId": run_id})["runOrError"]
        assert run["__typename"] == "Run", run
        return run["status"] if run["status"] in TERMINAL_RUN else None

    status: str = wait_for("the listing run", probe, timeout=RUN_TIMEOUT_S, every=1.0)
    return status


def _backfill(dagster: DagsterDev, days: list[dt.date]) -> dict[str, Any]:
    """Backfill ``days`` of the detail assets (the UI's launch dialog sends this); the
    backfill once the daemon has finished it."""
    params = {
        "partitionNames": [day.isoformat() for day in days],
        "assetSelection": [{"path": [asset]} for asset in DETAIL_ASSETS],
        "title": f"{len(days)} days on PostgreSQL",
    }
    answer = dagster.graphql(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    assert answer["__typename"] == "LaunchBackfillSuccess", answer
    backfill_id = answer["backfillId"]

    def probe() -> dict[str, Any] | None:
        backfill = dagster.graphql(BACKFILL, {"id": backfill_id})["partitionBackfillOrError"]
        assert backfill["__typename"] == "PartitionBackfill", backfill
        return backfill if backfill["status"] in TERMINAL_BACKFILL else None

    done: dict[str, Any] = wait_for(
        "the daemon to finish the backfill", probe, timeout=BACKFILL_TIMEOUT_S, every=2.0
    )
    return done


def _most_at_once(intervals: list[tuple[float, float]]) -> int:
    """The most intervals that were open at the same instant."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    open_now = most = 0
    for _, step in edges:  # at a tie, an end (-1) sorts before a start (+1)
        open_now += step
        most = max(most, open_now)
    return most


def _query(server: PostgresServer, database: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(server.conninfo(database)) as con:
        return con.execute(sql).fetchall()


def test_ui_backfill_of_ten_days_loads_concurrently_and_exactly_on_postgres(
    postgres_server: PostgresServer,
    simulator_factory: Callable[..., SimulatorServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Latency and small detail batches: each run writes many short transactions.
    sim = simulator_factory(
        days=DAYS, calls_per_day=CALLS_PER_DAY, latency_ms=20, jitter_ms=5, seed=13
    )
    config = sim.dataset.config
    days = [config.end_date - dt.timedelta(days=n) for n in range(DAYS - 1, -1, -1)]
    warehouse_db = postgres_server.create_database()
    instance_db = postgres_server.create_database()
    warehouse_url = postgres_server.url(warehouse_db)
    duckdb_path = tmp_path / "warehouse.duckdb"  # must stay untouched
    (tmp_path / "data").mkdir()
    env = {
        **sim.env(auth="master"),
        "BULUTFON_WAREHOUSE_URL": warehouse_url,
        "BULUTFON_DUCKDB_PATH": str(duckdb_path),
        "BULUTFON_DATA_DIR": str(tmp_path / "data"),
        "BULUTFON_START_DATE": days[0].isoformat(),
        "BULUTFON_MAX_RETRIES": "2",
        "BULUTFON_MAX_CONCURRENCY": "2",
        "BULUTFON_DETAIL_BATCH_SIZE": "5",
        "DAGSTER_POSTGRES_URL": postgres_server.url(instance_db, driver="psycopg2"),
    }
    monkeypatch.setattr(stack, "DAGSTER_YAML", INSTANCE_YAML.read_text())
    try:
        dagster = DagsterDev(tmp_path / "dagster_home", env, tmp_path / "dagster-dev.log")
        with dagster:
            try:
                listing = _materialize_listing(dagster)
                assert listing == "SUCCESS", f"the listing run ended {listing}"
                listed = sim.stats()["listing"]
                backfill = _backfill(dagster, days)
            except BaseException:
                print(f"dagster dev log (tail):\n{dagster.log_tail()}")
                raise

        # The backfill: every day, in runs of up to DAYS_PER_RUN days, all successful.
        runs = backfill["runs"]
        assert backfill["status"] == "COMPLETED_SUCCESS", backfill
        assert backfill["numPartitions"] == DAYS
        assert [run["status"] for run in runs] == ["SUCCESS"] * len(runs), runs
        ranges = sorted(
            (tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"])
            for tags in ({t["key"]: t["value"] for t in run["tags"]} for run in runs)
        )
        batches = [days[i : i + DAYS_PER_RUN] for i in range(0, DAYS, DAYS_PER_RUN)]
        assert ranges == [(b[0].isoformat(), b[-1].isoformat()) for b in batches], ranges
        # They loaded at the same time: Dagster's run records (start and end of each run
        # worker) show runs open together, never more than the queue allows.
        intervals = [(run["startTime"], run["endTime"]) for run in runs]
        at_once = _most_at_once(intervals)
        first_start = min(start for start, _ in intervals)
        print(
            f"{len(runs)} runs, at most {at_once} at once; (start, end) in s from the first: "
            + ", ".join(f"({s - first_start:.1f}, {e - first_start:.1f})" for s, e in intervals)
        )
        assert 2 <= at_once <= MAX_RUNS_AT_ONCE, intervals

        # The warehouse: exactly the simulator's calls, steps and originations.
        expected = sim.expected_tables()
        assert_tables_match(warehouse_url, expected)
        # No call loaded twice: one detail request per call, one raw payload per call,
        # and the backfill's runs read no listing page (the listing run did).
        uuids = [row["uuid"] for row in expected_rows(expected, "cdrs")]
        assert sim.stats()["detail_uuids"] == dict.fromkeys(uuids, 1)
        raw = read_table(warehouse_url, "raw_cdr_details", ["uuid"])
        assert sorted(row["uuid"] for row in raw) == sorted(uuids)
        assert sim.stats()["listing"] == listed
        # Each day was materialized once, by one of those runs (the instance's event log).
        materialized = _query(
            postgres_server,
            instance_db,
            "SELECT partition, run_id FROM event_logs"
            " WHERE dagster_event_type = 'ASSET_MATERIALIZATION' AND asset_key = '[\"cdrs\"]'",
        )
        assert Counter(day for day, _ in materialized) == Counter(d.isoformat() for d in days)
        assert {run_id for _, run_id in materialized} == {run["runId"] for run in runs}
        # No pool held the steps back, and nothing wrote a DuckDB file.
        assert _query(postgres_server, instance_db, "SELECT * FROM concurrency_limits") == []
        assert not duckdb_path.exists()
    finally:
        postgres_server.drop_database(warehouse_db)
        postgres_server.drop_database(instance_db)
