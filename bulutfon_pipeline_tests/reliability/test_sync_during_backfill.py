"""A `sync` while Dagster's daemon runs a 10-partition backfill on the same warehouse."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest

from bulutfon_pipeline_tests.browser.stack import DAGSTER_DEV_GROUP, DagsterDev, wait_for
from bulutfon_pipeline_tests.helpers import assert_tables_match
from bulutfon_pipeline_tests.reliability.conftest import WorkspaceFactory

# 600 s like the browser test: on parallel workers it may first wait for that test's stack.
pytestmark = [
    pytest.mark.reliability,
    pytest.mark.slow,
    pytest.mark.timeout(600),
    DAGSTER_DEV_GROUP,
]

LAUNCH = """mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
  } }"""
BACKFILL = """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
  __typename ... on PartitionBackfill {
    status runs { runId status startTime endTime } } } }"""
RUN_LOGS = """query($id: ID!) { logsForRun(runId: $id) { __typename
  ... on EventConnection { events { __typename ... on MessageEvent { message } } } } }"""
DETAIL_ASSETS = ["cdrs", "raw_cdr_details", "call_flow_steps", "originations"]


def _backfill(dagster: DagsterDev, backfill_id: str) -> dict[str, Any]:
    return dagster.graphql(BACKFILL, {"id": backfill_id})["partitionBackfillOrError"]


def test_sync_while_a_ui_backfill_of_ten_partitions_runs(
    simulator_factory, workspace: WorkspaceFactory, tmp_path
) -> None:
    # Enough latency that both writers are busy at the same time.
    sim = simulator_factory(days=12, calls_per_day=20, latency_ms=40, jitter_ms=10, seed=21)
    config = sim.dataset.config
    first_day = config.end_date - dt.timedelta(days=config.days - 1)
    ws = workspace(
        sim,
        BULUTFON_START_DATE=first_day.isoformat(),
        BULUTFON_MAX_CONCURRENCY="3",
        BULUTFON_DETAIL_BATCH_SIZE="20",
    )
    days = [(first_day + dt.timedelta(days=i)).isoformat() for i in range(10)]
    with DagsterDev(tmp_path / "dagster_dev_home", ws.env, ws.root / "dagster-dev.log") as dagster:
        # The backfill takes the `default` account's listing and the details of its first
        # ten days, the way the UI's "Materialize selected" on the bulutfon group launches
        # assets of different partitions (the listing by account, the details by account
        # x day): a partition range per asset.
        dagster.add_account("default")
        ranges = {"cdr_listing": ("default", "default")}
        ranges |= dict.fromkeys(DETAIL_ASSETS, (f"default|{days[0]}", f"default|{days[-1]}"))
        launched = dagster.graphql(
            LAUNCH,
            {
                "params": {
                    "partitionsByAssets": [
                        {
                            "assetKey": {"path": [asset]},
                            "partitions": {"ranges": [{"start": start, "end": end}]},
                        }
                        for asset, (start, end) in ranges.items()
                    ],
                    "title": "reliability: 10 days",
                }
            },
        )["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        backfill_id = launched["backfillId"]
        wait_for(
            "the backfill's first run to start",
            lambda: _backfill(dagster, backfill_id)["runs"] or None,
            timeout=180,
        )
        sync_started = time.time()
        proc = ws.start()
        done = wait_for(
            "the backfill to finish",
            lambda: (
                b
                if (b := _backfill(dagster, backfill_id))["status"].startswith("COMPLETED")
                or b["status"] in {"FAILED", "CANCELED"}
                else None
            ),
            timeout=300,
        )
        code, _, stderr = ws.finish(proc)
        sync_ended = time.time()
        logs = [
            event.get("message") or ""
            for run in done["runs"]
            for event in dagster.graphql(RUN_LOGS, {"id": run["runId"]})["logsForRun"]["events"]
        ]
    assert done["status"] == "COMPLETED_SUCCESS", done
    assert all(run["status"] == "SUCCESS" for run in done["runs"]), done["runs"]
    # The two really overlapped: some backfill run was still going when the sync began.
    assert any((run["endTime"] or sync_ended) > sync_started for run in done["runs"])
    assert code == 0, stderr
    # It may have waited its turn on the file (and said so in one line), never failed on it.
    assert "Traceback" not in stderr and "could not set lock" not in stderr.lower()
    assert [line for line in stderr.splitlines() if "lock" in line.lower()] in (
        [],
        [line for line in stderr.splitlines() if line.startswith("waiting for ")],
    )
    assert not [m for m in logs if "Could not set lock" in m or "Traceback" in m]
    assert_tables_match(ws.db, sim.expected_tables())
