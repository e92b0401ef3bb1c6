"""Issue 13, section 1: analysts never block a load.

1. A sync of 1,000 new calls with a read-only connection held open on the analysts'
   file for the whole run, against the same sync without it (alternating, each from a
   copy of the same warehouse, against a fresh simulator of the same dataset).
2. The publish (checkpoint, copy, rename) as a share of the sync's time, for a large
   warehouse: a first sync of it, and a sync of 1,000 new calls into it. Also the
   alternative ``ATTACH`` + ``COPY FROM DATABASE`` on the same file, in-process.
"""

from __future__ import annotations

import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
from common import PYTHON, WORK, load_now, run_child_rss, simulator
from syncbench import CALLS_PER_DAY, CLI, _env

from bulutfon_pipeline.settings import analytics_path_for
from bulutfon_pipeline.warehouse import Warehouse
from bulutfon_pipeline.warehouse.publish import publish_analytics

NEW_CALLS = 1_000
#: Holds a read-only connection on the file given until its stdin closes.
HOLDER = (
    "import sys, duckdb\n"
    "con = duckdb.connect(sys.argv[1], read_only=True)\n"
    "print(con.execute('SELECT count(*) FROM cdrs').fetchone()[0], flush=True)\n"
    "sys.stdin.read()\n"
)


def _published_seconds(stdout: str) -> float | None:
    match = re.search(r"analysts' copy published.*? in ([0-9.]+) s", stdout, re.S)
    return float(match[1]) if match else None


def _duration(stdout: str) -> float | None:
    match = re.search(r"duration\D+([0-9.]+) s", stdout)
    return float(match[1]) if match else None


def _base(calls: int) -> Path:
    """A warehouse of ``calls`` calls (a first sync), built once and kept."""
    days = calls // CALLS_PER_DAY
    folder = WORK / f"analysts_base_{calls}"
    db = folder / "warehouse.duckdb"
    if db.exists() and analytics_path_for(db).exists():
        return db
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    with simulator(days=days, calls_per_day=CALLS_PER_DAY) as sim:
        run = run_child_rss([CLI, "sync", "--no-progress"], env=_env(sim, db, days))
    if run.returncode != 0:
        raise RuntimeError(f"base sync failed ({run.returncode}): {run.stderr[-2000:]}")
    (folder / "first_sync.txt").write_text(
        f"{run.seconds} {_duration(run.stdout)} {_published_seconds(run.stdout)}\n"
    )
    return db


