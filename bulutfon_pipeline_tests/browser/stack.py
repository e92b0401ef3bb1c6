"""`dagster dev` against the simulator, in subprocesses, for the browser test.

:class:`DagsterDev` starts ``dagster dev`` (webserver, daemon and code server) from the repo
root on a free port with a temporary ``DAGSTER_HOME`` and warehouse, waits until the code
location has loaded, speaks GraphQL to it, and stops the whole process group at the end.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx
import pytest

from bulutfon_pipeline.cli.ui import DAGSTER_YAML

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCATION = "bulutfon_pipeline.definitions"
#: Adds an account to the accounts' dynamic partitions (``partitions.ACCOUNTS_PARTITIONS_NAME``).
ADD_ACCOUNT = """mutation($name: String!) { addDynamicPartition(
  repositorySelector: {repositoryLocationName: "bulutfon_pipeline.definitions",
                       repositoryName: "__repository__"},
  partitionsDefName: "bulutfon_accounts", partitionKey: $name) { __typename } }"""
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 90.0

#: Mark of every test that starts `dagster dev`. `make test` runs the suite on two
#: pytest-xdist workers with ``--dist loadgroup``, which sends a group to one worker as one
#: unit of work, while the other worker runs the rest. Two stacks (webserver, daemon, code
#: server, run workers) plus Chromium at once would starve a 2-core machine. pytest 9.2
#: loses the grouping (pytest-xdist#1386; pyproject keeps pytest below it), so
#: :meth:`DagsterDev.start` also waits for a lock shared by the run's workers.
DAGSTER_DEV_GROUP = pytest.mark.xdist_group("dagster_dev")

T = TypeVar("T")


def free_port() -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(what: str, probe: Callable[[], T | None], *, timeout: float, every: float = 0.5) -> T:
    """Call ``probe`` until it returns something other than None; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(every)  # polling interval of a deadline-bounded wait, not a synchronisation


def _default_interrupts() -> None:
    # A shell starts background jobs with SIGINT ignored and exec keeps that; dagster dev
    # would then ignore the SIGINT (and SIGTERM, which it maps to SIGINT) that stops it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def one_stack_at_a_time() -> int | None:
    """Under pytest-xdist, block until no other worker of this run has a `dagster dev`
    up; returns the locked file descriptor (None outside xdist)."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if not run:
        return None
    path = Path(tempfile.gettempdir()) / f"bulutfon-dagster-dev-{run}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)  # the other stack's test ends within its own timeout
    return fd


class GraphQLError(AssertionError):
    """The webserver answered a GraphQL request with errors."""


class DagsterDev:
    """``dagster dev -w workspace.yaml`` on 127.0.0.1:<free port> with the given environment."""

    def __init__(self, home: Path, env: Mapping[str, str], log_path: Path) -> None:
        self.home = home
        self.port = 0  # chosen by start(), once this stack's turn has come
        self.url = ""
        self.log_path = log_path
        # A developer's own BULUTFON_* settings (a real account!) must not leak in.
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("BULUTFON_")}
        self._env = {**inherited, **env, "DAGSTER_HOME": str(home)}
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock: int | None = None
        self._client = httpx.Client(timeout=30.0)

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> DagsterDev:
        self._lock = one_stack_at_a_time()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._client.base_url = httpx.URL(self.url)
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "dagster.yaml").write_text(DAGSTER_YAML)
        dagster = Path(sys.executable).with_name("dagster")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        self._proc = subprocess.Popen(
            [str(dagster), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(self.port)],
            cwd=REPO_ROOT,
            env=self._env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: teardown reaches every child
            preexec_fn=_default_interrupts,
        )
        log.close()
        try:
            wait_for("the Dagster webserver", self._server_info, timeout=START_TIMEOUT_S)
            wait_for("the code location to load", self._location_loaded, timeout=START_TIMEOUT_S)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        try:
            self._stop()
        finally:
            lock, self._lock = self._lock, None
            if lock is not None:
                os.close(lock)  # releases the flock

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        self._client.close()
        if proc is None or proc.poll() is not None:
            return
        pgid = os.getpgid(proc.pid)
        # dagster dev stops its webserver, daemon and code server itself on SIGINT (Ctrl-C);
        # whatever of its process group is still alive after that, or after the timeout, is
        # killed.
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            proc.wait(STOP_TIMEOUT_S)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)  # stragglers of the group, if any

    def __enter__(self) -> DagsterDev:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # -- readiness -----------------------------------------------------------------------
    def _check_alive(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            raise RuntimeError(
                f"dagster dev exited with {self._proc.returncode}:\n{self.log_tail()}"
            )

    def _server_info(self) -> bool | None:
        self._check_alive()
        try:
            return True if self._client.get("/server_info").status_code == 200 else None
        except httpx.TransportError:
            return None

    def _location_loaded(self) -> bool | None:
        self._check_alive()
        data = self.graphql(
            """{ workspaceOrError { __typename ... on Workspace { locationEntries {
                 name loadStatus locationOrLoadError { __typename
                   ... on PythonError { message stack } } } } } }"""
        )
        for entry in data["workspaceOrError"].get("locationEntries", []):
            if entry["name"] != LOCATION or entry["loadStatus"] != "LOADED":
                continue
            loaded = entry["locationOrLoadError"]
            if loaded and loaded["__typename"] == "PythonError":
                raise RuntimeError(
                    f"code location failed to load: {loaded['message']}\n"
                    + "".join(loaded["stack"])
                )
            return True
        return None

    # -- GraphQL -------------------------------------------------------------------------
    def add_account(self, name: str = "default") -> None:
        """Register the PBX account ``name`` as a partition (what the code location's
        ``bulutfon_accounts_sensor`` does on its first tick), through the UI's own
        mutation; an account already registered is fine."""
        answer = self.graphql(ADD_ACCOUNT, {"name": name})["addDynamicPartition"]
        ok = {"AddDynamicPartitionSuccess", "DuplicateDynamicPartitionError"}
        assert answer["__typename"] in ok, answer

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self._client.post(
            "/graphql", json={"query": query, "variables": variables or {}}
        )
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise GraphQLError(json.dumps(body["errors"], indent=2))
        return body["data"]
