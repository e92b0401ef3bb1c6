"""The text the PostgreSQL backend sends, without the driver: the connection parameters
of a URL, ``?`` placeholders as psycopg's ``%s``, and Arrow batches as the column types
and CSV of a ``COPY``.

Pure functions; ``postgres_backend`` is the only module that talks to the server.
"""

from __future__ import annotations

import functools
import io
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
from sqlalchemy.engine import make_url

__all__ = ["conninfo", "csv_bytes", "pg_type", "to_pyformat"]


@functools.lru_cache(maxsize=512)
def to_pyformat(sql: str) -> str:
    """``sql`` with its ``?`` placeholders as psycopg's ``%s`` (and ``%`` as ``%%``).

    Quoted text (``'...'``, ``"..."``) and ``--`` comments are left as they are, bar the
    ``%`` doubling that psycopg expects everywhere in a query with parameters.
    """
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        char = sql[i]
        if char in "'\"":
            end = sql.find(char, i + 1)
            end = n if end < 0 else end + 1
            out.append(sql[i:end].replace("%", "%%"))
            i = end
            continue
        if sql.startswith("--", i):
            end = sql.find("\n", i)
            end = n if end < 0 else end
            out.append(sql[i:end].replace("%", "%%"))
            i = end
            continue
        out.append("%s" if char == "?" else "%%" if char == "%" else char)
        i += 1
    return "".join(out)


_PG_TYPES: dict[pa.DataType, str] = {
    pa.string(): "text",
    pa.large_string(): "text",
    pa.bool_(): "boolean",
    pa.int64(): "bigint",
    pa.int32(): "integer",
    pa.int16(): "smallint",
    pa.float64(): "double precision",
    pa.date32(): "date",
    pa.null(): "text",
}


def pg_type(kind: pa.DataType) -> str:
    """The PostgreSQL type of a batch column of Arrow type ``kind``."""
    if isinstance(kind, pa.BaseExtensionType) and kind.extension_name == "arrow.json":
        return "json"
    if pa.types.is_timestamp(kind):
        return "timestamptz" if kind.tz else "timestamp"
    if pa.types.is_decimal(kind):
        return f"numeric({kind.precision}, {kind.scale})"
    if kind in _PG_TYPES:
        return _PG_TYPES[kind]
    raise TypeError(f"no PostgreSQL type for the Arrow type {kind}")


def _plain(column: pa.ChunkedArray) -> pa.ChunkedArray:
    kind = column.type
    if isinstance(kind, pa.BaseExtensionType):
        return column.cast(kind.storage_type)
    if pa.types.is_timestamp(kind) and kind.tz is not None:
        if kind.tz not in ("UTC", "+00:00"):
            column = column.cast(pa.timestamp(kind.unit, tz="UTC"))
        return column.cast(pa.timestamp(kind.unit))
    return column


def csv_bytes(batch: pa.Table) -> bytes:
    """``batch`` as CSV without header: NULL is an empty unquoted field, strings are
    always quoted (so an empty string stays one), JSON text is written as it is.

    UTC instants are written without their zone: Arrow formats zoned timestamps ten times
    slower (3 µs a value, most of a batch's CSV time), and every connection of the
    backend runs with ``TimeZone=UTC``, so PostgreSQL reads them back as the same instants.
    """
    columns = [_plain(column) for column in batch.columns]
    plain = pa.Table.from_arrays(columns, names=batch.column_names)
    sink = io.BytesIO()
    pa_csv.write_csv(plain, sink, pa_csv.WriteOptions(include_header=False))
    return sink.getvalue()


def conninfo(url: str) -> dict[str, Any]:
    """libpq connection parameters of a SQLAlchemy URL (``?host=/socket`` included)."""
    parsed = make_url(url)
    params: dict[str, Any] = parsed.translate_connect_args(username="user", database="dbname")
    for key, value in parsed.query.items():
        params[key] = value[-1] if isinstance(value, tuple) else value
    return params