def _incremental(base: Path, *, hold: bool, name: str) -> dict[str, Any]:
    """A sync of NEW_CALLS new calls into a copy of ``base``, optionally with a reader
    holding the analysts' file for the whole run."""
    calls = len(duckdb.connect(str(base), read_only=True).execute("FROM cdrs").fetchall())
    days = calls // CALLS_PER_DAY
    folder = WORK / name
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(base.parent, folder)
    db = folder / base.name
    holder = None
    if hold:
        holder = subprocess.Popen(
            [PYTHON, "-c", HOLDER, str(analytics_path_for(db))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert holder.stdout is not None
        holder.stdout.readline()  # the connection is open
    try:
        with simulator(days=days, calls_per_day=CALLS_PER_DAY) as sim:
            sim.admin("/_admin/calls", {"count": NEW_CALLS, "where": "head"})
            load = load_now()
            run = run_child_rss([CLI, "sync", "--no-progress"], env=_env(sim, db, days))
    finally:
        if holder is not None:
            assert holder.stdin is not None
            holder.stdin.close()
            holder.wait(30)
    if run.returncode != 0:
        raise RuntimeError(f"sync failed ({run.returncode}): {run.stderr[-2000:]}")
    con = duckdb.connect(str(analytics_path_for(db)), read_only=True)
    published = con.execute("SELECT count(*) FROM cdrs").fetchone()
    con.close()
    result = {
        "held": hold,
        "seconds": round(run.seconds, 2),
        "cpu_seconds": round(run.cpu_seconds, 2),
        "after_startup_seconds": _duration(run.stdout),
        "publish_seconds": _published_seconds(run.stdout),
        "published_calls": published[0] if published else 0,
        "expected_calls": calls + NEW_CALLS,
        "load": load,
    }
    shutil.rmtree(folder, ignore_errors=True)
    return result


def _alternatives(db: Path) -> dict[str, Any]:
    """The file copy against ``ATTACH`` + ``COPY FROM DATABASE``, on a copy of ``db``."""
    folder = WORK / "analysts_alternatives"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(db.parent, folder)
    source = folder / db.name
    warehouse = Warehouse(source)
    copies = []
    for _ in range(3):
        copies.append(publish_analytics(warehouse, folder / "copy.duckdb").seconds)
    attach = []
    for index in range(3):
        target = folder / f"attach_{index}.duckdb"
        started = time.perf_counter()
        con = duckdb.connect(str(source))
        con.execute(f"ATTACH '{target}' AS copy")
        con.execute("COPY FROM DATABASE warehouse TO copy")
        con.execute("DETACH copy")
        con.close()
        attach.append(time.perf_counter() - started)
    result = {
        "bytes": source.stat().st_size,
        "file_copy_seconds": round(statistics.median(copies), 3),
        "copy_from_database_seconds": round(statistics.median(attach), 3),
        "copy_from_database_bytes": (folder / "attach_0.duckdb").stat().st_size,
    }
    shutil.rmtree(folder, ignore_errors=True)
    return result


def run(quick: bool) -> dict[str, Any]:
    """Both measurements; ``quick`` uses smaller warehouses (said in the results)."""
    reader_calls = 2_000 if quick else 10_000
    large_calls = 10_000 if quick else 100_000
    pairs = 2 if quick else 5
    out: dict[str, Any] = {"quick": quick, "new_calls": NEW_CALLS}

    base = _base(reader_calls)
    runs = []
    for index in range(pairs):
        for hold in (False, True) if index % 2 == 0 else (True, False):
            runs.append(_incremental(base, hold=hold, name=f"analysts_run_{index}_{hold}"))
            print(f"  sync of {NEW_CALLS} new calls into {reader_calls:,}, reader held={hold}: "
                  f"{runs[-1]['seconds']:.1f} s", flush=True)  # fmt: skip
    held = statistics.median(r["seconds"] for r in runs if r["held"])
    free = statistics.median(r["seconds"] for r in runs if not r["held"])
    out["reader"] = {
        "warehouse_calls": reader_calls,
        "runs": runs,
        "held_seconds": held,
        "free_seconds": free,
        "ratio": round(held / free, 3),
        "cpu_ratio": round(
            statistics.median(r["cpu_seconds"] for r in runs if r["held"])
            / statistics.median(r["cpu_seconds"] for r in runs if not r["held"]),
            3,
        ),
        "exact": all(r["published_calls"] == r["expected_calls"] for r in runs),
    }

    large = _base(large_calls)
    total, _after_startup, published = (
        float(x) if x != "None" else None
        for x in (large.parent / "first_sync.txt").read_text().split()
    )
    incremental = _incremental(large, hold=False, name="analysts_large_incremental")
    print(f"  sync of {NEW_CALLS} new calls into {large_calls:,}: {incremental['seconds']:.1f} s, "
          f"publish {incremental['publish_seconds']} s", flush=True)  # fmt: skip
    out["publish"] = {
        "warehouse_calls": large_calls,
        "first_sync_seconds": total,
        "first_sync_publish_seconds": published,
        "first_sync_share": round(published / total, 4) if published and total else None,
        "incremental": incremental,
        "incremental_share": (
            round(incremental["publish_seconds"] / incremental["seconds"], 4)
            if incremental["publish_seconds"]
            else None
        ),
        "alternatives": _alternatives(large),
    }
    return out


if __name__ == "__main__":  # pragma: no cover
    import json

    print(json.dumps(run("--quick" in sys.argv), indent=2, default=str))
