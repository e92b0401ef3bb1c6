"""The celery executor: a run's steps spread over two `dagster-celery` workers, exactly.

Real servers on loopback: PostgreSQL (the warehouse and, in another database, Dagster's
instance through the shipped deploy/dagster.yaml, its tables made once before the
workers start), Debian's ``redis-server`` (the broker and the result backend) on a
free port, two ``dagster-celery worker start`` processes with the shipped
deploy/celery.yaml (one pool process each, named w1 and w2) and the simulator. The code
location runs with ``BULUTFON_EXECUTOR=celery``.

The run: three PBX accounts (an accounts file, each its own token and dataset), the
listing of each as a run of its own (it is partitioned by account, the loads by account x
day, and Dagster keeps the two out of one ranged run), then the three accounts' three
days as one ranged run of 9 account x day partitions, of the detail assets, the
recordings and the report. Its steps are ``cdr_details``, then ``call_recordings`` and
``call_report`` *at the same time* (both need only the details).
That parallel pair is what makes the spread certain rather than likely: each worker runs
one step at a time and, acknowledging late, reserves none ahead (deploy/celery.yaml), so
while one worker runs one of the pair the other must take the other. Separate runs per
day would also give parallel steps, but then which worker takes which depends on when
each run's process happens to submit its step.

Who ran each step, from two independent records: the engine event dagster-celery writes
from inside the worker ("Executing steps ... in celery worker", with the worker's Celery
name), and the process id of each step's ``STEP_START`` event, which must be a process of
that worker's own process group (and not the run's process). Then the warehouse equals
the simulator's truth, each detail and each recording was fetched once, and no process
of the stack outlives the test.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from bulutfon_pipeline.simulator import SimulatorServer
from bulutfon_pipeline_tests.browser.stack import REPO_ROOT
from bulutfon_pipeline_tests.deploy.celery_stack import (
    CeleryWorker,
    RedisServer,
    stop_workers,
    wait_until_ready,
)
from bulutfon_pipeline_tests.helpers import assert_tables_match, environment, expected_rows
from bulutfon_pipeline_tests.postgres import PostgresServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

INSTANCE_YAML = REPO_ROOT / "deploy" / "dagster.yaml"
CELERY_YAML = REPO_ROOT / "deploy" / "celery.yaml"
DAYS, CALLS_PER_DAY = 3, 6
ACCOUNTS = ("izmir", "ankara", "bursa")
ASSETS = [
    "cdr_listing",
    "cdrs",
    "raw_cdr_details",
    "call_flow_steps",
    "originations",
    "call_recordings",
    "call_report",
]
#: The ranged run's steps (the four detail assets are one multi-asset step; the listing
#: ran before, as a run of its own).
STEPS = {"cdr_details", "call_recordings", "call_report"}
#: The steps that become ready together, once the details are in.
PARALLEL = ("call_recordings", "call_report")
RUN_TIMEOUT_S = 180.0
CELERY_WORKER_KEY = "Celery worker"  # dagster-celery's metadata key on its engine event


@pytest.fixture
def databases(postgres_server: PostgresServer) -> Iterator[tuple[str, str]]:
    """A fresh warehouse database and a fresh database for Dagster's instance."""
    warehouse, instance = postgres_server.create_database(), postgres_server.create_database()
    yield warehouse, instance
    postgres_server.drop_database(warehouse)
    postgres_server.drop_database(instance)


def _launch(env: dict[str, str], first: dt.date, last: dt.date) -> dict[str, Any]:
    """The run, from a process of its own (the code location reads its environment when
    it loads); its id, outcome and process id."""
    command = [
        sys.executable, "-m", "bulutfon_pipeline_tests.deploy.celery_stack",
        "--assets", ",".join(ASSETS), "--first", first.isoformat(), "--last", last.isoformat(),
        "--accounts", ",".join(ACCOUNTS),
    ]  # fmt: skip
    done = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )
    assert done.returncode == 0, f"the run's process failed:\n{done.stderr[-4000:]}"
    outcome: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return outcome


def _who_ran(instance: dg.DagsterInstance, run_id: str) -> tuple[Counter[str], dict[str, str]]:
    """Per step: how many times a Celery worker began it, and that worker's Celery name,
    from the engine events dagster-celery writes inside the worker."""
    began: Counter[str] = Counter()
    worker: dict[str, str] = {}
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        event = entry.dagster_event
        assert event is not None
        metadata = event.engine_event_data.metadata
        if CELERY_WORKER_KEY in metadata:
            step = str(entry.step_key)
            began[step] += 1
            worker[step] = str(metadata[CELERY_WORKER_KEY].value)
    return began, worker


def _step_pids(instance: dg.DagsterInstance, run_id: str) -> dict[str, int]:
    """The process id each step started in (its ``STEP_START`` event's)."""
    pids = {}
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START):
        assert entry.dagster_event is not None and entry.step_key is not None
        pids[entry.step_key] = entry.dagster_event.pid
    return pids


