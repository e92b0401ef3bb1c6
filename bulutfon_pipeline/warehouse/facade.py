"""``Warehouse``: the one object the loads, checks and tests hold, over the concern modules.

Each method is one operation, in one transaction of its own, on the rows of one PBX account
(:attr:`Warehouse.account`: every write fills the ``account`` column, every read filters
on it, every upsert keys on it), and delegates to the module
that owns its tables (``listing``, ``details``, ``rejects``, ``recordings``); the
database itself (connections, locks, transactions, bulk writes) is a backend object
(:class:`~bulutfon_pipeline.warehouse.backend.Backend`):
:class:`~bulutfon_pipeline.warehouse.duckdb_backend.DuckDB` for a file, or
:class:`~bulutfon_pipeline.warehouse.postgres_backend.Postgres` for a server
(:meth:`Warehouse.from_settings` picks by ``BULUTFON_WAREHOUSE_URL``). Composition rather
than mixins: the concern modules are plain functions over a backend, so a backend is one
object with the same surface, not a class tree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import date, datetime
from pathlib import Path
from typing import Any, cast

import pandas as pd

from bulutfon_pipeline import account_threads
from bulutfon_pipeline.normalize import NormalizedDetails, NormalizedListing, Reject
from bulutfon_pipeline.settings import DEFAULT_ACCOUNT, Settings
from bulutfon_pipeline.warehouse import details as _details
from bulutfon_pipeline.warehouse import directory as _directory
from bulutfon_pipeline.warehouse import listing as _listing
from bulutfon_pipeline.warehouse import pending as _pending
from bulutfon_pipeline.warehouse import recordings as _recordings
from bulutfon_pipeline.warehouse import rejects as _rejects
from bulutfon_pipeline.warehouse.backend import Backend, Transaction
from bulutfon_pipeline.warehouse.detail_writer import DetailWriter
from bulutfon_pipeline.warehouse.details import DetailLoadResult, RawPayload
from bulutfon_pipeline.warehouse.directory import DirectoryMergeResult, DirectoryObservation
from bulutfon_pipeline.warehouse.duckdb_backend import Connect, DuckDB
from bulutfon_pipeline.warehouse.errors import WarehouseError
from bulutfon_pipeline.warehouse.listing import ListingLoadResult, ListingStage
from bulutfon_pipeline.warehouse.pending import LoadProgress
from bulutfon_pipeline.warehouse.recordings import RecordingCandidate, RecordingRow

__all__ = ["Warehouse"]

#: The warehouses (backend, file or server and schema) whose schema a command brought up
#: to date for the length of a block (:meth:`Warehouse.schema_ready`).
_SCHEMA_READY: set[tuple[str, str]] = set()


class Warehouse:
    """The warehouse (a DuckDB file or a PostgreSQL schema) and every write the pipeline
    makes to it.

    ``Warehouse(path)`` is the DuckDB file at ``path``; :meth:`from_settings` picks the
    backend the settings name; :meth:`on` wraps any backend.

    Args:
        path: the DuckDB database file. Its folder must exist.
        connect: optional factory of a context manager yielding a connection (e.g. a
            dagster-duckdb resource's ``get_connection``); default ``duckdb.connect(path)``,
            closed at the end of each transaction.
        lock_timeout_s: how long to wait while another process holds the file lock.
        account: the PBX account (``BULUTFON_ACCOUNTS_FILE``) whose rows this object reads
            and writes; ``default`` for a single-account deployment.
    """

    db: Backend
    #: The PBX account this object reads and writes (issue 14).
    account: str

    def __init__(
        self,
        path: str | Path,
        *,
        connect: Connect | None = None,
        lock_timeout_s: float = 120.0,
        account: str = DEFAULT_ACCOUNT,
    ) -> None:
        self.account = account
        self._path: Path | None = Path(path)
        self.db = DuckDB(self._path, connect=connect, lock_timeout_s=lock_timeout_s)

    @classmethod
    def on(cls, db: Backend, *, account: str = DEFAULT_ACCOUNT) -> Warehouse:
        """A warehouse over an existing backend object."""
        warehouse = cls.__new__(cls)
        warehouse.account = account
        warehouse.db = db
        warehouse._path = db.path if isinstance(db, DuckDB) else None
        return warehouse

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        lock_timeout_s: float | None = None,
        account: str = DEFAULT_ACCOUNT,
    ) -> Warehouse:
        """The warehouse ``settings`` name: PostgreSQL at ``settings.warehouse_url`` (in
        ``settings.warehouse_schema``) when it is set, else the DuckDB file at
        ``settings.duckdb_path``.

        Args:
            lock_timeout_s: how long a statement waits for a lock another writer holds;
                default ``settings.lock_timeout_s`` (BULUTFON_LOCK_TIMEOUT_S).
            account: the PBX account whose rows it reads and writes.
        """
        if lock_timeout_s is None:
            lock_timeout_s = settings.lock_timeout_s
        if settings.warehouse_url is None:
            return cls(settings.duckdb_path, lock_timeout_s=lock_timeout_s, account=account)
        # Imported here: psycopg is loaded only by those who use a server.
        from bulutfon_pipeline.warehouse.postgres_backend import Postgres

        return cls.on(
            Postgres(
                settings.warehouse_url,
                schema=settings.warehouse_schema,
                lock_timeout_s=lock_timeout_s,
            ),
            account=account,
        )

    @property
    def path(self) -> Path:
        """The DuckDB file.

        Raises:
            WarehouseError: the warehouse is a PostgreSQL server, not a file.
        """
        if self._path is None:
            raise WarehouseError(f"warehouse {self.location} is a server, not a DuckDB file")
        return self._path

    @property
    def location(self) -> str:
        """Where the warehouse is, fit for messages: the file, or the URL without its
        password (and the schema)."""
        return self.db.name

    @property
    def is_server(self) -> bool:
        """True on PostgreSQL (readers never block a load; no analysts' copy needed)."""
        return self.db.is_server

    def write_turn(self) -> AbstractContextManager[Any]:
        """Hold a turn to write while the block runs: accounts loading in threads of one
        process into an embedded warehouse write it one at a time
        (``account_threads.write_turns``); otherwise nothing is held."""
        return account_threads.write_turn(self.is_server)

    def __repr__(self) -> str:
        return f"Warehouse({self.location!r}, account={self.account!r})"

    def advisory_lock(
        self,
        timeout_s: float,
        on_wait: Callable[[str], None] | None = None,
        accounts: Sequence[str] | None = None,
    ) -> AbstractContextManager[None]:
        """A server warehouse's sync lock of this account (or of each of ``accounts``) for
        the block (``Postgres.advisory_lock``): two syncs of one account exclude each
        other, two syncs of different accounts run at once.

        Raises:
            WarehouseError: the warehouse is a DuckDB file (its sync lock is a file lock
                beside it, ``runner.preflight.sync_lock``).
            WarehouseLockedError: another session still holds it after ``timeout_s``.
        """
        lock = getattr(self.db, "advisory_lock", None)
        if lock is None:
            raise WarehouseError(f"warehouse {self.location} has no advisory lock")
        held = self.account if accounts is None else list(accounts)
        return cast(AbstractContextManager[None], lock(timeout_s, on_wait, account=held))

    def listing_scan_lock(
        self, on_wait: Callable[[str], None] | None = None
    ) -> AbstractContextManager[None]:
        """This account's listing scans take turns for the block: on a server warehouse an
        advisory lock of their own, per account (a scan that begins clears what the
        account's other scans staged), waited for up to the lock timeout; on DuckDB
        nothing (the `duckdb` pool and the sync's file lock keep writers apart).

        Raises:
            WarehouseLockedError: another scan still held it after the lock timeout.
        """
        lock = getattr(self.db, "advisory_lock", None)
        if lock is None:
            return nullcontext()
        scan_lock = lock(
            self.db.lock_timeout_s, on_wait, purpose="listing scan", account=self.account
        )
        return cast(AbstractContextManager[None], scan_lock)

    def read_only_query(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run an analyst's query (``bulutfon-pipeline sql``) in a READ ONLY transaction
        and return its column names and rows: the server refuses any write.

        Raises:
            WarehouseError: the query failed or tried to write (one line).
        """
        with self.transaction() as tx:
            tx.execute("SET TRANSACTION READ ONLY")
            cursor = tx.execute(sql)
            if cursor.description is None:
                raise WarehouseError("the query returned no rows to show; give a SELECT")
            columns = [str(column[0]) for column in cursor.description]
            return columns, [tuple(row) for row in cursor.fetchall()]

    # --- transactions and schema -------------------------------------------------------

    def session(self, max_hold_s: float = 5.0) -> AbstractContextManager[None]:
        """Reuse one connection for the transactions inside the block (``Backend.session``)."""
        return self.db.session(max_hold_s)

    def transaction(self) -> AbstractContextManager[Transaction]:
        """One transaction: COMMIT after the block, ROLLBACK on error
        (``Backend.transaction``)."""
        return self.db.transaction()

    def ensure_schema(self) -> None:
        """Create missing tables (from the SQLAlchemy metadata) and (re)create the views.

        Idempotent; nothing to do inside this warehouse's :meth:`schema_ready` block.

        Raises:
            WarehouseError: the file's folder does not exist, or the database failed.
        """
        if self._schema_key() not in _SCHEMA_READY:
            self.db.create_schema()

    @contextmanager
    def schema_ready(self) -> Iterator[None]:
        """Ensure the schema, then skip every :meth:`ensure_schema` of this warehouse (any
        account's) until the block ends: the accounts' runs of one sync, which holds the
        writer lock, each ensured it three times (``benchmarks/ANALYSIS.md``)."""
        self.ensure_schema()
        key = self._schema_key()
        _SCHEMA_READY.add(key)
        try:
            yield
        finally:
            _SCHEMA_READY.discard(key)

    def _schema_key(self) -> tuple[str, str]:
        db: Any = self.db
        return type(db).__name__, str(getattr(db, "path", None) or getattr(db, "name", ""))

    # --- listing and the high-water mark (listing.py) ----------------------------------

    def begin_listing_scan(self) -> ListingStage:
        """See :func:`.listing.begin_listing_scan` (it takes :meth:`write_turn` to clear
        what a killed scan staged)."""
        return _listing.begin_listing_scan(
            self.db, account=self.account, write_turn=self.write_turn
        )

    def stage_listing(self, stage: ListingStage, frame: pd.DataFrame) -> int:
        """See :func:`.listing.stage_listing`."""
        return _listing.stage_listing(self.db, stage, frame, account=self.account)

    def finish_listing_scan(
        self,
        stage: ListingStage,
        rest: pd.DataFrame | None = None,
        *,
        rejects: Sequence[Reject] = (),
        seen_at: datetime,
    ) -> ListingLoadResult:
        """See :func:`.listing.finish_listing_scan`."""
        return _listing.finish_listing_scan(
            self.db, stage, rest, rejects=rejects, seen_at=seen_at, account=self.account
        )

    def upsert_listing(self, listing: NormalizedListing, *, seen_at: datetime) -> ListingLoadResult:
        """See :func:`.listing.upsert_listing`."""
        return _listing.upsert_listing(self.db, listing, seen_at=seen_at, account=self.account)

    def high_water_mark(self) -> datetime | None:
        """See :func:`.listing.high_water_mark`."""
        return _listing.high_water_mark(self.db, account=self.account)

    # --- details (details.py) ------------------------------------------------------------

    def load_details(
        self,
        raw: Sequence[tuple[str, RawPayload]],
        normalized: NormalizedDetails,
        *,
        fetched_at: datetime,
        detail_rejects: Sequence[Reject] = (),
        mirror_recording_deletes: Path | None = None,
    ) -> DetailLoadResult:
        """See :func:`.details.load_details`."""
        return _details.load_details(
            self.db,
            raw,
            normalized,
            fetched_at=fetched_at,
            detail_rejects=detail_rejects,
            mirror_recording_deletes=mirror_recording_deletes,
            account=self.account,
        )

    def detail_writer(self, mirror_recording_deletes: Path | None = None) -> DetailWriter:
        """A :class:`~.detail_writer.DetailWriter`: :meth:`load_details` per batch, in the
        background on a server (while the caller prepares the next batch)."""
        return DetailWriter(
            self.db, mirror_recording_deletes=mirror_recording_deletes, account=self.account
        )

    def raw_payloads(
        self, uuids: Sequence[str] | None = None, *, after: str | None = None, limit: int
    ) -> list[tuple[str, str]]:
        """See :func:`.details.raw_payloads`."""
        return _details.raw_payloads(self.db, uuids, after=after, limit=limit, account=self.account)

    def rewrite_details(self, normalized: NormalizedDetails) -> DetailLoadResult:
        """See :func:`.details.rewrite_details`."""
        return _details.rewrite_details(self.db, normalized, account=self.account)

    def pending_uuids(self, start: date, end: date, *, refetch: bool = False) -> list[str]:
        """See :func:`.pending.pending_uuids`."""
        return _pending.pending_uuids(self.db, start, end, refetch=refetch, account=self.account)

    def listed_count(self, start: date, end: date) -> int:
        """See :func:`.pending.listed_count`."""
        return _pending.listed_count(self.db, start, end, account=self.account)

    def day_counts(self, start: date, end: date) -> dict[date, dict[str, int]]:
        """See :func:`.pending.day_counts`."""
        return _pending.day_counts(self.db, start, end, account=self.account)

    def pending_dates(self) -> list[date]:
        """See :func:`.pending.pending_dates`."""
        return _pending.pending_dates(self.db, account=self.account)

    def load_progress(self, since: datetime, accounts: Sequence[str] = ()) -> LoadProgress:
        """See :func:`.pending.load_progress`: of ``accounts``, default this account."""
        return _pending.load_progress(self.db, since, accounts=accounts or [self.account])

    # --- the PBX's directory (directory.py) --------------------------------------------

    def merge_directory(
        self,
        tables: Mapping[str, Sequence[Mapping[str, Any]]],
        *,
        observed_at: datetime,
        unreadable: Mapping[str, set[str]] | None = None,
        rejects: Sequence[Reject] = (),
    ) -> DirectoryMergeResult:
        """See :func:`.directory.merge_directory`."""
        return _directory.merge_directory(
            self.db, tables, account=self.account, observed_at=observed_at,
            unreadable=unreadable, rejects=rejects,
        )  # fmt: skip

    def merge_directories(
        self, observations: Sequence[DirectoryObservation]
    ) -> list[DirectoryMergeResult]:
        """See :func:`.directory.merge_directories` (each names its own account)."""
        return _directory.merge_directories(self.db, observations)

    # --- rejects and recordings (rejects.py, recordings.py) ------------------------------

    def add_rejects(self, rejects: Sequence[Reject]) -> None:
        """See :func:`.rejects.add_rejects`."""
        _rejects.add_rejects(self.db, rejects, account=self.account)

    def recording_candidates(
        self, start: date, end: date, *, refetch: bool = False
    ) -> list[RecordingCandidate]:
        """See :func:`.recordings.recording_candidates`."""
        return _recordings.recording_candidates(
            self.db, start, end, refetch=refetch, account=self.account
        )

    def save_recordings(self, rows: Sequence[RecordingRow], rejects: Sequence[Reject]) -> None:
        """See :func:`.recordings.save_recordings`."""
        _recordings.save_recordings(self.db, rows, rejects, account=self.account)

    def delete_recordings_before(self, before: date) -> list[str]:
        """See :func:`.recordings.delete_recordings_before`."""
        return _recordings.delete_recordings_before(self.db, before, account=self.account)

    # --- reading (tests, checks, CLI) ----------------------------------------------------

    def fetch_frame(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        """Run a read query (constant SQL, values as parameters) and return a DataFrame.

        Not scoped: the query says which accounts it reads (``WHERE account = ?`` with
        :attr:`account`)."""
        with self.transaction() as tx:
            return tx.frame(sql, params)
