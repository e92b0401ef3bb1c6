"""DuckDB loader: idempotent upserts of normalised frames, pipeline state, rejects.

Exceptions::

    WarehouseError            any warehouse failure, one line, no secrets
     └── WarehouseLockedError another process kept the DuckDB file locked too long

Every public method runs in one transaction on a connection opened just for it, so
several processes can take turns on the file (DuckDB admits one writer process at a
time; :meth:`Warehouse.transaction` waits, with backoff, while another holds the lock).

Frames are bulk-inserted through Arrow tables whose types come from the SQLAlchemy
schema (:mod:`bulutfon_pipeline.warehouse.schema`), always ``INSERT ... BY NAME``. No SQL
is ever built from API values: they travel as parameters or registered Arrow tables.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import duckdb
import pandas as pd
import pyarrow as pa
import sqlalchemy as sa

from bulutfon_pipeline import jsonio
from bulutfon_pipeline.faults import crash_point
from bulutfon_pipeline.normalize import (
    NormalizedDetails,
    NormalizedListing,
    Reject,
    normalize_details,
)
from bulutfon_pipeline.settings import DUCKDB_CHECKPOINT_THRESHOLD, DUCKDB_MEMORY_LIMIT
from bulutfon_pipeline.warehouse import changes, schema
from bulutfon_pipeline.warehouse.views import create_views

__all__ = [
    "DetailLoadResult",
    "ListingLoadResult",
    "ListingStage",
    "RecordingCandidate",
    "RecordingRow",
    "ReplayResult",
    "Warehouse",
    "WarehouseError",
    "WarehouseLockedError",
]

Connect = Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]]
RawPayload = Mapping[str, Any] | str | bytes

#: Stages whose rejects a successful detail load of the same uuid supersedes.
_DETAIL_STAGES = ("detail", "normalize")
_LOCK_MESSAGES = ("could not set lock", "conflicting lock")
_BACKOFF_FIRST_S = 0.02
_BACKOFF_MAX_S = 1.0


class WarehouseError(Exception):
    """The warehouse could not be opened, read or written (message: one line)."""


class WarehouseLockedError(WarehouseError):
    """Another process held the DuckDB file lock for longer than ``lock_timeout_s``."""


@dataclass(frozen=True)
class ListingLoadResult:
    """What :meth:`Warehouse.finish_listing_scan` (or :meth:`~Warehouse.upsert_listing`) did.

    Attributes:
        new: uuids not listed before.
        updated: uuids listed before whose listed fields changed.
        unchanged: uuids listed before, unchanged (only ``last_seen_at`` moved).
        rejected: listing rejects written.
        high_water_mark: the committed ``listing_high_water_mark`` after the load.
        days_touched: the distinct local ``call_date`` of the rows loaded, ascending.
    """

    new: int
    updated: int
    unchanged: int
    rejected: int
    high_water_mark: datetime | None
    days_touched: tuple[date, ...] = ()


@dataclass
class ListingStage:
    """A listing scan in progress, whose rows wait in ``_cdr_listing_stage``.

    Made by :meth:`Warehouse.begin_listing_scan`; :meth:`Warehouse.stage_listing` counts
    what it stages here, and :meth:`Warehouse.finish_listing_scan` checks the count.

    Attributes:
        scan_id: keys this scan's staged rows.
        high_water_mark: the committed mark when the scan began.
        cleared: staged rows of earlier scans (killed mid-scan) deleted at the start.
        staged_rows: rows staged so far.
        chunks: staging transactions so far.
    """

    scan_id: str
    high_water_mark: datetime | None
    cleared: int = 0
    staged_rows: int = 0
    chunks: int = 0


@dataclass(frozen=True)
class DetailLoadResult:
    """What :meth:`Warehouse.load_details` did.

    Attributes:
        new: calls without a ``cdrs`` row before.
        updated: calls whose ``cdrs`` row (and child rows) were replaced.
        rejected: rejects written (``normalize`` and ``detail`` stages).
        raw_stored: raw payloads upserted into ``raw_cdr_details``.
        call_flow_steps: step rows inserted.
        originations: origination rows inserted.
        changes: ``cdr_changes`` rows written (fields of stored calls that changed,
            recording files deleted).
        recordings_deleted: recording files (and rows) deleted, removed at the source.
    """

    new: int
    updated: int
    rejected: int
    raw_stored: int
    call_flow_steps: int
    originations: int
    changes: int = 0
    recordings_deleted: int = 0


@dataclass(frozen=True)
class LoadProgress:
    """Where the loads stand: what is committed since an instant and what is still to do.

    Attributes:
        loaded_since: ``cdrs`` rows written by transactions committed since the instant.
        pending_calls: listed calls with neither a ``cdrs`` row nor a reject.
        pending_days: the distinct local days of those calls, ascending.
    """

    loaded_since: int
    pending_calls: int
    pending_days: tuple[date, ...]


@dataclass(frozen=True)
class ReplayResult:
    """What :meth:`Warehouse.replay_raw` did: payloads read, and the load it made."""

    payloads: int
    load: DetailLoadResult


@dataclass(frozen=True)
class RecordingRow:
    """One ``call_recordings`` row: a recording stored under BULUTFON_DATA_DIR.

    Attributes:
        path: the file, relative to BULUTFON_DATA_DIR (``recordings/YYYY/MM/DD/<uuid>.wav``).
    """

    cdr_uuid: str
    path: str
    content_type: str | None
    bytes: int
    sha256: str
    downloaded_at: datetime


@dataclass(frozen=True)
class RecordingCandidate:
    """A call of :meth:`Warehouse.recording_candidates`, with its stored row if any."""

    uuid: str
    call_date: date
    call_record: str | None
    has_recording: bool
    stored: RecordingRow | None


# --- Arrow conversion driven by the SQLAlchemy schema -----------------------------------


def _arrow_type(column: sa.Column[Any]) -> pa.DataType:
    kind = column.type
    if isinstance(kind, sa.DateTime):
        return pa.timestamp("us", tz="UTC")
    if isinstance(kind, sa.Date):
        return pa.date32()
    if isinstance(kind, sa.Boolean):
        return pa.bool_()
    if isinstance(kind, sa.Integer):
        return pa.int64()  # widened on purpose; DuckDB casts to the column's INTEGER
    if isinstance(kind, sa.Numeric):
        return pa.decimal128(kind.precision or 18, kind.scale or 0)
    return pa.string()  # String, JSON (as text)


def _to_arrow(frame: pd.DataFrame, table: sa.Table) -> pa.Table:
    """``frame``'s columns that belong to ``table``, typed exactly as the table.

    Column by column: ``pa.Table.from_pandas`` spent half of this conversion's time on
    its per-frame bookkeeping (pandas metadata, a thread pool), 600 times per 100,000
    calls.
    """
    fields = [pa.field(c.name, _arrow_type(c)) for c in table.columns if c.name in frame]
    arrays = [pa.Array.from_pandas(frame[f.name], type=f.type) for f in fields]
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _utc(instant: datetime, what: str) -> datetime:
    if instant.tzinfo is None:
        raise ValueError(f"{what} must be timezone-aware, got {instant!r}")
    return instant.astimezone(UTC)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _is_lock_error(exc: duckdb.Error) -> bool:
    message = str(exc).lower()
    return any(marker in message for marker in _LOCK_MESSAGES)


def _payload_text(payload: RawPayload) -> str:
    """The payload's JSON text, known valid: stored as DuckDB's JSON type without DuckDB
    parsing it again (``_json_array``)."""
    if isinstance(payload, jsonio.JSONObject):  # the exact text the client received
        return payload.text
    if isinstance(payload, bytes | str):
        jsonio.decode(payload)  # JSONDecodeError (a ValueError) if it is not JSON
        return payload.decode("utf-8") if isinstance(payload, bytes) else payload
    return jsonio.encode_text(payload)


def _json_array(texts: list[str]) -> pa.Array:
    """Valid JSON texts as an Arrow ``arrow.json`` array, which DuckDB takes as its JSON
    type as it is: a plain string column would be parsed once more to validate it, 0.7 s
    per 20,000 payloads."""
    return pa.ExtensionArray.from_storage(pa.json_(), pa.array(texts, pa.string()))


def _scalar(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] = ()) -> Any:
    row = con.execute(sql, list(params)).fetchone()
    return None if row is None else row[0]


def _upsert(
    con: duckdb.DuckDBPyConnection,
    table: sa.Table,
    batch: str,
    *,
    keep: Sequence[str] = (),
    set_sql: Mapping[str, str] | None = None,
) -> None:
    """Upsert the registered ``batch`` (unique keys) into ``table`` by its key.

    The key is the metadata's primary key, whether or not the DDL enforces it
    (:data:`~bulutfon_pipeline.warehouse.schema.UNENFORCED_KEY_TABLES`).

    ``UPDATE ... FROM`` the rows that exist, then ``INSERT ... BY NAME`` the others.
    DuckDB's ``INSERT OR REPLACE`` / ``ON CONFLICT`` is pathologically slow on
    composite keys arriving out of storage order (20 s for 350k rows), and delete +
    re-insert of the same keys makes its COMMIT slow; this form takes well under 1 s.

    Args:
        keep: non-key columns an update leaves alone (e.g. ``first_seen_at``).
        set_sql: SQL expressions (over ``t`` = stored row, ``b`` = batch row) for some
            updated columns; default ``b.<column>``.

    Identifiers come from the schema metadata, never from data; values travel only in
    the registered batch.
    """
    keys = schema.key_columns(table)
    expressions = dict(set_sql or {})
    assignments = ", ".join(
        f"{column.name} = {expressions.get(column.name, 'b.' + column.name)}"
        for column in table.columns
        if column.name not in keys and column.name not in keep
    )
    match = " AND ".join(f"t.{key} = b.{key}" for key in keys)
    con.execute(
        f"UPDATE {table.name} AS t SET {assignments} FROM {batch} AS b WHERE {match}"  # noqa: S608
    )
    con.execute(
        f"INSERT INTO {table.name} BY NAME SELECT b.* FROM {batch} AS b "  # noqa: S608
        f"WHERE NOT EXISTS (SELECT 1 FROM {table.name} AS t WHERE {match})"
    )


class _Session:
    """The connection a :meth:`Warehouse.session` holds, and since when."""

    def __init__(self, max_hold_s: float) -> None:
        self.max_hold_s = max_hold_s
        self.manager: AbstractContextManager[duckdb.DuckDBPyConnection] | None = None
        self.con: duckdb.DuckDBPyConnection | None = None
        self.since = 0.0

    def release(self) -> None:
        manager, self.manager, self.con = self.manager, None, None
        if manager is not None:
            manager.__exit__(None, None, None)


class Warehouse:
    """The DuckDB warehouse file and every write the pipeline makes to it.

    Args:
        path: the DuckDB database file. Its folder must exist.
        connect: optional factory of a context manager yielding a connection (e.g. a
            dagster-duckdb resource's ``get_connection``); default ``duckdb.connect(path)``,
            closed at the end of each transaction.
        lock_timeout_s: how long to wait while another process holds the file lock.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        connect: Connect | None = None,
        lock_timeout_s: float = 120.0,
    ) -> None:
        self.path = Path(path)
        self.lock_timeout_s = lock_timeout_s
        self._connect: Connect = connect or self._default_connect
        self._session: _Session | None = None
        #: Seam for tests: how to wait between lock attempts.
        self._sleep: Callable[[float], None] = time.sleep

    def __repr__(self) -> str:
        return f"Warehouse({str(self.path)!r})"

    # --- connections and transactions ------------------------------------------------

    @contextmanager
    def _default_connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        config: dict[str, str | bool | int | float | list[str]] = {
            "memory_limit": DUCKDB_MEMORY_LIMIT,
            "checkpoint_threshold": DUCKDB_CHECKPOINT_THRESHOLD,
        }
        con = duckdb.connect(str(self.path), config=config)
        try:
            yield con
        finally:
            con.close()

    @contextmanager
    def session(self, max_hold_s: float = 5.0) -> Iterator[None]:
        """Reuse one connection for the transactions inside the block.

        Opening the file and closing it (which checkpoints the WAL into the file) cost
        more than writing a 500-call batch, so a load of many batches keeps its
        connection; it still lets go of the file once it has held it ``max_hold_s``
        (at the end of the transaction then running), so other processes get turns.
        Nested sessions join the outer one.
        """
        if self._session is not None:
            yield
            return
        self._session = session = _Session(max_hold_s)
        try:
            yield
        finally:
            self._session = None
            session.release()

    @contextmanager
    def _connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The session's connection when a :meth:`session` is open, else a new one."""
        session = self._session
        if session is None:
            with self._open_connection() as con:
                yield con
            return
        if session.manager is None:
            manager = self._open_connection()
            session.con = manager.__enter__()
            session.manager, session.since = manager, time.monotonic()
        assert session.con is not None
        try:
            yield session.con
        except BaseException:
            session.release()
            raise
        if time.monotonic() - session.since >= session.max_hold_s:
            session.release()

    @contextmanager
    def _open_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection, waiting with exponential backoff while the file is locked."""
        deadline = time.monotonic() + self.lock_timeout_s
        delay = _BACKOFF_FIRST_S
        while True:
            manager = self._connect()
            try:
                con = manager.__enter__()
            except duckdb.Error as exc:
                if not _is_lock_error(exc):
                    raise WarehouseError(
                        f"cannot open warehouse {self.path}: {_one_line(exc)}"
                    ) from exc
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WarehouseLockedError(
                        f"warehouse {self.path} is locked by another process; "
                        f"gave up after {self.lock_timeout_s:g}s"
                    ) from exc
                self._sleep(min(delay * (0.5 + random.random() / 2), remaining))
                delay = min(delay * 2, _BACKOFF_MAX_S)
                continue
            break
        try:
            yield con
        except BaseException as exc:
            if not manager.__exit__(type(exc), exc, exc.__traceback__):
                raise
        else:
            manager.__exit__(None, None, None)

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open the file, ``BEGIN``, yield the connection, ``COMMIT`` (``ROLLBACK`` on error).

        The session time zone is UTC so TIMESTAMPTZ values round-trip exactly.

        Raises:
            WarehouseLockedError: the file stayed locked for ``lock_timeout_s``.
            WarehouseError: any DuckDB failure (the transaction is rolled back, so the last
                committed state stays intact). Other exceptions propagate after rollback.
        """
        with self._connection() as con:
            try:
                con.execute("SET TimeZone = 'UTC'")
                con.execute("BEGIN TRANSACTION")
            except duckdb.Error as exc:
                raise WarehouseError(f"warehouse {self.path}: {_one_line(exc)}") from exc
            try:
                yield con
            except BaseException as exc:
                with suppress(duckdb.Error):  # a failed statement may have aborted it already
                    con.execute("ROLLBACK")
                if isinstance(exc, duckdb.Error):
                    raise WarehouseError(f"warehouse {self.path}: {_one_line(exc)}") from exc
                raise
            try:
                con.execute("COMMIT")
            except duckdb.Error as exc:
                with suppress(duckdb.Error):
                    con.execute("ROLLBACK")
                raise WarehouseError(
                    f"warehouse {self.path}: commit failed: {_one_line(exc)}"
                ) from exc

    # --- schema ----------------------------------------------------------------------

    def ensure_schema(self) -> None:
        """Create missing tables (from the SQLAlchemy metadata) and (re)create the views.

        Idempotent.

        Raises:
            WarehouseError: the file's folder does not exist, or DuckDB failed.
        """
        if not self.path.parent.is_dir():
            raise WarehouseError(
                f"warehouse folder {self.path.parent} does not exist (for {self.path})"
            )
        with self.transaction() as con:
            for statement in schema.create_table_statements():
                con.execute(statement)
            create_views(con)

    # --- listing ---------------------------------------------------------------------
    #
    # A scan stages its pages in chunks (:meth:`stage_listing`, one short transaction
    # each, so the file is not held while the API is paged) and merges them in one last
    # transaction (:meth:`finish_listing_scan`) that also moves the high-water mark and
    # deletes the staged rows: until that COMMIT, ``cdr_listing`` and the mark are exactly
    # as before the scan, and the scan's memory is bounded by a chunk, not the listing.

    def begin_listing_scan(self) -> ListingStage:
        """Start a listing scan: delete what earlier scans left staged; read the mark.

        Staged rows of another scan are those of a scan killed before its last
        transaction: nothing of them was committed to ``cdr_listing``. (Were that scan
        still running, its :meth:`finish_listing_scan` would find its rows gone and
        fail, committing nothing.)

        Returns:
            The new scan, with the committed high-water mark.
        """
        with self.transaction() as con:
            (cleared,) = con.execute(
                f"DELETE FROM {schema.cdr_listing_stage.name}"  # noqa: S608
            ).fetchone() or (0,)
            mark = self._read_high_water_mark(con)
        return ListingStage(scan_id=uuid4().hex, high_water_mark=mark, cleared=int(cleared))

    def stage_listing(self, stage: ListingStage, frame: pd.DataFrame) -> int:
        """Stage one chunk of a scan's listing rows, in its own transaction.

        Args:
            stage: the scan (:meth:`begin_listing_scan`); its counts are updated.
            frame: :data:`~bulutfon_pipeline.normalize.LISTING_COLUMNS` plus ``page``, the
                page's 1-based position in the scan; unique uuids within a page. A uuid
                staged from two pages keeps the row of the lower ``page``.

        Returns:
            Rows staged.

        Raises:
            WarehouseError: the write failed and was rolled back.
        """
        if not len(frame):
            return 0
        with self.transaction() as con:
            staged = self._stage_rows(con, stage, frame)
        stage.staged_rows += staged
        stage.chunks += 1
        return staged

    @staticmethod
    def _stage_rows(
        con: duckdb.DuckDBPyConnection, stage: ListingStage, frame: pd.DataFrame
    ) -> int:
        table = schema.cdr_listing_stage
        con.register("stage_batch", _to_arrow(frame.assign(scan_id=stage.scan_id), table))
        con.execute(f"INSERT INTO {table.name} BY NAME SELECT * FROM stage_batch")  # noqa: S608
        con.unregister("stage_batch")
        return len(frame)

    def finish_listing_scan(
        self,
        stage: ListingStage,
        rest: pd.DataFrame | None = None,
        *,
        rejects: Sequence[Reject] = (),
        seen_at: datetime,
    ) -> ListingLoadResult:
        """Merge a scan's staged rows into ``cdr_listing`` and move the mark, in ONE transaction.

        Stages ``rest`` (the last, partial chunk) first, in the same transaction. A uuid
        staged from two pages keeps its row from the first (newest) page. New uuids get
        ``first_seen_at = last_seen_at = seen_at``; known ones keep ``first_seen_at`` and
        move ``last_seen_at`` forward. ``listing_high_water_mark`` becomes the newest
        ``call_time`` ever listed; the listing rejects are written; the scan's staged rows
        are deleted.

        Args:
            stage: the scan (:meth:`begin_listing_scan`).
            rest: rows not staged yet, as for :meth:`stage_listing`.
            rejects: the scan's listing rejects.
            seen_at: when the listing was read (aware).

        Returns:
            Counts, the committed high-water mark and the local days of the rows.

        Raises:
            WarehouseError: the load failed and was rolled back, e.g. because another scan
                cleared this scan's staged rows meanwhile.
        """
        seen_at = _utc(seen_at, "seen_at")
        with self.transaction() as con:
            expected = stage.staged_rows
            if rest is not None and len(rest):
                expected += self._stage_rows(con, stage, rest)
            result = self._merge_listing_stage(con, stage.scan_id, expected, seen_at)
            rejected = self._write_rejects(con, rejects)
            crash_point("before_watermark_commit", duckdb.IOException)
        crash_point("after_watermark_commit")
        return dataclasses.replace(result, rejected=rejected)

    def _merge_listing_stage(
        self, con: duckdb.DuckDBPyConnection, scan_id: str, expected: int, seen_at: datetime
    ) -> ListingLoadResult:
        staged = _scalar(
            con, "SELECT count(*) FROM _cdr_listing_stage WHERE scan_id = ?", [scan_id]
        )
        if staged != expected:
            raise WarehouseError(
                f"warehouse {self.path}: {expected - staged} of the {expected} listing rows "
                "this scan staged are gone (another listing scan started meanwhile); "
                "nothing was committed, run the scan again"
            )
        # One row per uuid: the copy from the first (newest) page the scan saw it on.
        con.execute(
            """
            CREATE OR REPLACE TEMP TABLE listing_scan AS
            SELECT uuid, call_time, call_date, direction, caller, callee,
                   $seen_at AS first_seen_at, $seen_at AS last_seen_at
            FROM _cdr_listing_stage WHERE scan_id = $scan_id
            QUALIFY row_number() OVER (PARTITION BY uuid ORDER BY page) = 1
            """,
            {"scan_id": scan_id, "seen_at": seen_at},
        )
        new, updated, unchanged = con.execute(
            """
            SELECT
                count(*) FILTER (WHERE l.uuid IS NULL),
                count(*) FILTER (WHERE l.uuid IS NOT NULL AND (
                    l.call_time IS DISTINCT FROM b.call_time
                    OR l.call_date IS DISTINCT FROM b.call_date
                    OR l.direction IS DISTINCT FROM b.direction
                    OR l.caller IS DISTINCT FROM b.caller
                    OR l.callee IS DISTINCT FROM b.callee)),
                count(*) FILTER (WHERE l.uuid IS NOT NULL AND NOT (
                    l.call_time IS DISTINCT FROM b.call_time
                    OR l.call_date IS DISTINCT FROM b.call_date
                    OR l.direction IS DISTINCT FROM b.direction
                    OR l.caller IS DISTINCT FROM b.caller
                    OR l.callee IS DISTINCT FROM b.callee))
            FROM listing_scan AS b
            LEFT JOIN cdr_listing AS l ON l.uuid = b.uuid
            """
        ).fetchone() or (0, 0, 0)
        if new + updated + unchanged:
            _upsert(
                con,
                schema.cdr_listing,
                "listing_scan",
                keep=("first_seen_at",),
                set_sql={"last_seen_at": "greatest(t.last_seen_at, b.last_seen_at)"},
            )
        newest = _scalar(con, "SELECT max(call_time) FROM listing_scan")
        days = [day for (day,) in con.execute(
            "SELECT DISTINCT call_date FROM listing_scan ORDER BY call_date"
        ).fetchall()]  # fmt: skip
        con.execute("DROP TABLE listing_scan")
        con.execute("DELETE FROM _cdr_listing_stage WHERE scan_id = ?", [scan_id])
        mark = self._advance_high_water_mark(con, newest, seen_at)
        return ListingLoadResult(
            new=new,
            updated=updated,
            unchanged=unchanged,
            rejected=0,
            high_water_mark=mark,
            days_touched=tuple(days),
        )

    def upsert_listing(self, listing: NormalizedListing, *, seen_at: datetime) -> ListingLoadResult:
        """Upsert listed calls, advance the high-water mark and write the listing rejects.

        A whole scan of one frame, in one transaction: the same merge as
        :meth:`finish_listing_scan`. A uuid twice in the frame keeps its last row.

        Args:
            listing: output of :func:`~bulutfon_pipeline.normalize.normalize_listing`.
            seen_at: when the listing was read (aware).

        Returns:
            Counts and the committed high-water mark.

        Raises:
            WarehouseError: the load failed and was rolled back.
        """
        seen_at = _utc(seen_at, "seen_at")
        frame = listing.frame.drop_duplicates("uuid", keep="last").assign(page=1)
        stage = ListingStage(scan_id=uuid4().hex, high_water_mark=None)
        return self.finish_listing_scan(stage, frame, rejects=listing.rejects, seen_at=seen_at)

    @staticmethod
    def _read_high_water_mark(con: duckdb.DuckDBPyConnection) -> datetime | None:
        value = _scalar(
            con, "SELECT value FROM _pipeline_state WHERE key = ?", [schema.HIGH_WATER_MARK_KEY]
        )
        return None if value is None else datetime.fromisoformat(value).astimezone(UTC)

    def _advance_high_water_mark(
        self, con: duckdb.DuckDBPyConnection, newest: datetime | None, now: datetime
    ) -> datetime | None:
        current = self._read_high_water_mark(con)
        if newest is None:
            return current
        newest = newest.astimezone(UTC)
        if current is not None and newest <= current:
            return current
        con.execute(
            """
            INSERT OR REPLACE INTO _pipeline_state (key, value, updated_at) VALUES (?, ?, ?)
            """,
            [schema.HIGH_WATER_MARK_KEY, newest.isoformat(), now],
        )
        return newest

    def high_water_mark(self) -> datetime | None:
        """The newest ``call_time`` ever listed (aware UTC), or ``None`` before any listing."""
        with self.transaction() as con:
            return self._read_high_water_mark(con)

    # --- details ---------------------------------------------------------------------

    def load_details(
        self,
        raw: Sequence[tuple[str, RawPayload]],
        normalized: NormalizedDetails,
        *,
        fetched_at: datetime,
        detail_rejects: Sequence[Reject] = (),
        mirror_recording_deletes: Path | None = None,
    ) -> DetailLoadResult:
        """Load one batch of fetched details in ONE transaction.

        Upserts ``raw_cdr_details`` for every fetched payload, upserts ``cdrs``, replaces
        the ``call_flow_steps``/``originations`` rows of the loaded calls, writes the
        ``normalize`` and ``detail`` rejects and drops earlier such rejects of the calls
        that now loaded. Loading the same batch twice leaves the same tables (bar
        ``cdrs.loaded_at``). Calls that had a ``cdrs`` row get a ``cdr_changes`` row per
        field that changed, and lose their ``_cdr_refetch`` mark
        (:mod:`~bulutfon_pipeline.warehouse.changes`), in the same transaction.

        Args:
            raw: ``(uuid, payload)`` per fetched detail; the payload as decoded JSON or as
                its JSON text (text avoids re-encoding).
            normalized: :func:`~bulutfon_pipeline.normalize.normalize_details` of them.
            fetched_at: when the batch was fetched (aware).
            detail_rejects: failures of the fetch itself (stage ``detail``).
            mirror_recording_deletes: BULUTFON_DATA_DIR, to delete the ``call_recordings``
                row and file of a stored call that no longer has a recording; None keeps them.

        Returns:
            Counts of new/updated calls, rejects and rows written.

        Raises:
            WarehouseError: the load failed and was rolled back.
        """
        fetched_at = _utc(fetched_at, "fetched_at")
        raw_rows: dict[str, str] = {}
        for uuid, payload in raw:
            try:
                raw_rows[uuid] = _payload_text(payload)
            except ValueError as exc:
                raise WarehouseError(f"raw payload of {uuid} is not JSON: {exc}") from exc
        raw_batch = pa.table(
            {
                "uuid": pa.array(list(raw_rows), pa.string()),
                "fetched_at": pa.array([fetched_at] * len(raw_rows), pa.timestamp("us", "UTC")),
                "payload": _json_array(list(raw_rows.values())),
            }
        )
        stored = None
        with self.transaction() as con:
            if raw_rows:
                con.register("raw_batch", raw_batch)
                stored = _scalar(
                    con,
                    "SELECT count(*) FROM raw_cdr_details "
                    "WHERE uuid IN (SELECT uuid FROM raw_batch)",
                )
                if stored:
                    _upsert(con, schema.raw_cdr_details, "raw_batch")
                else:  # first fetch of every call in the batch: no update, no anti-join
                    con.execute("INSERT INTO raw_cdr_details BY NAME SELECT * FROM raw_batch")
                con.unregister("raw_batch")
            # A cdrs row is only ever written with, or after, its call's raw payload, and
            # raw payloads are never deleted: no raw row stored means no cdrs row either,
            # which spares a scan of cdrs per batch (about 3 % of a first load).
            none_stored = stored == 0 and set(normalized.cdrs["uuid"]) <= raw_rows.keys()
            audit = not none_stored and changes.snapshot_before_write(
                con, list(normalized.cdrs["uuid"])
            )
            result = self._write_details(con, normalized, detail_rejects, none_stored=none_stored)
            audited = changes.AuditResult()
            if audit:
                audited = changes.record_changes(
                    con, seen_at=fetched_at, recordings_dir=mirror_recording_deletes
                )
            if not none_stored or detail_rejects:
                changes.clear_refetch(
                    con, [*raw_rows, *(r.uuid for r in detail_rejects if r.uuid is not None)]
                )
            crash_point("details_write", duckdb.IOException)
        return DetailLoadResult(
            new=result.new,
            updated=result.updated,
            rejected=result.rejected,
            raw_stored=len(raw_rows),
            call_flow_steps=result.call_flow_steps,
            originations=result.originations,
            changes=audited.changes,
            recordings_deleted=audited.recordings_deleted,
        )

    def _write_details(
        self,
        con: duckdb.DuckDBPyConnection,
        normalized: NormalizedDetails,
        detail_rejects: Sequence[Reject],
        *,
        none_stored: bool = False,
    ) -> DetailLoadResult:
        """Write the batch's rows; ``none_stored``: the caller knows none of its calls has
        a ``cdrs`` row yet."""
        loaded_at = datetime.now(UTC)
        cdrs = normalized.cdrs
        steps = normalized.call_flow_steps
        originations = normalized.originations
        if cdrs["uuid"].duplicated().any():  # normalize dedupes; guard hand-made batches
            cdrs = cdrs.drop_duplicates("uuid", keep="last")
            steps = steps.drop_duplicates(["cdr_uuid", "step_index"], keep="last")
            originations = originations.drop_duplicates(
                ["cdr_uuid", "step_index", "attempt_index"], keep="last"
            )
        new = updated = existing = 0
        if len(cdrs):
            con.register("cdr_batch", _to_arrow(cdrs.assign(loaded_at=loaded_at), schema.cdrs))
            con.register("step_batch", _to_arrow(steps, schema.call_flow_steps))
            con.register("origination_batch", _to_arrow(originations, schema.originations))
            existing = 0
            if not none_stored:
                existing = _scalar(
                    con, "SELECT count(*) FROM cdrs WHERE uuid IN (SELECT uuid FROM cdr_batch)"
                )
            new, updated = len(cdrs) - existing, existing
        if len(cdrs) and not existing:
            # None of these calls is stored, so neither are their child rows (they are
            # only ever written with their cdrs row, in one transaction): the upserts
            # below reduce to inserts, and their anti-joins against the whole table were
            # most of a batch's write time (BENCHMARKS.md).
            for table, batch in (
                (schema.cdrs, "cdr_batch"),
                (schema.call_flow_steps, "step_batch"),
                (schema.originations, "origination_batch"),
            ):
                con.execute(f"INSERT INTO {table.name} BY NAME SELECT * FROM {batch}")  # noqa: S608
        elif len(cdrs):
            _upsert(con, schema.cdrs, "cdr_batch")
            # The child rows of each loaded call become exactly the batch's rows. Same
            # effect as delete-all + insert, but DuckDB makes a COMMIT that re-inserts
            # deleted primary keys very slow (~10 s per 1M rows), so: delete the rows
            # the new flow no longer has, then upsert the others.
            con.execute(
                """
                DELETE FROM originations AS o
                WHERE o.cdr_uuid IN (SELECT uuid FROM cdr_batch)
                  AND NOT EXISTS (
                      SELECT 1 FROM origination_batch AS b
                      WHERE b.cdr_uuid = o.cdr_uuid AND b.step_index = o.step_index
                        AND b.attempt_index = o.attempt_index)
                """
            )
            con.execute(
                """
                DELETE FROM call_flow_steps AS s
                WHERE s.cdr_uuid IN (SELECT uuid FROM cdr_batch)
                  AND NOT EXISTS (
                      SELECT 1 FROM step_batch AS b
                      WHERE b.cdr_uuid = s.cdr_uuid AND b.step_index = s.step_index)
                """
            )
            _upsert(con, schema.call_flow_steps, "step_batch")
            _upsert(con, schema.originations, "origination_batch")
        if len(cdrs):
            con.execute(
                """
                DELETE FROM load_rejects
                WHERE stage IN (?, ?) AND uuid IN (SELECT uuid FROM cdr_batch)
                """,
                list(_DETAIL_STAGES),
            )
            for name in ("cdr_batch", "step_batch", "origination_batch"):
                con.unregister(name)
        rejected = self._write_rejects(con, [*normalized.rejects, *detail_rejects])
        return DetailLoadResult(
            new=new,
            updated=updated,
            rejected=rejected,
            raw_stored=0,
            call_flow_steps=len(steps),
            originations=len(originations),
        )

    # --- rejects ---------------------------------------------------------------------

    def add_rejects(self, rejects: Sequence[Reject]) -> None:
        """Record rejects (any stage) in their own transaction. Idempotent."""
        with self.transaction() as con:
            self._write_rejects(con, rejects)

    @staticmethod
    def _write_rejects(con: duckdb.DuckDBPyConnection, rejects: Sequence[Reject]) -> int:
        """Write rejects idempotently; returns how many were given (after dedupe).

        A uuid keeps one reject per stage: an identical one already stored is left as is
        (its ``rejected_at`` too), a different one replaces it. Rejects without a uuid
        are kept once per identical (stage, reason, payload).
        """
        unique: dict[tuple[str | None, str, str | None, str | None], Reject] = {}
        for reject in rejects:
            if reject.stage not in schema.REJECT_STAGES:
                raise ValueError(f"unknown reject stage {reject.stage!r}")
            key = (
                (reject.uuid, reject.stage, None, None)
                if reject.uuid is not None
                else (None, reject.stage, reject.reason, reject.payload)
            )
            unique[key] = reject
        if not unique:
            return 0
        batch = pa.table(
            {
                "uuid": pa.array([r.uuid for r in unique.values()], pa.string()),
                "stage": pa.array([r.stage for r in unique.values()], pa.string()),
                "reason": pa.array([r.reason for r in unique.values()], pa.string()),
                "payload": pa.array([r.payload for r in unique.values()], pa.string()),
            }
        )
        con.register("reject_batch", batch)
        con.execute(
            """
            DELETE FROM load_rejects AS r
            USING reject_batch AS b
            WHERE r.uuid = b.uuid AND r.stage = b.stage
              AND (r.reason IS DISTINCT FROM b.reason OR r.payload IS DISTINCT FROM b.payload)
            """
        )
        con.execute(
            """
            INSERT INTO load_rejects BY NAME
            SELECT b.*, ? AS rejected_at FROM reject_batch AS b
            WHERE NOT EXISTS (
                SELECT 1 FROM load_rejects AS r
                WHERE r.uuid IS NOT DISTINCT FROM b.uuid AND r.stage = b.stage
                  AND r.reason = b.reason AND r.payload IS NOT DISTINCT FROM b.payload
            )
            """,
            [datetime.now(UTC)],
        )
        con.unregister("reject_batch")
        return len(unique)

    # --- what is left to fetch ---------------------------------------------------------

    def pending_uuids(self, start: date, end: date, *, refetch: bool = False) -> list[str]:
        """Listed uuids with ``call_date`` in ``[start, end]`` that still need their detail.

        Pending means: no ``cdrs`` row and no ``load_rejects`` row, or marked in
        ``_cdr_refetch`` (its listing changed since it was loaded).

        Args:
            start: first local call date (inclusive).
            end: last local call date (inclusive).
            refetch: every listed uuid of the range, loaded or rejected or not.

        Returns:
            uuids, oldest call first.
        """
        with self.transaction() as con:
            rows = con.execute(
                """
                SELECT l.uuid FROM cdr_listing AS l
                WHERE l.call_date BETWEEN $start AND $end
                  AND ($refetch OR (
                      NOT EXISTS (SELECT 1 FROM cdrs AS c WHERE c.uuid = l.uuid)
                      AND NOT EXISTS (SELECT 1 FROM load_rejects AS r WHERE r.uuid = l.uuid))
                    OR l.uuid IN (SELECT uuid FROM _cdr_refetch))
                ORDER BY l.call_time, l.uuid
                """,
                {"start": start, "end": end, "refetch": refetch},
            ).fetchall()
        return [uuid for (uuid,) in rows]

    def listed_count(self, start: date, end: date) -> int:
        """Listed calls with ``call_date`` in ``[start, end]``."""
        with self.transaction() as con:
            return int(
                _scalar(
                    con,
                    "SELECT count(*) FROM cdr_listing WHERE call_date BETWEEN ? AND ?",
                    [start, end],
                )
                or 0
            )

    def pending_dates(self) -> list[date]:
        """Distinct local call dates that have pending uuids, ascending."""
        with self.transaction() as con:
            rows = con.execute(
                """
                SELECT DISTINCT l.call_date FROM cdr_listing AS l
                WHERE (NOT EXISTS (SELECT 1 FROM cdrs AS c WHERE c.uuid = l.uuid)
                  AND NOT EXISTS (SELECT 1 FROM load_rejects AS r WHERE r.uuid = l.uuid))
                  OR l.uuid IN (SELECT uuid FROM _cdr_refetch)
                ORDER BY l.call_date
                """
            ).fetchall()
        return [day for (day,) in rows]

    def load_progress(self, since: datetime) -> LoadProgress:
        """What the loads committed since ``since`` and what is still pending.

        Args:
            since: an aware instant, e.g. when an interrupted sync started.

        Returns:
            The counts, read in one transaction.
        """
        with self.transaction() as con:
            loaded = _scalar(
                con, "SELECT count(*) FROM cdrs WHERE loaded_at >= ?", [_utc(since, "since")]
            )
            rows = con.execute(
                """
                SELECT l.call_date, count(*) FROM cdr_listing AS l
                WHERE NOT EXISTS (SELECT 1 FROM cdrs AS c WHERE c.uuid = l.uuid)
                  AND NOT EXISTS (SELECT 1 FROM load_rejects AS r WHERE r.uuid = l.uuid)
                GROUP BY l.call_date ORDER BY l.call_date
                """
            ).fetchall()
        return LoadProgress(
            loaded_since=int(loaded),
            pending_calls=sum(int(n) for _, n in rows),
            pending_days=tuple(day for day, _ in rows),
        )

    # --- recordings --------------------------------------------------------------------

    def recording_candidates(
        self, start: date, end: date, *, refetch: bool = False
    ) -> list[RecordingCandidate]:
        """Calls of local days ``start..end`` that have, or had, a recording.

        That is ``has_recording`` or ``call_record = 'REMOVED'``, each with its
        ``call_recordings`` row when one exists. Calls with a ``recording`` reject are left
        out unless ``refetch``.

        Returns:
            Candidates, oldest call first.
        """
        with self.transaction() as con:
            rows = con.execute(
                """
                SELECT c.uuid, c.call_date, c.call_record, c.has_recording,
                       r.path, r.content_type, r.bytes, r.sha256, r.downloaded_at
                FROM cdrs AS c
                LEFT JOIN call_recordings AS r ON r.cdr_uuid = c.uuid
                WHERE c.call_date BETWEEN $start AND $end
                  AND (c.has_recording OR c.call_record = 'REMOVED')
                  AND ($refetch OR NOT EXISTS (
                      SELECT 1 FROM load_rejects AS x
                      WHERE x.uuid = c.uuid AND x.stage = 'recording'))
                ORDER BY c.call_time, c.uuid
                """,
                {"start": start, "end": end, "refetch": refetch},
            ).fetchall()
        return [
            RecordingCandidate(
                uuid=uuid,
                call_date=call_date,
                call_record=call_record,
                has_recording=bool(has_recording),
                stored=None
                if path is None
                else RecordingRow(uuid, path, content_type, int(size), sha, downloaded_at),
            )
            for (uuid, call_date, call_record, has_recording, path, content_type, size, sha,
                 downloaded_at) in rows
        ]  # fmt: skip

    def save_recordings(self, rows: Sequence[RecordingRow], rejects: Sequence[Reject]) -> None:
        """Upsert ``call_recordings`` rows and write ``recording`` rejects, in one transaction.

        A saved recording drops an earlier ``recording`` reject of the same call.

        Raises:
            WarehouseError: the write failed and was rolled back.
        """
        batch = pa.table(
            {
                "cdr_uuid": pa.array([r.cdr_uuid for r in rows], pa.string()),
                "path": pa.array([r.path for r in rows], pa.string()),
                "content_type": pa.array([r.content_type for r in rows], pa.string()),
                "bytes": pa.array([r.bytes for r in rows], pa.int64()),
                "sha256": pa.array([r.sha256 for r in rows], pa.string()),
                "downloaded_at": pa.array(
                    [_utc(r.downloaded_at, "downloaded_at") for r in rows],
                    pa.timestamp("us", "UTC"),
                ),
            }
        )
        with self.transaction() as con:
            if rows:
                con.register("recording_batch", batch)
                _upsert(con, schema.call_recordings, "recording_batch")
                con.execute(
                    """
                    DELETE FROM load_rejects
                    WHERE stage = 'recording'
                      AND uuid IN (SELECT cdr_uuid FROM recording_batch)
                    """
                )
                con.unregister("recording_batch")
            self._write_rejects(con, rejects)

    def delete_recordings_before(self, before: date) -> list[str]:
        """Delete the ``call_recordings`` rows of calls dated before ``before``, in one
        transaction; returns their paths (relative to BULUTFON_DATA_DIR)."""
        with self.transaction() as con:
            rows = con.execute(
                """
                DELETE FROM call_recordings
                WHERE cdr_uuid IN (SELECT uuid FROM cdrs WHERE call_date < ?)
                RETURNING path
                """,
                [before],
            ).fetchall()
        return sorted(path for (path,) in rows)

    # --- replay ----------------------------------------------------------------------

    def replay_raw(self, uuids: Sequence[str] | None = None) -> ReplayResult:
        """Re-normalise stored raw payloads and reload them, without the API.

        For replaying a normaliser fix: ``raw_cdr_details`` stays as it is; ``cdrs``, their
        child rows and the ``normalize`` rejects are rewritten, in one transaction.

        Args:
            uuids: only these calls; default every stored payload.

        Returns:
            How many payloads were read and what the reload did.
        """
        with self.transaction() as con:
            if uuids is None:
                rows = con.execute(
                    "SELECT uuid, CAST(payload AS VARCHAR) FROM raw_cdr_details ORDER BY uuid"
                ).fetchall()
            else:
                con.register("replay_uuids", pa.table({"uuid": pa.array(list(uuids), pa.string())}))
                rows = con.execute(
                    """
                    SELECT uuid, CAST(payload AS VARCHAR) FROM raw_cdr_details
                    WHERE uuid IN (SELECT uuid FROM replay_uuids) ORDER BY uuid
                    """
                ).fetchall()
                con.unregister("replay_uuids")
            payloads = [_unwrap_cdr(jsonio.decode(text)) for _, text in rows]
            normalized = normalize_details(payloads)
            result = self._write_details(con, normalized, ())
        return ReplayResult(payloads=len(rows), load=result)

    # --- reading (tests, checks, CLI) ---------------------------------------------------

    def fetch_frame(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        """Run a read query (constant SQL, values as parameters) and return a DataFrame."""
        with self.transaction() as con:
            return con.execute(sql, list(params)).df()


def _unwrap_cdr(payload: Any) -> Any:
    """The inner ``cdr`` object when a whole detail response was stored."""
    if isinstance(payload, dict) and set(payload) == {"cdr"}:
        return payload["cdr"]
    return payload
