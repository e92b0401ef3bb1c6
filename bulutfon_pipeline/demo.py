"""`bulutfon-pipeline demo`: the whole pipeline on the embedded simulator.

It starts the simulator on a free port with a month of calls, points the pipeline at it
through the same environment variables a real deployment uses, runs ``sync`` into
``data/demo.duckdb`` and prints the summary and a few example queries.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import duckdb
from rich.console import Console
from rich.table import Table

EXAMPLE_QUERIES: list[tuple[str, str]] = [
    (
        "Calls per direction, with the answer rate",
        """SELECT direction, count(*) AS calls, count(*) FILTER (answered) AS answered,
       round(100.0 * count(*) FILTER (answered) / count(*), 1) AS answer_rate_pct
FROM cdrs GROUP BY direction ORDER BY calls DESC""",
    ),
    (
        "Ring-group members: who answers, who loses the race",
        """SELECT ring_group, destination, rings, answers, lost_races,
       round(answer_share, 2) AS answer_share
FROM ring_group_performance ORDER BY ring_group, answers DESC LIMIT 8""",
    ),
    (
        "Calls per local hour (Europe/Istanbul; the month crosses the 2015 DST change)",
        """SELECT hour(timezone('Europe/Istanbul', call_time)) AS local_hour,
       count(*) AS calls, count(*) FILTER (answered) AS answered,
       round(avg(talk_seconds) FILTER (answered), 1) AS avg_talk_s
FROM cdrs GROUP BY local_hour ORDER BY calls DESC LIMIT 5""",
    ),
]


@contextlib.contextmanager
def temporary_environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the block and restore them afterwards."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _print_query(console: Console, con: duckdb.DuckDBPyConnection, title: str, sql: str) -> None:
    cursor = con.execute(sql)
    columns = [d[0] for d in cursor.description or []]
    table = Table(title=title, title_justify="left", show_header=True, header_style="bold")
    for column in columns:
        table.add_column(column)
    for row in cursor.fetchall():
        table.add_row(*("" if value is None else str(value) for value in row))
    console.print(f"[dim]{sql}[/]", highlight=False)
    console.print(table)


def run_demo(
    *,
    days: int,
    calls_per_day: int,
    database: Path,
    show_progress: bool,
    console: Console,
) -> None:
    """Start the simulator, sync into ``database`` and print results."""
    from bulutfon_pipeline.cli import print_summary, run_report, run_sync
    from bulutfon_pipeline.simulator import SimulatorConfig, SimulatorServer

    database.parent.mkdir(parents=True, exist_ok=True)
    for stale in (database, database.with_name(database.name + ".wal")):
        stale.unlink(missing_ok=True)
    demo_data = database.parent / "demo"
    demo_data.mkdir(exist_ok=True)
    started = time.monotonic()
    config = SimulatorConfig(days=days, calls_per_day=calls_per_day)
    with SimulatorServer(config) as sim:
        console.print(
            f"Simulator: {days} days x {calls_per_day} calls/day ending {config.end_date} "
            f"({config.dialect} dialect) on {sim.url}"
        )
        env = {
            **sim.env(auth="master"),
            "BULUTFON_DUCKDB_PATH": str(database),
            "BULUTFON_DATA_DIR": str(demo_data),
            # The simulator's recordings are synthetic tones, not personal data.
            "BULUTFON_DOWNLOAD_RECORDINGS": "1",
        }
        with temporary_environment(env):
            outcome = run_sync(show_progress=show_progress)
            report = run_report()
        print_summary(outcome, title="demo sync")
        stats = sim.stats()
    con = duckdb.connect(str(database), read_only=True)
    try:
        for title, sql in EXAMPLE_QUERIES:
            _print_query(console, con, title, sql)
    finally:
        con.close()
    detail_requests = sum(stats.get("detail", {}).values()) if isinstance(stats, dict) else 0
    console.print(
        f"\nDone in {time.monotonic() - started:.1f} s; the simulator served "
        f"{detail_requests} detail requests. Warehouse: [bold]{database}[/]\n"
        f'Query it:  .venv/bin/python -c "import duckdb; '
        f"print(duckdb.connect('{database}', read_only=True).sql('FROM daily_call_summary'))\"\n"
        "Open the Dagster UI on the simulator: [bold]make ui[/] then http://127.0.0.1:3000\n"
        f"Recordings: [bold]{demo_data / 'recordings'}[/]\n"
        f"Call report (open it in a browser): [bold]{report.get('path', '?')}[/]"
    )