def test_a_ranged_run_spreads_its_steps_over_two_celery_workers_and_loads_exactly(
    postgres_server: PostgresServer,
    databases: tuple[str, str],
    simulator_factory: Callable[..., SimulatorServer],
    tmp_path: Path,
) -> None:
    sim = simulator_factory(
        days=DAYS,
        calls_per_day=CALLS_PER_DAY,
        latency_ms=20,
        jitter_ms=5,
        seed=17,
        accounts=list(ACCOUNTS),
    )
    end = sim.dataset.config.end_date
    first, last = end - dt.timedelta(days=DAYS - 1), end
    warehouse_db, instance_db = databases
    warehouse_url = postgres_server.url(warehouse_db)
    home = tmp_path / "dagster_home"
    home.mkdir(mode=0o700)
    shutil.copy(INSTANCE_YAML, home / "dagster.yaml")
    data, duckdb_path = tmp_path / "data", tmp_path / "warehouse.duckdb"  # the latter unused
    data.mkdir()
    instance_env = {"DAGSTER_POSTGRES_URL": postgres_server.url(instance_db, driver="psycopg2")}
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("BULUTFON_", "DAGSTER_"))}
    accounts_file = tmp_path / "accounts.toml"
    accounts_file.write_text(
        "".join(
            f'[accounts.{name}]\naccess_token_env = "TOKEN_{name.upper()}"\n' for name in ACCOUNTS
        )
    )
    shared = {k: v for k, v in sim.env(auth="master").items() if k != "BULUTFON_ACCESS_TOKEN"}
    env = {
        **inherited,
        **shared,
        **{
            f"TOKEN_{name.upper()}": sim.env(account=name)["BULUTFON_ACCESS_TOKEN"]
            for name in ACCOUNTS
        },
        "BULUTFON_ACCOUNTS_FILE": str(accounts_file),
        **instance_env,
        "DAGSTER_HOME": str(home),
        "BULUTFON_EXECUTOR": "celery",
        "BULUTFON_WAREHOUSE_URL": warehouse_url,
        "BULUTFON_DUCKDB_PATH": str(duckdb_path),
        "BULUTFON_DATA_DIR": str(data),
        "BULUTFON_START_DATE": first.isoformat(),
        "BULUTFON_MAX_RETRIES": "2",
        "BULUTFON_DETAIL_BATCH_SIZE": "10",
    }

    # Dagster creates its tables on first use; two workers starting at once on an empty
    # database both try, and one fails ("type runs already exists"). So the tables are
    # created once first, by opening the instance here: what `dagster instance migrate`
    # (docs/deploy.md) does on an empty database, without a process start (12 s of this
    # test on a loaded machine).
    with environment(instance_env), dg.DagsterInstance.from_config(str(home)):
        pass
    with RedisServer(tmp_path / "redis") as redis:
        env["BULUTFON_CELERY_BROKER_URL"] = redis.url(0)
        env["BULUTFON_CELERY_BACKEND_URL"] = redis.url(1)
        workers = [
            CeleryWorker(name, CELERY_YAML, env, tmp_path / f"{name}.log") for name in ("w1", "w2")
        ]
        try:
            for worker in workers:
                worker.start()
            wait_until_ready(redis.url(0), workers)
            outcome = _launch(env, first, last)
            # While the workers are up: the processes of each (its CLI, `celery`, its pool).
            processes = {worker.nodename: worker.pids() for worker in workers}
        except BaseException:
            for worker in workers:
                print(f"--- {worker.name} log (tail):\n{worker.log_tail()}")
            raise
        finally:
            stop_workers(workers)
        # Nothing of either worker outlives it: every process of its group has exited.
        assert [worker.pids() for worker in workers] == [set(), set()]

    with environment(instance_env), dg.DagsterInstance.from_config(str(home)) as instance:
        run_id = outcome["run_id"]
        run = instance.get_run_by_id(run_id)
        assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS, run
        assert outcome["success"] is True
        assert outcome["listing_success"] is True
        # Every step ran once, each in a Celery worker.
        began, worker_of = _who_ran(instance, run_id)
        assert began == Counter(dict.fromkeys(STEPS, 1)), began
        print("steps by worker:", dict(sorted(worker_of.items())))
        # Both workers ran steps; the two steps that were ready together ran in both.
        assert set(worker_of.values()) == {worker.nodename for worker in workers}, worker_of
        assert worker_of[PARALLEL[0]] != worker_of[PARALLEL[1]], worker_of
        # The second record agrees: each step started in a process of the worker Celery
        # named, never in the run's own process.
        pids = _step_pids(instance, run_id)
        assert set(pids) == STEPS, pids
        for step, pid in pids.items():
            assert pid in processes[worker_of[step]], (step, pid, processes)
            assert pid != outcome["pid"], (step, pid)

    # The warehouse: exactly each account's own calls, steps and originations; one detail
    # request per call, one recording request per recorded call, each with its account's
    # token; the report was written; no DuckDB file appeared.
    for name in ACCOUNTS:
        expected = sim.expected_tables(name)
        assert_tables_match(warehouse_url, expected, account=name)
        cdrs = expected_rows(expected, "cdrs")
        stats = sim.stats(account=name)
        assert stats["detail_uuids"] == dict.fromkeys((row["uuid"] for row in cdrs), 1)
        recorded = [row["uuid"] for row in cdrs if row["has_recording"]]
        assert stats.get("recording_uuids", {}) == dict.fromkeys(recorded, 1)
    assert (data / "reports" / "call_report_latest.html").is_file()
    assert not duckdb_path.exists()
