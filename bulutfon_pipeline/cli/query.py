"""`bulutfon-pipeline sql`: a query on the analysts' copy, as a table or an export."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import cast

from bulutfon_pipeline.cli.errors import CLIError
from bulutfon_pipeline.cli.output import print_rows
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


def run_sql(analytics_path: Path, query: str, *, fmt: str | None, output: str | None) -> None:
    """Run ``query`` and print it as a table, or export it (to ``output`` or stdout).

    Raises:
        CLIError: a missing analysts' file, bad SQL or a bad format/output pair (exit 2).
    """
    chosen = _resolve_format(fmt, output)
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
