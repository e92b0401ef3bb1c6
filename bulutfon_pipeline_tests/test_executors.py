"""BULUTFON_EXECUTOR: the multiprocess executor (steps forked from a forkserver) or
dagster-celery's, chosen by the environment alone; Celery only on a PostgreSQL
warehouse; the workers' deploy/celery.yaml and the code location's executor agree. The
run on two real workers is deploy/test_celery.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml

from bulutfon_pipeline.executors import (
    CELERY_BACKEND_ENV,
    CELERY_BROKER_ENV,
    CELERY_CONFIG,
    executor_from_env,
    multiprocess_executor,
)
from bulutfon_pipeline.settings import Settings, SettingsError, parse_executor

CELERY_YAML = Path(__file__).resolve().parents[1] / "deploy" / "celery.yaml"
PG_URL = "postgresql+psycopg://loader:hunter2@db.internal/calls"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "multiprocess"),  # unset: the multiprocess executor
        ({"BULUTFON_EXECUTOR": " "}, "multiprocess"),  # empty counts as unset
        ({"BULUTFON_EXECUTOR": "multiprocess"}, "multiprocess"),
        ({"BULUTFON_EXECUTOR": "Celery", "BULUTFON_WAREHOUSE_URL": PG_URL}, "celery"),
    ],
)
def test_the_executor_is_read_from_the_environment(env: dict[str, str], expected: str) -> None:
    assert parse_executor(env) == expected
    assert Settings.from_env(env).executor == expected


@pytest.mark.parametrize(
    ("env", "message"),
    [
        # A DuckDB file takes one writing process: Celery's workers are several.
        ({"BULUTFON_EXECUTOR": "celery"}, "BULUTFON_EXECUTOR=celery needs a PostgreSQL"),
        ({"BULUTFON_EXECUTOR": "dask"}, "BULUTFON_EXECUTOR='dask' is not one of"),
    ],
)
def test_a_bad_executor_is_refused_in_one_line(env: dict[str, str], message: str) -> None:
    for read in (parse_executor, Settings.from_env, executor_from_env):
        with pytest.raises(SettingsError, match=message) as caught:
            read(env)
        assert "\n" not in str(caught.value)


def test_celery_on_duckdb_stops_the_cli_and_the_code_location_in_one_line(
    tmp_path: Path,
) -> None:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("BULUTFON_")}
    env = {
        **inherited,
        "BULUTFON_EXECUTOR": "celery",
        "BULUTFON_ACCESS_TOKEN": "not-used",
        "BULUTFON_DATA_DIR": str(tmp_path),
        "BULUTFON_DUCKDB_PATH": str(tmp_path / "warehouse.duckdb"),
    }
    message = "BULUTFON_EXECUTOR=celery needs a PostgreSQL warehouse: set BULUTFON_WAREHOUSE_URL"
    sync = subprocess.run(
        [sys.executable, "-m", "bulutfon_pipeline.cli", "sync"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert sync.returncode == 2, sync.stderr
    lines = sync.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}"), sync.stderr
    # The code location (what `dagster dev`, the daemon and every worker load) refuses too.
    load = subprocess.run(
        [sys.executable, "-c", "import bulutfon_pipeline.definitions"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert load.returncode != 0
    last = load.stderr.strip().splitlines()[-1]
    assert last.startswith(f"bulutfon_pipeline.settings.SettingsError: {message}"), last
    assert not (tmp_path / "warehouse.duckdb").exists()


@dg.op
def _parent_pid() -> int:
    return os.getppid()


@dg.op
def _other_parent_pid() -> int:
    return os.getppid()


@dg.job(executor_def=executor_from_env({}))  # the code location's default
def _two_steps() -> None:
    _parent_pid()
    _other_parent_pid()


def test_the_default_forks_each_step_from_one_server_per_run(tmp_path: Path) -> None:
    # Spawned steps are children of the run's process; forked ones of the server. A run's
    # config is still accepted for how many steps run at once, and the retries.
    run_config = {"execution": {"config": {"max_concurrent": 1, "retries": {"disabled": {}}}}}
    on_postgres = executor_from_env({"BULUTFON_WAREHOUSE_URL": PG_URL})
    assert executor_from_env({}).name == on_postgres.name == multiprocess_executor().name
    with (
        dg.instance_for_test(temp_dir=str(tmp_path)) as instance,
        dg.execute_job(
            dg.reconstructable(_two_steps), instance=instance, run_config=run_config
        ) as result,
    ):
        assert result.success
        parents = {result.output_for_node(op) for op in ("_parent_pid", "_other_parent_pid")}
    assert len(parents) == 1
    assert parents != {os.getpid()}


def test_celery_reads_the_broker_and_backend_when_a_run_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    executor = executor_from_env({"BULUTFON_EXECUTOR": "celery", "BULUTFON_WAREHOUSE_URL": PG_URL})
    assert executor is not None and executor.name == "celery"
    # Only the variables' names are in the definition; their values are read later.
    monkeypatch.setenv(CELERY_BROKER_ENV, "redis://:s3cret@redis.internal:6379/0")
    monkeypatch.setenv(CELERY_BACKEND_ENV, "redis://:s3cret@redis.internal:6379/1")
    resolved = executor.config_schema.resolve_config({})
    assert resolved.success, resolved.errors
    assert resolved.value is not None
    config = resolved.value["config"]
    assert config["broker"] == "redis://:s3cret@redis.internal:6379/0"
    assert config["backend"] == "redis://:s3cret@redis.internal:6379/1"
    assert config["config_source"] == CELERY_CONFIG["config_source"]
    assert "s3cret" not in repr(CELERY_CONFIG)


def test_the_workers_config_file_matches_the_executor() -> None:
    # The run's side and the workers must agree on the broker, the backend and Celery's
    # settings; the file names the variables and holds no secret.
    shipped = yaml.safe_load(CELERY_YAML.read_text())
    assert shipped == {"execution": {"config": CELERY_CONFIG}}
    assert shipped["execution"]["config"]["broker"] == {"env": CELERY_BROKER_ENV}
    assert shipped["execution"]["config"]["backend"] == {"env": CELERY_BACKEND_ENV}
