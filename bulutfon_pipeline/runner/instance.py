"""The runner's ephemeral Dagster instance when ``DAGSTER_HOME`` is not set: one for the
length of one command, shared by its accounts' threads, with storages that keep their one
connection.

Dagster's own ephemeral instance (``DagsterInstance.ephemeral()``) keeps runs and events
in in-memory SQLite databases, but opens a new connection, with two PRAGMAs, for every
event it stores and every run it writes, and stamps an Alembic revision (loading its
scripts) each time one is made. With one per account, that was most of the 0.9 CPU s each
account cost whatever its calls (``benchmarks/ANALYSIS.md``, "the Dagster per-account
cost"). These instances are the same kind (``InstanceType.EPHEMERAL``, nothing kept after
the command), but each database has one connection, used under a lock, and no stamp.

An account's runs are deleted from the instance when the account is done, so the memory
held stays that of the accounts running, not of every account loaded.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from typing import Any

#: Dagster's tag of a run's partition key (``dagster.core.storage.tags.PARTITION_NAME_TAG``).
PARTITION_TAG = "dagster/partition"


@cache
def _storage_classes() -> tuple[type, type]:
    """The run and event log storages (built on first use: Dagster is imported lazily)."""
    import sqlalchemy as db
    from dagster._core.event_api import EventLogCursor, EventRecordsResult
    from dagster._core.storage.event_log import InMemoryEventLogStorage
    from dagster._core.storage.event_log.schema import AssetKeyTable, SqlEventLogStorageMetadata
    from dagster._core.storage.runs import InMemoryRunStorage
    from dagster._core.storage.runs.schema import RunStorageSqlMetadata
    from sqlalchemy.pool import StaticPool

    def one_connection_engine(metadata: Any) -> Any:
        # A private in-memory database on one DBAPI connection (StaticPool), usable from
        # any thread (the lock below serialises its users).
        engine = db.create_engine(
            "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
        )
        with engine.connect() as conn, conn.begin():
            conn.execute(db.text("PRAGMA foreign_keys=ON;")).close()
            metadata.create_all(conn)
        return engine

    class HeldRunStorage(InMemoryRunStorage):
        def __init__(self) -> None:  # no super().__init__: its engine and stamp are not used
            self._engine = one_connection_engine(RunStorageSqlMetadata)
            self._lock = threading.RLock()
            self._held_conn = self._engine.connect()

        @contextmanager
        def connect(self) -> Iterator[Any]:
            with self._lock, self._engine.connect() as conn, conn.begin():
                yield conn

    class HeldEventLogStorage(InMemoryEventLogStorage):
        def __init__(self) -> None:  # no super().__init__: its engine and stamp are not used
            from collections import defaultdict

            self._inst_data = None
            self._engine = one_connection_engine(SqlEventLogStorageMetadata)
            self._handlers = defaultdict(set)
            self._storage_id = 0
            self._db_lock = threading.Lock()  # as Dagster's: never taken twice
            self._held_conn = self._engine.connect()
            self._asset_key_columns = frozenset(c.name for c in AssetKeyTable.columns)

        def has_table(self, table_name: str) -> bool:
            # Dagster's asks the database (on a connection of its own, outside the lock)
            # for every asset check event; these tables were all made here.
            return table_name in SqlEventLogStorageMetadata.tables

        def _has_asset_key_col_on_connection(self, conn: Any, column_name: str) -> bool:
            # Dagster reflects the table's columns for every asset event; this schema was
            # made here, from the current metadata, so it has every column.
            return column_name in self._asset_key_columns

        @contextmanager
        def _connect(self) -> Iterator[Any]:
            with self._db_lock, self._engine.connect() as conn, conn.begin():
                yield conn

        def store_event(self, event: Any) -> None:
            # Only the run's own events (start, success, failure) and step failures. Nothing
            # reads the others back: a run's result carries every event it yielded, no UI
            # or daemon sees this instance, and its runs are deleted after each account.
            # Storing them (serialising each, indexing each asset event) was about 14 % of
            # a 50-account sync's Python time (``benchmarks/ANALYSIS.md``).
            dagster_event = event.dagster_event
            if dagster_event is not None and (
                dagster_event.is_job_event or dagster_event.is_step_failure
            ):
                super().store_event(event)

        def get_asset_records(self, asset_keys: Any = None) -> list[Any]:
            # No asset event is stored here (store_event), so no asset has a record. Dagster
            # asks for the records of each materialization's inputs (for data versions),
            # then for their last observation: queries that always found nothing, 4-7 % of
            # the runs' profiled CPU in a 50-account sync (``benchmarks/ANALYSIS.md``, session 34).
            return []

        def fetch_observations(
            self,
            records_filter: Any,
            limit: int,
            cursor: str | None = None,
            ascending: bool = False,
        ) -> Any:
            # No observation is stored here either; the cursor as Dagster's storage gives it.
            none_yet = EventLogCursor.from_storage_id(-1).to_string()
            return EventRecordsResult([], cursor=cursor or none_yet, has_more=False)

    return HeldRunStorage, HeldEventLogStorage


def new_ephemeral_instance() -> Any:
    """An ephemeral instance like ``DagsterInstance.ephemeral()``, on held connections."""
    import dagster as dg
    from dagster._core.instance import InstanceType
    from dagster._core.launcher.sync_in_memory_run_launcher import SyncInMemoryRunLauncher
    from dagster._core.run_coordinator import DefaultRunCoordinator
    from dagster._core.storage.noop_compute_log_manager import NoOpComputeLogManager
    from dagster._core.storage.root import TemporaryLocalArtifactStorage

    runs, events = _storage_classes()
    return dg.DagsterInstance(
        instance_type=InstanceType.EPHEMERAL,
        local_artifact_storage=TemporaryLocalArtifactStorage(),
        run_storage=runs(),
        event_storage=events(),
        compute_log_manager=NoOpComputeLogManager(),
        run_coordinator=DefaultRunCoordinator(),
        run_launcher=SyncInMemoryRunLauncher(),
    )


class CommandInstance:
    """One ephemeral instance for the length of one command (``close``), shared by the
    accounts loading in its threads.

    Its storages serialise their users under a lock, and keep only each run's own events,
    so the accounts' runs share it without waiting on each other for long. One instance
    per thread held about 2.7 MB each (empty), about 40 % of what each account at once
    cost a sync (``benchmarks/ANALYSIS.md``, session 26).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._instance: Any = None

    def get(self) -> Any:
        """The command's instance (made on first use)."""
        with self._lock:
            if self._instance is None:
                self._instance = new_ephemeral_instance()
            return self._instance

    @staticmethod
    def forget(instance: Any, accounts: Sequence[str]) -> None:
        """Delete the runs (and their events) of ``accounts`` once they are done: those
        tagged with the account, or with it as their partition; their results were
        read. The other accounts' runs stay."""
        import dagster as dg

        from bulutfon_pipeline.partitions import ACCOUNT_TAG

        for name in accounts:
            for tag in (ACCOUNT_TAG, PARTITION_TAG):
                for run_id in instance.get_run_ids(filters=dg.RunsFilter(tags={tag: name})):
                    instance.delete_run(run_id)

    def close(self) -> None:
        with self._lock:
            instance, self._instance = self._instance, None
        if instance is not None:
            instance.dispose()
