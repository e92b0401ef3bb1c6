"""The text the PostgreSQL backend sends, without the driver: the connection parameters
of a URL, ``?`` placeholders as psycopg's ``%s``, and Arrow batches as the column types
and the CSV or binary data of a ``COPY``.

Pure functions; ``postgres_backend`` is the only module that talks to the server.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Mapping
from typing import Any

import numpy as np
import pgpq
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import sqlalchemy as sa
from sqlalchemy.engine import make_url

__all__ = [
    "PREFER_LZ4",
    "binary_copy",
    "conninfo",
    "copy_statement",
    "csv_bytes",
    "pg_type",
    "to_pyformat",
]

#: Run on each new connection, outside any transaction. The raw payloads (1.8 KB on
#: average) are long enough that 40 % of their rows are compressed on insert: with lz4
#: instead of the default pglz, the COPY into ``raw_cdr_details`` took a quarter less
#: server CPU (benchmarks/ANALYSIS.md). Storage only: the text read back is the same. A
#: server built without lz4 does not list it, and keeps its default.
PREFER_LZ4 = """
SELECT set_config('default_toast_compression', 'lz4', false)
FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)
"""


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


# --- COPY ... (FORMAT binary) ------------------------------------------------------------
# The server's side of a binary COPY reads each value as it is stored: no CSV quoting to
# undo (the raw payloads' JSON is full of quotes) and no timestamp text to parse (three
# per step and per origination). Measured per 10,000 calls: call_flow_steps 0.28 -> 0.20
# and originations 0.42 -> 0.29 server CPU s (benchmarks/ANALYSIS.md). Each column is
# encoded whole by Arrow and numpy kernels; no Python object per value.

_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, no header extension
_TRAILER = b"\xff\xff"
_NULL = pa.scalar(b"\xff\xff\xff\xff", pa.large_binary())  # length -1
_EMPTY = pa.scalar(b"", pa.large_binary())
#: PostgreSQL's epoch (2000-01-01) in Unix microseconds and in Unix days.
_EPOCH_US = 946_684_800_000_000
_EPOCH_DAYS = 10_957
_INT_RANGE = {2: (-(2**15), 2**15 - 1), 4: (-(2**31), 2**31 - 1), 8: (-(2**63), 2**63 - 1)}


def _raw(values: np.ndarray) -> pa.Array:
    """Each element of ``values`` as its bytes in memory (no copy of them)."""
    width = values.dtype.itemsize
    offsets = np.arange(0, (len(values) + 1) * width, width, dtype=np.int64)
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(values))]
    return pa.LargeBinaryArray.from_buffers(pa.large_binary(), len(values), buffers)


def _lengths(lengths: np.ndarray, valid: pa.Array | None) -> pa.Array:
    """The length fields of a column: ``lengths``, -1 where ``valid`` is false (NULL)."""
    if valid is not None:
        lengths = np.where(valid.to_numpy(zero_copy_only=False), lengths, -1)
    return _raw(lengths.astype(">i4"))


def _fixed(values: np.ndarray, valid: pa.Array | None) -> list[pa.Array]:
    """Fixed-width big-endian ``values`` as binary COPY fields (length, then the value);
    NULL where ``valid`` is false."""
    if valid is not None:
        kept = pc.if_else(valid, _raw(values), _EMPTY)
        return [_lengths(np.full(len(values), values.dtype.itemsize), valid), kept]
    fields = np.empty(len(values), dtype=[("length", ">i4"), ("value", values.dtype)])
    fields["length"] = values.dtype.itemsize
    fields["value"] = values
    return [_raw(fields)]


def _numeric(column: pa.Array, precision: int, scale: int) -> np.ndarray:
    """Decimals as PostgreSQL's binary ``numeric``: digit count, weight, sign, display
    scale, then base-10,000 digits (a fixed count of them: the server drops the leading
    and trailing zero digits itself)."""
    # The unscaled values: with 18 digits at most, the low half of each 128-bit integer.
    pairs = np.frombuffer(column.buffers()[1], dtype="<i8").reshape(-1, 2)
    unscaled = pairs[column.offset : column.offset + len(column), 0]
    fraction_digits = -(-scale // 4)
    integer_digits = max(1, -(-(precision - scale) // 4))
    count = integer_digits + fraction_digits
    magnitude = np.abs(unscaled) * 10 ** (-scale % 4)  # whole base-10,000 digits
    layout = [("ndigits", ">i2"), ("weight", ">i2"), ("sign", ">u2"), ("dscale", ">i2")]
    out = np.empty(len(unscaled), dtype=[*layout, ("digits", ">i2", (count,))])
    out["ndigits"] = count
    out["weight"] = integer_digits - 1
    out["sign"] = np.where(unscaled < 0, 0x4000, 0)
    out["dscale"] = scale
    for position in range(count - 1, -1, -1):
        out["digits"][:, position] = magnitude % 10_000
        magnitude //= 10_000
    return out


def _fields(column: pa.Array, int_bytes: int) -> list[pa.Array] | None:
    """One column as binary COPY fields (the pieces each row's field is made of), or
    ``None`` for a type without an encoder here."""
    kind = column.type
    if isinstance(kind, pa.BaseExtensionType):
        if kind.extension_name != "arrow.json":
            return None
        column, kind = column.storage, kind.storage_type  # json's binary form is its text
    valid = pc.is_valid(column) if column.null_count else None
    if kind in (pa.string(), pa.large_string(), pa.binary(), pa.large_binary()):
        data = column.cast(pa.large_binary())
        if valid is not None:
            data = pc.fill_null(data, _EMPTY)
        return [_lengths(pc.binary_length(data).to_numpy(), valid), data]
    if kind == pa.null():
        return [pa.repeat(_NULL, len(column))]
    if pa.types.is_timestamp(kind):
        micros = column.cast(pa.timestamp("us", kind.tz)).cast(pa.int64())
        values = pc.fill_null(micros, _EPOCH_US).to_numpy() - _EPOCH_US
        return _fixed(values.astype(">i8"), valid)
    if kind == pa.date32():
        days = pc.fill_null(column.cast(pa.int32()), 0).to_numpy() - _EPOCH_DAYS
        return _fixed(days.astype(">i4"), valid)
    if kind == pa.bool_():
        flags = pc.fill_null(column, False).to_numpy(zero_copy_only=False)
        return _fixed(flags.astype("u1"), valid)
    if pa.types.is_decimal128(kind):
        # whole base-10,000 digits, and the unscaled values times 10**pad within int64
        pad = -kind.scale % 4
        if kind.scale < 0 or kind.precision + pad > 18:
            return None
        return _fixed(_numeric(column, kind.precision, kind.scale), valid)
    if pa.types.is_integer(kind) and int_bytes in _INT_RANGE:
        values = pc.fill_null(column, 0).to_numpy().astype(np.int64)
        low, high = _INT_RANGE[int_bytes]
        if len(values) and (values.min() < low or values.max() > high):
            return None  # out of the column's range: CSV, and the server's own error
        return _fixed(values.astype(f">i{int_bytes}"), valid)
    return None


def binary_copy(batch: pa.Table, int_bytes: Mapping[str, int] | None = None) -> bytes | None:
    """``batch`` as the data of a ``COPY ... FROM STDIN (FORMAT binary)``, or ``None`` when
    a column has a type this encoder does not write (a float, a decimal of more than 18
    digits) or a value beyond its integer column's type: send CSV instead.

    Two encoders write the same values: pgpq's (Rust, row by row: cheap per field) for
    batches of many short fields, and :func:`_columns_copy` (Arrow kernels over whole
    columns: cheap per byte) for batches of long texts (the raw payloads, 1.8 KB each).
    Per 1,000-call batch (CPU ms, ours / pgpq): ``raw_cdr_details`` 1.6 / 4.6, ``cdrs``
    1.6 / 0.4, ``call_flow_steps`` 2.0 / 0.7, ``originations`` 2.5 / 0.8
    (``benchmarks/ANALYSIS.md``).

    Args:
        int_bytes: the width (2, 4 or 8) of each integer column's PostgreSQL type, by
            name; by default its Arrow type's, as :func:`pg_type` types it.
    """
    widths = int_bytes
    if widths is None:
        integers = [f for f in batch.schema if pa.types.is_integer(f.type)]
        widths = {f.name: f.type.bit_width // 8 for f in integers}
    fields = batch.num_rows * batch.num_columns
    if batch.num_columns and batch.nbytes < LONG_FIELD_BYTES * fields:
        data = _pgpq_copy(batch, widths)
        if data is not None:
            return data
    return _columns_copy(batch, widths)


#: Average bytes per field above which a batch is encoded column by column (see
#: :func:`binary_copy`): the raw payloads' batches have about 470, the others under 40.
LONG_FIELD_BYTES = 200
_PGPQ_INTS = {2: pa.int16(), 4: pa.int32(), 8: pa.int64()}


def _pgpq_copy(batch: pa.Table, widths: Mapping[str, int]) -> bytes | None:
    """``batch`` through pgpq's encoder, or ``None`` for what :func:`_fields` would not
    encode either (each column cast first to the exact type of its PostgreSQL column)."""
    columns = []
    for name, column in zip(batch.column_names, batch.columns, strict=True):
        kind = column.type
        if isinstance(kind, pa.BaseExtensionType):
            if kind.extension_name != "arrow.json":
                return None
            column = column.cast(kind.storage_type)  # json's binary form is its text
        elif pa.types.is_integer(kind):
            if widths.get(name) not in _PGPQ_INTS:
                return None
            try:  # a safe cast: a value beyond the column's type raises
                column = column.cast(_PGPQ_INTS[widths[name]])
            except pa.ArrowInvalid:
                return None
        elif kind == pa.null():
            column = column.cast(pa.string())  # NULL's field is the same in every type
        elif pa.types.is_timestamp(kind):
            column = column.cast(pa.timestamp("us", kind.tz))
        elif not (
            kind in (pa.string(), pa.large_string(), pa.date32(), pa.bool_())
            or (pa.types.is_decimal128(kind) and kind.scale >= 0 and kind.precision <= 18)
        ):
            return None
        columns.append(column)
    table = pa.Table.from_arrays(columns, names=batch.column_names)
    encoder = pgpq.ArrowToPostgresBinaryEncoder(table.schema)
    return b"".join(
        [encoder.write_header(), *map(encoder.write_batch, table.to_batches()), encoder.finish()]
    )


def _columns_copy(batch: pa.Table, widths: Mapping[str, int]) -> bytes | None:
    """``batch`` encoded column by column with Arrow kernels (:func:`_fields`), or ``None``
    for a type or value it does not encode."""
    pieces = [pa.scalar(batch.num_columns.to_bytes(2, "big"), pa.large_binary())]
    for name, column in zip(batch.column_names, batch.columns, strict=True):
        fields = _fields(column.combine_chunks(), widths.get(name, 0))
        if fields is None:
            return None
        pieces += fields
    rows = pc.binary_join_element_wise(*pieces, _EMPTY)
    if isinstance(rows, pa.Scalar):  # no column at all
        return None
    offsets = np.frombuffer(rows.buffers()[1], dtype=np.int64)
    first, last = offsets[rows.offset], offsets[rows.offset + len(rows)]
    return b"".join((_HEADER, memoryview(rows.buffers()[2])[first:last], _TRAILER))


def copy_statement(name: str, rows: pa.Table, table: sa.Table | None = None) -> tuple[str, bytes]:
    """The ``COPY ... FROM STDIN`` of ``rows`` into the table ``name``, and its data: binary
    unless a column needs CSV (:func:`binary_copy`). ``table``: the schema's table, whose
    integer types give the integer columns' widths (by default the Arrow types do)."""
    widths = None
    if table is not None:
        integers = [c for c in table.columns if isinstance(c.type, sa.Integer)]
        widths = {c.name: _width(c.type) for c in integers}
    data, kind = binary_copy(rows, widths), "binary"
    if data is None:
        data, kind = csv_bytes(rows), "csv"
    return f"COPY {name} ({', '.join(rows.column_names)}) FROM STDIN (FORMAT {kind})", data


def _width(kind: sa.types.TypeEngine[Any]) -> int:
    """Bytes of an integer column's PostgreSQL type."""
    if isinstance(kind, sa.BigInteger):
        return 8
    return 2 if isinstance(kind, sa.SmallInteger) else 4


def conninfo(url: str) -> dict[str, Any]:
    """libpq connection parameters of a SQLAlchemy URL (``?host=/socket`` included)."""
    parsed = make_url(url)
    params: dict[str, Any] = parsed.translate_connect_args(username="user", database="dbname")
    for key, value in parsed.query.items():
        params[key] = value[-1] if isinstance(value, tuple) else value
    return params
