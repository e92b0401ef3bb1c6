"""What a no-op schema upgrade costs on every load (DuckDB): ``upgrade_duckdb`` on a
warehouse already at the newest revision, against the table DDL it replaces in
``ensure_schema`` (``CREATE TABLE IF NOT EXISTS`` for every table) and against the whole
of today's ``create_schema`` (tables and views), measured alternately in the same run.

    .venv/bin/python benchmarks/migrate_noop.py [--rounds 7] [--calls 200]

Prints one JSON line: milliseconds per call (median of the rounds) and the ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import load_now

from bulutfon_pipeline.warehouse import duckdb_backend
from bulutfon_pipeline.warehouse.duckdb_migrate import upgrade_duckdb


def per_call_ms(con: duckdb.DuckDBPyConnection, step: Callable[[], object], calls: int) -> float:
    """Mean milliseconds of ``step`` over ``calls`` calls, each in its own transaction (as
    ``ensure_schema`` runs it)."""
    start = time.perf_counter()
    for _ in range(calls):
        con.execute("BEGIN TRANSACTION")
        step()
        con.execute("COMMIT")
    return (time.perf_counter() - start) * 1000 / calls


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        con = duckdb.connect(str(Path(folder) / "bulutfon.duckdb"))
        con.execute("BEGIN TRANSACTION")
        first = upgrade_duckdb(con)
        con.execute("COMMIT")
        assert first.action == "created", first

        def tables() -> None:
            for statement in duckdb_backend.create_table_statements():
                con.execute(statement)

        contenders: dict[str, Callable[[], object]] = {
            "upgrade_noop": lambda: upgrade_duckdb(con),
            "create_tables": tables,
            "create_schema": lambda: duckdb_backend.create_schema(con),
        }
        samples: dict[str, list[float]] = {name: [] for name in contenders}
        load = load_now()
        for _ in range(args.rounds):
            for name, step in contenders.items():
                samples[name].append(per_call_ms(con, step, args.calls))
        con.close()
    ms = {name: round(statistics.median(values), 3) for name, values in samples.items()}
    print(
        json.dumps(
            {
                "ms_per_call": ms,
                "upgrade_noop_vs_create_tables": round(ms["upgrade_noop"] / ms["create_tables"], 3),
                "upgrade_noop_vs_create_schema": round(ms["upgrade_noop"] / ms["create_schema"], 3),
                "rounds": args.rounds,
                "calls": args.calls,
                "load": load,
            }
        )
    )


if __name__ == "__main__":
    main()
