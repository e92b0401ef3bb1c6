"""`bulutfon-pipeline sql`: a query on the analysts' copy (DuckDB) or on the PostgreSQL
warehouse itself, in a read-only transaction, as a table or an export."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import cast

from bulutfon_pipeline.cli.errors import CLIError
from bulutfon_pipeline.cli.output import print_rows
from bulutfon_pipeline.settings import Settings
from bulutfon_pipeline.warehouse import Warehouse, WarehouseError
from bulutfon_pipeline.warehouse.duckdb_analytics import (
    EXPORT_FORMATS,
    AnalyticsQueryError,
    ExportFormat,
    export_query,
    run_query,
)


def _resolve_format(fmt: str | None, output: str | None) -> str:
    """``--format``, or with ``--output`` alone the output's extension."""
    if fmt is not None:
        return fmt
    if output is None:
        return "table"
    suffix = Path(output).suffix.lower().lstrip(".")
    if suffix in EXPORT_FORMATS:
        return suffix
    raise CLIError(
        f"cannot tell the format of --output {output} from its extension; "
        "give --format csv, json or parquet"
    )


def run_sql(settings: Settings, query: str, *, fmt: str | None, output: str | None) -> None:
    """Run ``query`` and print it as a table, or export it (to ``output`` or stdout).

    DuckDB: on the analysts' copy. PostgreSQL: on the warehouse, read-only.

    Raises:
        CLIError: a missing analysts' file, bad SQL or a bad format/output pair (exit 2).
    """
    chosen = _resolve_format(fmt, output)
    if settings.warehouse_url is not None:
        _run_on_server(Warehouse.from_settings(settings), query, chosen, output)
        return
    analytics_path = settings.analytics_path
    try:
        if chosen == "table":
            if output is not None:
                raise CLIError(
                    "--format table prints to the terminal; use csv, json or parquet with --output"
                )
            result = run_query(analytics_path, query)
            count = len(result.rows)
            title = f"{count} row" if count == 1 else f"{count} rows"
            print_rows(title, result.columns, result.rows, full_width_when_piped=True)
            return
        export = cast(ExportFormat, chosen)
        if output is not None:
            rows = export_query(analytics_path, query, export, Path(output))
            print(f"wrote {rows} rows to {output} ({chosen})", file=sys.stderr)
            return
        if export == "parquet":
            raise CLIError("parquet is binary; give --output FILE")
        with tempfile.TemporaryDirectory(prefix="bulutfon-sql-") as folder:
            target = Path(folder) / f"result.{export}"
            export_query(analytics_path, query, export, target)
            sys.stdout.write(target.read_text(encoding="utf-8"))
            sys.stdout.flush()
    except AnalyticsQueryError as error:
        raise CLIError(str(error)) from None


def _run_on_server(warehouse: Warehouse, query: str, chosen: str, output: str | None) -> None:
    """:func:`run_sql` on a server warehouse: a READ ONLY transaction (MVCC: it never
    waits for a load, nor a load for it); exports written by pandas/pyarrow."""
    import pandas as pd

    if chosen == "table" and output is not None:
        raise CLIError(
            "--format table prints to the terminal; use csv, json or parquet with --output"
        )
    if chosen == "parquet" and output is None:
        raise CLIError("parquet is binary; give --output FILE")
    try:
        columns, rows = warehouse.read_only_query(query)
    except WarehouseError as error:
        raise CLIError(f"the query failed: {error}") from None
    if chosen == "table":
        title = f"{len(rows)} row" if len(rows) == 1 else f"{len(rows)} rows"
        print_rows(title, columns, rows, full_width_when_piped=True)
        return
    frame = pd.DataFrame.from_records(rows, columns=columns)
    target = Path(output) if output is not None else None
    try:
        if chosen == "csv":
            text = frame.to_csv(target, index=False)
        elif chosen == "json":
            text = frame.to_json(target, orient="records", date_format="iso", indent=None)
        else:
            frame.to_parquet(target, index=False)
            text = None
    except OSError as error:
        raise CLIError(f"cannot export to {output}: {error.strerror or error}") from None
    if target is None:
        sys.stdout.write((text or "") + ("" if (text or "").endswith("\n") else "\n"))
        sys.stdout.flush()
    else:
        print(f"wrote {len(frame)} rows to {output} ({chosen})", file=sys.stderr)
