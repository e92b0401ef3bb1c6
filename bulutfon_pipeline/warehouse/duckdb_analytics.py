"""Queries on the analysts' file (:mod:`~bulutfon_pipeline.warehouse.publish`), read-only.

What ``bulutfon-pipeline sql`` runs: a query on a read-only connection to the analysts'
copy, which no load ever opens, so it works while a sync runs. Exports go through
DuckDB's own writers (``COPY ... TO``), so CSV quoting, JSON types and Parquet's schema
are DuckDB's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import duckdb

from bulutfon_pipeline.warehouse import Warehouse

__all__ = [
    "EXPORT_FORMATS",
    "AnalyticsQueryError",
    "ExportFormat",
    "QueryResult",
    "export_query",
    "read_only_warehouse",
    "run_query",
]

ExportFormat = Literal["csv", "json", "parquet"]
#: DuckDB's COPY options of each export format (JSON: one array of objects).
EXPORT_FORMATS: dict[str, str] = {
    "csv": "FORMAT csv, HEADER true",
    "json": "FORMAT json, ARRAY true",
    "parquet": "FORMAT parquet",
}


class AnalyticsQueryError(Exception):
    """The analysts' file is missing, or the query failed (message: one line)."""


@dataclass(frozen=True)
class QueryResult:
    """A query's columns and rows."""

    columns: list[str]
    rows: list[tuple[Any, ...]]


def _one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


@contextlib.contextmanager
def _read_only(path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    if not path.is_file():
        raise AnalyticsQueryError(
            f"no analysts' file at {path}: run `bulutfon-pipeline sync` first "
            "(it publishes the copy after each load)"
        )
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as error:
        raise AnalyticsQueryError(f"cannot open {path}: {_one_line(error)}") from None
    try:
        con.execute("SET TimeZone = 'UTC'")
        yield con
    finally:
        con.close()


def _relation(con: duckdb.DuckDBPyConnection, sql: str) -> duckdb.DuckDBPyRelation:
    try:
        relation = con.sql(sql)
    except duckdb.Error as error:
        raise AnalyticsQueryError(f"the query failed: {_one_line(error)}") from None
    if relation is None:
        raise AnalyticsQueryError("the query returned no rows to show; give a SELECT")
    return relation


def run_query(path: Path, sql: str) -> QueryResult:
    """Run ``sql`` on the analysts' file, read-only.

    Raises:
        AnalyticsQueryError: the file is missing, or the query failed (one line).
    """
    with _read_only(path) as con:
        relation = _relation(con, sql)
        try:
            rows = relation.fetchall()
        except duckdb.Error as error:
            raise AnalyticsQueryError(f"the query failed: {_one_line(error)}") from None
        return QueryResult(columns=list(relation.columns), rows=rows)


def export_query(path: Path, sql: str, fmt: ExportFormat, output: Path) -> int:
    """Run ``sql`` on the analysts' file and write its result to ``output`` with DuckDB's
    ``COPY``; the number of rows written.

    Raises:
        AnalyticsQueryError: the file is missing, the query failed or ``output`` cannot be
            written (one line).
    """
    if fmt not in EXPORT_FORMATS:
        raise AnalyticsQueryError(f"unknown format {fmt!r}; use one of {', '.join(EXPORT_FORMATS)}")
    with _read_only(path) as con:
        relation = _relation(con, sql)
        # ``query`` names the relation as a view for this one statement, so the user's
        # SQL is not pasted into the COPY statement.
        target = str(output).replace("'", "''")
        try:
            copied = relation.query(
                "bulutfon_sql_result",
                f"COPY bulutfon_sql_result TO '{target}' ({EXPORT_FORMATS[fmt]})",
            )
            row = copied.fetchall() if copied is not None else []
        except duckdb.Error as error:
            raise AnalyticsQueryError(f"cannot export to {output}: {_one_line(error)}") from None
        return int(row[0][0]) if row else 0


def read_only_warehouse(path: Path) -> Warehouse:
    """A :class:`Warehouse` over the analysts' file whose connections are read-only (for
    its read methods, e.g. ``fetch_frame``: the report reads the marts there)."""

    @contextlib.contextmanager
    def connect() -> Iterator[duckdb.DuckDBPyConnection]:
        con = duckdb.connect(str(path), read_only=True)
        try:
            yield con
        finally:
            con.close()

    return Warehouse(path, connect=connect)
