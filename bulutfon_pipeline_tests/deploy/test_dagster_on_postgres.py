"""deploy/dagster.yaml and a PostgreSQL warehouse: Dagster keeps its runs and event log in
PostgreSQL, and a 10-day UI backfill loads several runs at once, exactly.

`dagster dev` (webserver, daemon, code server) runs with ``BULUTFON_WAREHOUSE_URL`` set
to a fresh database of the test server, on an instance kept in another database of it:
the shipped deploy/dagster.yaml as it is, with ``DAGSTER_POSTGRES_URL`` (psycopg2, over
the server's Unix socket); its run queue takes 3 runs at once. One `dagster dev` serves
both halves of the test, since each start costs tens of seconds of the suite's budget.
On PostgreSQL the writing assets have no concurrency pool and the backfill policy
batches up to 3 days per run. The listing is materialized first, then the ten days of
the detail assets are backfilled through the UI's GraphQL mutation. The backfill's runs,
their ranges and their start and end times come from Dagster's run records: four runs,
at least two of them loading at the same time, all successful. Then the warehouse equals
the simulator's truth, each call's detail was requested once, and each day was
materialized once. And the instance: the runs, their tags, events and check results are
rows of Dagster's tables in PostgreSQL, the daemon's run coordinator dequeued them, and
nothing went to SQLite.
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
#: The detail assets' checks; those of keys and parents must hold in every run.
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


def _materialize_listing(dagster: DagsterDev) -> tuple[str, str]:
    """Materialize ``cdr_listing`` the way its asset page's button does; the run's id and
    final status."""
    params = {
        "selector": {
            "repositoryLocationName": LOCATION,
            "repositoryName": "__repository__",
            "jobName": "__ASSET_JOB",
            "assetSelection": [{"path": ["cdr_listing"]}],
        },
        "runConfigData": {},
        # The `default` account's partition (the listing is partitioned by account).
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": "default"}]},
    }
    answer = dagster.graphql(LAUNCH_RUN, {"params": params})["launchRun"]
    assert answer["__typename"] == "LaunchRunSuccess", answer
    run_id = answer["run"]["runId"]

    def probe() -> str | None:
        run = dagster.graphql(RUN, {"runId": run_id})["runOrError"]
        assert run["__typename"] == "Run", run
        return run["status"] if run["status"] in TERMINAL_RUN else None

    status: str = wait_for("the listing run", probe, timeout=RUN_TIMEOUT_S, every=1.0)
    return run_id, status


def _backfill(dagster: DagsterDev, days: list[dt.date]) -> dict[str, Any]:
    """Backfill ``days`` of the detail assets (the UI's launch dialog sends this); the
    backfill once the daemon has finished it."""
    params = {
        "partitionNames": [f"default|{day.isoformat()}" for day in days],
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


def _assert_instance_in_postgres(
    server: PostgresServer, database: str, home: Path, runs: dict[str, dict[str, str]]
) -> None:
    """Dagster's own records of ``runs`` (run id -> tags) live in PostgreSQL, not SQLite."""
    stored = _query(server, database, "SELECT run_id, status FROM runs")
    assert sorted(stored) == sorted((run_id, "SUCCESS") for run_id in runs), stored
    tag_rows = _query(server, database, "SELECT run_id, key, value FROM run_tags")
    for run_id, tags in runs.items():
        stored_tags = {key: value for rid, key, value in tag_rows if rid == run_id}
        assert {k: stored_tags.get(k) for k in tags} == tags, (run_id, stored_tags)
    events = _query(server, database, "SELECT run_id, dagster_event_type FROM event_logs")
    for run_id in runs:
        kinds = Counter(kind for rid, kind in events if rid == run_id)
        # Stored under their old names: RUN_START is PIPELINE_START, and so on. Queued by
        # the webserver or the backfill daemon, launched by the daemon's run coordinator.
        assert kinds["PIPELINE_START"] == kinds["PIPELINE_SUCCESS"] == 1, kinds
        assert kinds["PIPELINE_ENQUEUED"] == kinds["PIPELINE_STARTING"] == 1, kinds
        assert kinds["PIPELINE_FAILURE"] == kinds["STEP_FAILURE"] == 0, kinds
    heartbeats = _query(server, database, "SELECT daemon_type FROM daemon_heartbeats")
    assert "QUEUED_RUN_COORDINATOR" in {daemon for (daemon,) in heartbeats}, heartbeats
    # Nothing went to SQLite: no runs.db, index.db or per-run event files.
    assert sorted(p.name for p in home.rglob("*.db")) == []


def test_dagster_on_postgres_and_a_ui_backfill_of_ten_days_loads_concurrently_and_exactly(
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
    # DagsterDev writes its module's DAGSTER_YAML into DAGSTER_HOME: here, the shipped file.
    monkeypatch.setattr(stack, "DAGSTER_YAML", INSTANCE_YAML.read_text())
    home = tmp_path / "dagster_home"
    try:
        dagster = DagsterDev(home, env, tmp_path / "dagster-dev.log")
        with dagster:
            try:
                dagster.add_account("default")
                listing_run, listing = _materialize_listing(dagster)
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
        assert ranges == [(f"default|{b[0]}", f"default|{b[-1]}") for b in batches], ranges
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
        assert Counter(day for day, _ in materialized) == Counter(f"default|{d}" for d in days)
        assert {run_id for _, run_id in materialized} == {run["runId"] for run in runs}
        # No pool held the steps back, and nothing wrote a DuckDB file.
        assert _query(postgres_server, instance_db, "SELECT * FROM concurrency_limits") == []
        assert not duckdb_path.exists()

        # Dagster's own instance: every run of the test, with its tags and events, in
        # PostgreSQL; the checks of the detail assets ran in the backfill's runs, and
        # those of keys and parents held.
        assert (home / "dagster.yaml").read_text() == INSTANCE_YAML.read_text()
        ranged = {
            run["runId"]: {
                key: value
                for key, value in ((t["key"], t["value"]) for t in run["tags"])
                if key.startswith("dagster/asset_partition_range_")
            }
            for run in runs
        }
        _assert_instance_in_postgres(postgres_server, instance_db, home, {
            listing_run: {}, **ranged})  # fmt: skip
        checks = _query(
            postgres_server,
            instance_db,
            "SELECT run_id, check_name, execution_status FROM asset_check_executions",
        )
        assert {run_id for run_id, _, _ in checks} == set(ranged), checks
        for run_id in ranged:
            assert {name for rid, name, _ in checks if rid == run_id} == CHECKS, checks
        # Evaluated once per run; those of keys and parents held in every run
        # (completeness may not, while other runs still load their days). Dagster 1.13
        # records no PLANNED execution for a ranged run of account x day partitions (it did,
        # one per day, for the daily partitions before).
        outcomes = Counter((name, status) for _, name, status in checks)
        for name in CHECKS:
            results = sum(n for (check, status), n in outcomes.items()
                          if check == name and status != "PLANNED")  # fmt: skip
            assert results == len(runs), outcomes
        for name in STRICT_CHECKS:
            assert outcomes[(name, "SUCCEEDED")] == len(runs), outcomes
    finally:
        postgres_server.drop_database(warehouse_db)
        postgres_server.drop_database(instance_db)
