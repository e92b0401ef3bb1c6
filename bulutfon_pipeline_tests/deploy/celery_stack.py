"""Redis, `dagster-celery` workers and a run on them, for the Celery test.

:class:`RedisServer` runs Debian's ``redis-server`` on 127.0.0.1 and a free port, with no
persistence. :class:`CeleryWorker` runs ``dagster-celery worker start`` (which starts
``celery worker`` as its child, whose pool forks again) in a process group of its own, so
that :meth:`CeleryWorker.stop` ends every process of it. Run as a module, this file
launches one run of the project's assets through Dagster's Python API on the instance of
``DAGSTER_HOME``, as ``dagster asset materialize`` does, and prints its id and outcome as
JSON: a run with the celery executor must be started from a reconstructable job, so that
the workers can load its code.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from bulutfon_pipeline_tests.browser.stack import REPO_ROOT, free_port, wait_for

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
#: The module whose ``defs`` the run and the workers load.
LOCATION = "bulutfon_pipeline.definitions"


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


def _end_group(process: subprocess.Popen[bytes], what: str) -> None:
    """SIGTERM the process group of ``process`` (started with ``start_new_session``), wait
    for every member to exit, SIGKILL what is left after ``STOP_TIMEOUT_S``."""
    pgid = process.pid
    _signal_group(process, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
        wait_for(
            f"every process of {what} to exit",
            lambda: True if not _group_alive(pgid) else None,
            timeout=STOP_TIMEOUT_S,
            every=0.2,
        )
    except (subprocess.TimeoutExpired, TimeoutError):
        _signal_group(process, signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT_S)


class RedisServer:
    """``redis-server`` on 127.0.0.1:<free port>, no snapshots, no append-only file.

    A missing binary is an error, never a skip: ``.ci/run`` installs ``redis-server``.
    """

    def __init__(self, folder: Path) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(binary).is_file():
            raise RuntimeError(
                "redis-server is not installed; install Debian's `redis-server` package "
                "(.ci/run does)"
            )
        self.binary = binary
        self.folder = folder
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        """A Redis URL of database ``db`` (the broker: 0, the results: 1)."""
        return f"redis://127.0.0.1:{self.port}/{db}"

    def _ping(self) -> bool | None:
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_timeout=1).ping()) or None
        except redis.ConnectionError:
            assert self._process is not None and self._process.poll() is None, (
                f"redis-server exited: {(self.folder / 'redis.log').read_text()[-2000:]}"
            )
            return None

    def __enter__(self) -> RedisServer:
        self.folder.mkdir(parents=True, exist_ok=True)
        command = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(self.folder),
            "--logfile", str(self.folder / "redis.log"),
        ]  # fmt: skip
        self._process = subprocess.Popen(command, start_new_session=True)
        try:
            wait_for("redis-server to answer PING", self._ping, timeout=START_TIMEOUT_S, every=0.1)
        except BaseException:
            _end_group(self._process, "redis-server")
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._process is not None:
            _end_group(self._process, "redis-server")


class CeleryWorker:
    """``dagster-celery worker start --name NAME`` with one pool process (``--concurrency
    1``): a worker runs one step at a time, so two steps at once need two workers."""

    def __init__(self, name: str, config_yaml: Path, env: Mapping[str, str], log: Path) -> None:
        self.name = name
        #: Celery's name of the worker (dagster-celery starts it as ``NAME@%h``).
        self.nodename = f"{name}@{socket.gethostname()}"
        self.config_yaml = config_yaml
        self.env = dict(env)
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> CeleryWorker:
        bin_dir = Path(sys.executable).parent
        command = [
            str(bin_dir / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
            "-y", str(self.config_yaml), "--name", self.name, "--loglevel", "INFO",
            # Imported once, before the pool forks: a step does not pay for them (the report
            # imports matplotlib).
            "-i", LOCATION, "-i", "bulutfon_pipeline.report", "--", "--concurrency=1",
        ]  # fmt: skip
        # `dagster-celery worker start` runs `celery` from PATH: the venv's bin comes first.
        env = {**self.env, "PATH": f"{bin_dir}{os.pathsep}{self.env.get('PATH', '')}"}
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                command, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        return self

    @property
    def pgid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def pids(self) -> set[int]:
        """Every live process of this worker: its group (the CLI, ``celery``, the pool)."""
        found = set()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, ValueError):
                    if os.getpgid(int(entry.name)) == self.pgid:
                        found.add(int(entry.name))
        return found

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """Stop the worker (Celery's warm shutdown) and every process of its group."""
        if self.process is not None:
            _end_group(self.process, f"worker {self.name}")

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


def stop_workers(workers: Sequence[CeleryWorker]) -> None:
    """Stop ``workers``: all are told at once, so their shutdowns overlap."""
    for worker in workers:
        if worker.process is not None:
            _signal_group(worker.process, signal.SIGTERM)
    for worker in workers:
        worker.stop()


def wait_until_ready(broker_url: str, workers: Sequence[CeleryWorker]) -> None:
    """Wait until every worker answers Celery's broadcast ``ping`` through the broker."""
    from celery import Celery

    app = Celery("bulutfon-test", broker=broker_url)
    wanted = {worker.nodename for worker in workers}

    def probe() -> bool | None:
        for worker in workers:
            assert worker.alive(), f"worker {worker.name} exited:\n{worker.log_tail()}"
        replies = app.control.ping(timeout=0.5)
        answered = {name for reply in replies for name in reply}
        return True if wanted <= answered else None

    try:
        wait_for("the Celery workers to answer ping", probe, timeout=START_TIMEOUT_S)
    finally:
        app.close()


def launch_run(
    assets: Sequence[str], first: str, last: str, accounts: Sequence[str] = ("default",)
) -> dict[str, object]:
    """One run materializing ``assets`` over the local days ``first..last`` of every
    account of ``accounts`` (a range of account x day partitions is the cross product of
    the accounts' and the days' ranges), on the instance of ``DAGSTER_HOME``, with the code
    location's executor. The listing (partitioned by account, which Dagster keeps out of a
    ranged run of account x day partitions) runs first, one run per account."""
    import dagster as dg
    from dagster._core.definitions.reconstruct import ReconstructableRepository
    from dagster._core.storage.tags import (
        ASSET_PARTITION_RANGE_END_TAG,
        ASSET_PARTITION_RANGE_START_TAG,
    )

    from bulutfon_pipeline.partitions import account_day_key, register_accounts

    repository = ReconstructableRepository.for_module(
        LOCATION, "defs", working_directory=str(REPO_ROOT)
    )
    definition = repository.get_definition()
    outcome: dict[str, object] = {"pid": os.getpid()}
    with dg.DagsterInstance.get() as instance:
        register_accounts(instance, accounts)  # what bulutfon_accounts_sensor does
        rest = [asset for asset in assets if asset != "cdr_listing"]
        if len(rest) < len(assets):
            listings = [
                _execute(repository, definition, instance, ["cdr_listing"], {}, account)
                for account in accounts
            ]
            outcome["listing_success"] = all(success for _, success in listings)
        tags = {
            ASSET_PARTITION_RANGE_START_TAG: str(
                account_day_key(accounts[0], dt.date.fromisoformat(first))
            ),
            ASSET_PARTITION_RANGE_END_TAG: str(
                account_day_key(accounts[-1], dt.date.fromisoformat(last))
            ),
        }
        outcome["run_id"], outcome["success"] = _execute(
            repository, definition, instance, rest, tags, None
        )
    return outcome


def _execute(
    repository: Any,
    definition: Any,
    instance: Any,
    assets: Sequence[str],
    tags: dict[str, str],
    partition_key: str | None,
) -> tuple[str, bool]:
    import dagster as dg

    keys = dg.AssetSelection.assets(*assets).resolve(definition.asset_graph)
    job = definition.get_implicit_job_def_for_assets(keys)
    assert job is not None, assets
    if partition_key is not None:
        tags = {**tags, "dagster/partition": partition_key}
    result = dg.execute_job(
        repository.get_reconstructable_job(job.name),
        instance=instance,
        asset_selection=list(keys),
        tags=tags,
    )
    return result.run_id, result.success


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--assets", required=True, help="comma-separated asset keys")
    parser.add_argument("--first", required=True)
    parser.add_argument("--last", required=True)
    parser.add_argument("--accounts", default="default", help="comma-separated accounts")
    args = parser.parse_args(argv)
    outcome = launch_run(args.assets.split(","), args.first, args.last, args.accounts.split(","))
    print(json.dumps(outcome))


if __name__ == "__main__":
    main()
