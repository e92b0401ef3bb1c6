"""`bulutfon-pipeline demo`: runs :func:`runner.run_demo` and prints what it did.

It prints the sync summary, a few example queries with their results, and where to look
next.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
from rich.markup import escape

from bulutfon_pipeline import runner
from bulutfon_pipeline.cli.output import console, print_rows, print_summary, progress_bars

# Written in SQL that DuckDB and PostgreSQL both run (see warehouse/views.py): FILTER with
# WHERE, no hour(), round() of a numeric (PostgreSQL has no round(double, digits)), and an
# ORDER BY that breaks ties, so a LIMIT picks the same rows on either.
EXAMPLE_QUERIES: list[tuple[str, str]] = [
    (
        "Calls per direction, with the answer rate",
        """SELECT direction, count(*) AS calls, count(*) FILTER (WHERE answered) AS answered,
       round(100.0 * count(*) FILTER (WHERE answered) / count(*), 1) AS answer_rate_pct
FROM cdrs GROUP BY direction ORDER BY calls DESC, direction""",
    ),
    (
        "Ring-group members: who answers, who loses the race (names from the PBX's directory)",
        """SELECT ring_group, ring_group_name, destination, destination_name, rings, answers,
       lost_races, CAST(answer_share AS NUMERIC(3, 2)) AS answer_share
FROM ring_group_performance ORDER BY ring_group, answers DESC, destination LIMIT 8""",
    ),
    (
        "Incoming calls answered within and outside the number's working hours, last days",
        """SELECT number, call_date, calls_in_hours AS in_hours,
       round(100.0 * answered_in_hours / nullif(calls_in_hours, 0), 1) AS answered_in_pct,
       calls_out_of_hours AS out_of_hours,
       round(100.0 * answered_out_of_hours / nullif(calls_out_of_hours, 0), 1)
           AS answered_out_pct
FROM working_hours_service_level ORDER BY call_date DESC, number LIMIT 5""",
    ),
    (
        "Calls per local hour (Europe/Istanbul; the month crosses the 2015 DST change)",
        """SELECT CAST(extract(hour FROM timezone('Europe/Istanbul', call_time)) AS INTEGER)
           AS local_hour,
       count(*) AS calls, count(*) FILTER (WHERE answered) AS answered,
       round(avg(talk_seconds) FILTER (WHERE answered), 1) AS avg_talk_s
FROM cdrs GROUP BY local_hour ORDER BY calls DESC, local_hour LIMIT 5""",
    ),
]


def demo(*, days: int, calls_per_day: int, database: Path, show_progress: bool) -> None:
    """Run the demo and print the summary, the example queries and the next steps."""
    with progress_bars(show_progress) as reporter:
        result = runner.run_demo(
            days=days,
            calls_per_day=calls_per_day,
            database=database,
            reporter=reporter,
            announce=lambda line: console.print(line, highlight=False),
        )
    print_summary(result.sync, title="demo sync")
    # The analysts' copy, as an analyst would: a load never waits for it.
    con = duckdb.connect(str(result.analytics), read_only=True)
    try:
        for title, sql in EXAMPLE_QUERIES:
            cursor = con.execute(sql)
            columns = [d[0] for d in cursor.description or []]
            print_rows(title, columns, cursor.fetchall(), sql=sql)
    finally:
        con.close()
    # Markup for the bold, so every path in it is escaped (a folder may hold "[").
    database_, analytics = escape(str(database)), escape(str(result.analytics))
    console.print(
        f"\nDone in {result.seconds:.1f} s; the simulator served "
        f"{result.detail_requests} detail requests. Warehouse (loads): [bold]{database_}[/]; "
        f"analysts' copy (queries): [bold]{analytics}[/]\n"
        f"Query it:  BULUTFON_DUCKDB_PATH={database_} .venv/bin/bulutfon-pipeline sql "
        '"FROM daily_call_summary"\n'
        f'      or:  .venv/bin/python -c "import duckdb; '
        f"print(duckdb.connect('{analytics}', read_only=True)"
        ".sql('FROM daily_call_summary'))\"\n"
        "Open the Dagster UI on the simulator: [bold]make ui[/] then http://127.0.0.1:3000\n"
        f"Recordings: [bold]{escape(str(result.recordings_dir))}[/]\n"
        f"Call report (open it in a browser): [bold]{escape(str(result.report_path or '?'))}[/]",
        markup=True,
    )
