"""Issue 13, section 2: bulk loads into PostgreSQL through ``COPY``.

The same NDJSON of call details as section 2 (``datasets.details_file``), loaded by three
contenders, each in its own process (``loaders.py``), each into a fresh database of one
PostgreSQL server that this benchmark starts itself (``PostgresServer`` of the tests, on a
Unix socket) **with the server's default durability**: ``fsync``, ``synchronous_commit``
and ``full_page_writes`` on, as a production server runs (the tests' server turns them
off). The contenders:

* ``ours-pg``: the pipeline's own load into PostgreSQL (``Warehouse.from_settings`` with
  ``BULUTFON_WAREHOUSE_URL``'s setting, ``ensure_schema``, ``load_details`` per batch
  through ``Warehouse.detail_writer``, as ``loads.load_details`` does);
* ``dlt-pg``: dlt's ``postgres`` destination, ``append``, time-capped as in section 2;
* ``ours``: the pipeline's own load into DuckDB, measured again in the same run: the peer
  of "within 3x", and the reference of what the tables must hold.

The server runs in processes of its own, so each contender's CPU is given twice: the
client process (``wait4``) and the server's (the postmaster's own and its children's CPU
seconds, before and after, from ``/proc``).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import psycopg
from common import PYTHON, ROOT, WORK, load_now, run_child_rss, tree_cpu_seconds
from datasets import details_file

from bulutfon_pipeline.settings import DEFAULT_DETAIL_BATCH_SIZE

sys.path.insert(0, str(ROOT))
from bulutfon_pipeline_tests.postgres import PostgresServer

KINDS = ("ours", "ours-pg", "dlt-pg")
#: What the server was started with, read back from the server itself.
SETTINGS = ("server_version", "fsync", "synchronous_commit", "full_page_writes", "wal_level",
            "shared_buffers", "max_wal_size", "checkpoint_timeout")  # fmt: skip
#: The tables of ours that must hold the same rows on both backends.
CHECKED = ("cdrs", "call_flow_steps", "originations", "raw_cdr_details", "distinct_uuids",
           "ring_seconds", "talk_seconds", "answered", "answered_originations")  # fmt: skip


def _server_settings(server: PostgresServer) -> dict[str, str]:
    with psycopg.connect(server.conninfo(), autocommit=True) as con:
        out = {}
        for name in SETTINGS:
            row = con.execute(f"SHOW {name}").fetchone()
            out[name] = str(row[0]) if row else "?"
        return out


def _contender(
    kind: str, path: Path, server: PostgresServer, *, max_s: float, timeout_s: float
) -> dict[str, Any]:
    folder = WORK / f"pgload_{kind}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    cmd = [PYTHON, "benchmarks/loaders.py", kind, str(path), str(folder / "db.duckdb"),
           "--max-seconds", str(max_s)]  # fmt: skip
    database = None
    if kind.endswith("-pg"):
        database = server.create_database(f"bench_{kind.replace('-', '_')}")
        cmd += ["--url", server.url(database)]
    load = load_now()
    cpu_before = tree_cpu_seconds(server.pid)
    run = run_child_rss(cmd, timeout=timeout_s)
    server_cpu = round(tree_cpu_seconds(server.pid) - cpu_before, 2)
    try:
        if run.returncode != 0:
            print(f"  pgload {kind}: FAILED exit {run.returncode}", flush=True)
            return {"error": f"exit {run.returncode}", "seconds": round(run.seconds, 1),
                    "stderr": run.stderr[-1500:], "load": load}  # fmt: skip
        result: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
        result["rows_per_s"] = round(result["rows"] / result["seconds"], 1)
        result["process_peak_rss_mb"] = round(run.peak_rss_mb, 1)
        result["cpu_seconds"] = round(run.cpu_seconds, 2)
        result["server_cpu_seconds"] = server_cpu
        result["load"] = load
        print(f"  pgload {kind}: {result['rows_per_s']:.0f} rows/s, client CPU "
              f"{run.cpu_seconds:.1f} s, server CPU {server_cpu:.1f} s", flush=True)  # fmt: skip
        return result
    finally:
        if database is not None:
            server.drop_database(database)
        shutil.rmtree(folder, ignore_errors=True)


def run(quick: bool) -> dict[str, Any]:
    """The three contenders on one NDJSON file, against one durable server."""
    calls = 5_000 if quick else 100_000
    path = details_file(calls)
    out: dict[str, Any] = {"calls": calls, "bytes": path.stat().st_size, "quick": quick,
                           "batch": DEFAULT_DETAIL_BATCH_SIZE, "durable": True}  # fmt: skip
    server = PostgresServer().start(durable=True)
    try:
        out["server"] = _server_settings(server)
        for kind in KINDS:
            out[kind] = _contender(
                kind, path, server, max_s=12 if quick else 120, timeout_s=600 if quick else 1800
            )
    finally:
        server.stop()
    duck = out["ours"].get("tables")
    pg = out["ours-pg"].get("tables")
    out["exact"] = bool(duck and pg and all(duck[k] == pg[k] for k in CHECKED))
    return out
