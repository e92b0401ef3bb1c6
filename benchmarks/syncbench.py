"""Benchmarks 3-5: a whole ``bulutfon-pipeline sync`` in a subprocess, against the
simulator in another process.

3. peak RSS of a full sync of a small and a large dataset (must stay flat);
4. an incremental no-op sync: API requests (the simulator's own counters) and wall time,
   for the process as a whole and after start-up;
5. start-up: the time ``--help`` and the no-op sync spend importing vs working.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
import shutil
import statistics
from pathlib import Path
from typing import Any

import duckdb
from common import BIN, PYTHON, WORK, Simulator, load_now, run_child_rss, simulator

END_DATE = dt.date(2015, 4, 16)  # the simulator's default end date
CALLS_PER_DAY = 1000
PAGE_SIZE = 100  # the product's default listing page size
LOOKBACK_HOURS = 48
CLI = str(BIN / "bulutfon-pipeline")


def _env(sim: Simulator, db: Path, days: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BULUTFON_", "DAGSTER_"))}
    env.update(sim.env())
    env.update(
        BULUTFON_DUCKDB_PATH=str(db),
        BULUTFON_DATA_DIR=str(db.parent),
        BULUTFON_START_DATE=(END_DATE - dt.timedelta(days=days - 1)).isoformat(),
        BULUTFON_LOOKBACK_HOURS=str(LOOKBACK_HOURS),
        COLUMNS="120",
    )
    return env


def _duration(stdout: str) -> float | None:
    """The run's own duration from the summary table (time after start-up)."""
    match = re.search(r"duration\D+([0-9.]+) s", stdout)
    return float(match[1]) if match else None


def _import_seconds(stderr: str) -> float:
    """Total import time from ``-X importtime`` output: the top-level cumulative times."""
    total = 0
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cumulative, name = line.split("|", 2)
            if not name.startswith("  ") and cumulative.strip().isdigit():
                total += int(cumulative)
    return total / 1e6


def _fresh(name: str) -> Path:
    folder = WORK / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder / "warehouse.duckdb"


def full_sync(calls: int) -> dict[str, Any]:
    """Peak RSS and wall time of a first sync of ``calls`` calls."""
    days = calls // CALLS_PER_DAY
    db = _fresh(f"sync_{calls}")
    with simulator(days=days, calls_per_day=CALLS_PER_DAY) as sim:
        load = load_now()
        run = run_child_rss([CLI, "sync", "--no-progress"], env=_env(sim, db, days))
        if run.returncode != 0:
            raise RuntimeError(f"sync failed ({run.returncode}): {run.stderr[-2000:]}")
        stats = sim.stats()
    con = duckdb.connect(str(db), read_only=True)
    loaded = con.execute("SELECT count(*) FROM cdrs").fetchone()
    con.close()
    return {
        "calls": calls,
        "loaded": loaded[0] if loaded else 0,
        "seconds": round(run.seconds, 1),
        "peak_rss_mb": round(run.peak_rss_mb, 1),
        "detail_requests": sum(stats["detail"].values()),
        "listing_requests": sum(stats["listing"].values()),
        "load": load,
    }


def noop_and_startup(calls: int) -> dict[str, Any]:
    """A no-op sync after a full one of ``calls`` calls, and the start-up costs."""
    days = calls // CALLS_PER_DAY
    db = WORK / f"sync_{calls}" / "warehouse.duckdb"
    out: dict[str, Any] = {"calls": calls}
    with simulator(days=days, calls_per_day=CALLS_PER_DAY) as sim:
        env = _env(sim, db, days)
        sim.reset_stats()
        load = load_now()
        run = run_child_rss([CLI, "sync", "--no-progress"], env=env)
        if run.returncode != 0:
            raise RuntimeError(f"no-op sync failed ({run.returncode}): {run.stderr[-2000:]}")
        stats = sim.stats()
        con = duckdb.connect(str(db), read_only=True)
        in_window = con.execute(
            "SELECT count(*) FROM cdr_listing WHERE call_time >= "
            "(SELECT max(call_time) FROM cdr_listing) - to_hours(?)",
            [LOOKBACK_HOURS],
        ).fetchone()
        con.close()
        window_calls = in_window[0] if in_window else 0
        listing_pages = sum(stats["listing"].values())
        allowed = math.ceil(window_calls / PAGE_SIZE) + 1
        after_startup = _duration(run.stdout)
        out["noop"] = {
            "detail_requests": sum(stats["detail"].values()),
            "listing_pages": listing_pages,
            "lookback_calls": window_calls,
            "allowed_pages": allowed,
            "process_seconds": round(run.seconds, 2),
            "after_startup_seconds": after_startup,
            "peak_rss_mb": round(run.peak_rss_mb, 1),
            "load": load,
        }
        traced = run_child_rss([PYTHON, "-X", "importtime", CLI, "sync", "--no-progress"], env=env)
        out["noop"]["import_seconds"] = round(_import_seconds(traced.stderr), 2)
        out["noop"]["traced_process_seconds"] = round(traced.seconds, 2)
    out["help"] = help_startup()
    return out


def help_startup(repeats: int = 5) -> dict[str, Any]:
    """``bulutfon-pipeline --help``: wall time, and in a ``-X importtime`` run the share
    spent importing (tracing slows imports, so shares come from the traced run)."""
    bare = statistics.median(run_child_rss([PYTHON, "-c", "pass"]).seconds for _ in range(repeats))
    walls = [run_child_rss([CLI, "--help"]).seconds for _ in range(repeats)]
    traced = [run_child_rss([PYTHON, "-X", "importtime", CLI, "--help"]) for _ in range(repeats)]
    traced_wall = statistics.median(t.seconds for t in traced)
    imported = statistics.median(_import_seconds(t.stderr) for t in traced)
    return {
        "wall_seconds": round(statistics.median(walls), 3),
        "traced_wall_seconds": round(traced_wall, 3),
        "import_seconds": round(imported, 3),
        "interpreter_seconds": round(bare, 3),
        "working_seconds": round(max(traced_wall - imported - bare, 0.0), 3),
        "load": load_now(),
    }
