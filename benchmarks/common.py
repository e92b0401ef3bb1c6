"""Shared helpers of the benchmarks: the simulator in its own process, peak RSS of a
child process, the machine description. No secret is ever printed: the simulator's
master token is generated here and passed only through child environments."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BIN = Path(PYTHON).parent
WORK = ROOT / "data" / "bench"

#: (list path, detail path) of the seed dialect the simulator serves by default.
LIST_PATH, DETAIL_PATH = "/cdr.json", "/cdr/{uuid}.json"


@dataclass
class Simulator:
    """A simulator running in a separate process (``python -m bulutfon_pipeline.simulator``)."""

    url: str
    token: str = field(repr=False)
    process: subprocess.Popen[str] = field(repr=False)

    def admin(self, path: str, body: Mapping[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path, data=data, method="POST" if data else "GET"
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def configure(self, **knobs: Any) -> None:
        self.admin("/_admin/config", knobs)

    def reset_stats(self) -> None:
        self.admin("/_admin/stats/reset", {})

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.admin("/_admin/stats")
        stats.pop("detail_uuids", None)
        stats.pop("recording_uuids", None)
        return stats

    def env(self) -> dict[str, str]:
        """``BULUTFON_*`` variables pointing the product at this simulator."""
        return {
            "BULUTFON_API_URL": self.url,
            "BULUTFON_TOKEN_URL": self.url + "/oauth/token",
            "BULUTFON_CDR_LIST_PATH": LIST_PATH,
            "BULUTFON_CDR_DETAIL_PATH": DETAIL_PATH,
            "BULUTFON_ACCESS_TOKEN": self.token,
        }


@contextlib.contextmanager
def simulator(*, days: int, calls_per_day: int, extra: Sequence[str] = ()) -> Iterator[Simulator]:
    """Start the simulator in its own process on a free port; stop it on exit."""
    token = secrets.token_hex(32)
    env = {**os.environ, "BULUTFON_SIMULATOR_MASTER_TOKEN": token}
    cmd = [
        PYTHON, "-m", "bulutfon_pipeline.simulator", "--port", "0",
        "--days", str(days), "--calls-per-day", str(calls_per_day), *extra,
    ]  # fmt: skip
    process = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"simulator did not start: {line!r}")
        yield Simulator(line.rsplit(" ", 1)[1].strip(), token, process)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process, of its children that have exited (``cutime``/``cstime``:
    the postmaster reaps its backends), and of its live children."""
    tick = os.sysconf("SC_CLK_TCK")

    def fields(p: int) -> list[str]:
        return Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()

    own = fields(pid)
    total = sum(int(own[i]) for i in (11, 12, 13, 14))
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        with contextlib.suppress(OSError):  # exited meanwhile: counted in cutime now
            f = fields(int(child))
            total += int(f[11]) + int(f[12])
    return total / tick


@dataclass
class ChildRun:
    """A finished child process: wall seconds, peak RSS (MB), exit code, output, and the
    CPU seconds it used (user + system, all threads): less sensitive to a busy machine."""

    seconds: float
    peak_rss_mb: float
    returncode: int
    stdout: str
    stderr: str
    cpu_seconds: float = 0.0


def reaped(cmd: Sequence[str], result: Path) -> list[str]:
    """``cmd`` started through ``reaper.py``, which writes the command's own wall seconds,
    peak RSS and CPU to ``result``: a child's ``ru_maxrss`` counts the process it was
    forked from, and this harness grows to hundreds of MB (``reaper.py``)."""
    result.unlink(missing_ok=True)
    return [PYTHON, str(Path(__file__).with_name("reaper.py")), str(result), *cmd]


def reaped_figures(
    result: Path, started: float, reaper_code: int
) -> tuple[float, float, float, int]:
    """The command's (seconds, peak RSS MB, CPU seconds, exit code) ``reaper.py`` wrote to
    ``result``; when it wrote none (it was killed), the time since ``started``, no RSS or
    CPU, and the reaper's own exit code."""
    try:
        figures = json.loads(result.read_text())
    except (OSError, ValueError):
        return time.perf_counter() - started, 0.0, 0.0, reaper_code
    return (figures["seconds"], figures["peak_rss_kb"] / 1024, figures["cpu_seconds"],
            figures["returncode"])  # fmt: skip


def run_child_rss(
    cmd: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float | None = None
) -> ChildRun:
    """Run ``cmd`` to completion and read its own peak RSS, wall time and CPU (reaped by
    ``reaper.py`` with ``os.wait4``).

    Output goes to temporary files, so no pipe can fill up while we wait. After
    ``timeout`` seconds the child is killed and ``returncode`` is -9.
    """
    WORK.mkdir(parents=True, exist_ok=True)
    figures_file = WORK / "child.figures.json"
    with (
        open(WORK / "child.out", "w+") as out,
        open(WORK / "child.err", "w+") as err,
    ):
        started = time.perf_counter()
        process = subprocess.Popen(
            reaped(cmd, figures_file), env=dict(env) if env is not None else None, cwd=ROOT,
            stdout=out, stderr=err, text=True,
        )  # fmt: skip
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()  # the reaper, and the command with it (``reaper.py``)
            process.wait()
        seconds, rss, cpu, code = reaped_figures(figures_file, started, process.returncode)
        out.seek(0)
        err.seek(0)
        return ChildRun(seconds, rss, code, out.read(), err.read(), cpu)


def machine() -> dict[str, Any]:
    """CPU, memory, OS, Python and the versions that matter, plus the load average."""
    import importlib.metadata as md

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gb = 0.0
    with contextlib.suppress(OSError, ValueError, IndexError):
        first = Path("/proc/meminfo").read_text().splitlines()[0]
        mem_gb = int(first.split()[1]) / 1024 / 1024
    versions = {}
    names = "bulutfon_pipeline dagster duckdb pandas pyarrow httpx httpcore uvicorn uvloop"
    for name in (names + " httptools sqlalchemy duckdb_engine dlt psycopg psycopg2-binary").split():
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = "not installed"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_gb, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "loadavg": os.getloadavg(),
    }


def load_now() -> float:
    """The 1-minute load average now (other engineers share the machine)."""
    return round(os.getloadavg()[0], 2)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def recorded_case(
    script: str, name: str, assignments: Sequence[str], log_variable: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run ``accounts.py``'s case ``name`` (``assignments``: variables for its sync) with
    the sync run by ``script --child``, which writes JSON lines to the file named by
    ``log_variable``; the case's figures and those lines."""
    import accounts

    WORK.mkdir(parents=True, exist_ok=True)
    log = WORK / f"{Path(script).stem}_{name}.jsonl"
    out = accounts.one_case(
        name,
        [*assignments, f"{log_variable}={log}"],
        cli=(sys.executable, str(Path(script).resolve()), "--child"),
    )
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return out, lines


def recorded_script(
    script: str,
    child: Callable[[list[str]], None],
    report: Callable[[dict[str, Any], list[dict[str, Any]]], None],
    log_variable: str,
) -> None:
    """The ``__main__`` of a script that records one case of ``accounts.py`` from inside
    its sync: ``script --child ARGS`` runs ``child(ARGS)`` (the sync, writing to the file
    named by ``log_variable``); ``script CASE [VAR=value ...]`` runs the case
    (:func:`recorded_case`) and hands ``report`` its figures and the child's lines."""
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2:])
    else:
        out, lines = recorded_case(script, sys.argv[1], sys.argv[2:], log_variable)
        report(out, lines)
