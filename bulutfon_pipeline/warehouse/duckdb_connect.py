"""How the pipeline opens a DuckDB file: its settings, one thread at a time, and, while
several accounts load in threads, on which threads its work runs."""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import duckdb

from bulutfon_pipeline.account_threads import accounts_loading
from bulutfon_pipeline.settings import (
    DUCKDB_CHECKPOINT_THRESHOLD,
    DUCKDB_MEMORY_LIMIT,
    DUCKDB_THREADS_CHECKPOINT_THRESHOLD,
    DUCKDB_WORK_THREADS,
    duckdb_threads_memory_limit,
)

__all__ = ["KEEP_IDLE_S", "KEPT_CLOSE_MEMORY_LIMIT", "connect_file", "kept_open"]

log = logging.getLogger(__name__)

#: Connections to DuckDB files open and close one thread at a time: the Python client
#: raced when accounts' threads did so at once ("Table Function with name
#: python_arrow_scan does not exist"). Their transactions still run concurrently.
_OPEN_CLOSE = threading.Lock()


def _threads_memory_limit() -> str:
    """DuckDB's memory limit off the main thread: the accounts' shared one
    (``DUCKDB_ACCOUNTS_MEMORY_LIMIT``) while accounts load in threads
    (:func:`~bulutfon_pipeline.account_threads.accounts_in_threads`), as they write in
    turns; outside such a block, one load's for each of
    ``DUCKDB_OTHER_THREADS``. Constant while a block runs, as every connection a process
    holds on one file must have the same configuration."""
    return duckdb_threads_memory_limit(accounts_loading() is not None)


@contextmanager
def connect_file(path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to the file at ``path`` with the pipeline's settings, closed on exit.

    Accounts loading in threads of one process share one database instance, whose memory
    limit is the process's (off the main thread: :func:`_threads_memory_limit`). While
    several load, the instance checkpoints at DuckDB's default WAL size
    (``DUCKDB_THREADS_CHECKPOINT_THRESHOLD``), and every call on the connection runs on
    the process's DuckDB threads (:func:`_duckdb_threads`).
    """
    current = threading.current_thread()
    main = current is threading.main_thread()
    several = not main and (accounts_loading() or 1) > 1
    config: dict[str, str | bool | int | float | list[str]] = {
        "memory_limit": DUCKDB_MEMORY_LIMIT if main else _threads_memory_limit(),
        "checkpoint_threshold": (
            DUCKDB_THREADS_CHECKPOINT_THRESHOLD if several else DUCKDB_CHECKPOINT_THRESHOLD
        ),
    }

    def connect() -> duckdb.DuckDBPyConnection:
        with _OPEN_CLOSE:
            return duckdb.connect(str(path), config=config)

    # On one of the DuckDB threads already, never wait on them from inside.
    if not several or current.name.startswith(_THREAD_PREFIX):
        con = connect()
        try:
            yield con
        finally:
            _close(con)
        return
    pool = _duckdb_threads()
    kept = _use_kept(str(path), pool, connect)
    try:
        raw = pool.submit(connect).result()
        try:
            yield cast(duckdb.DuckDBPyConnection, _OnDuckDBThreads(raw, pool))
        finally:
            pool.submit(_close, raw).result()
    finally:
        if kept is not None:
            _done_with_kept(kept)


#: How long a file stays open in a :func:`kept_open` block with none of the accounts'
#: connections on it; then it is closed, and other processes can take their turn on it.
KEEP_IDLE_S = 0.5
#: DuckDB's memory limit for the checkpoint that closes a kept file when its
#: :func:`kept_open` block ends. While the file is kept, its automatic checkpoints do not
#: compact the tables' row groups (DuckDB's checkpoint vacuum, ``max_vacuum_tasks``); that
#: checkpoint does, for the whole run. A vacuum fills whatever limit it has with the row
#: groups it rewrites: with 50 accounts x 400 calls, each took DuckDB to 77-79 MB of the
#: accounts' 80, the sync's peak; 40 MB take 44 MB and 0.1 s more (ANALYSIS.md, 41).
KEPT_CLOSE_MEMORY_LIMIT = "40MB"


class _Kept:
    """The connection that keeps a file's database open (:func:`kept_open`), how many of
    the accounts' connections are on the file, and since when none is."""

    __slots__ = ("con", "idle_since", "users")

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self.users = 0
        self.idle_since = time.monotonic()


#: path -> its :class:`_Kept`, while a :func:`kept_open` block runs (else None).
_KEPT: dict[str, _Kept] | None = None
_KEPT_LOCK = threading.Lock()


@contextmanager
def kept_open() -> Iterator[None]:
    """While the block runs, a DuckDB file that accounts loading in threads connect to
    stays open in this process between their transactions, until none of their
    connections has been on it for ``KEEP_IDLE_S``; the block closes what it kept.

    Else every transaction opened the database again, and closing the last connection
    checkpointed it and shut it down: with 50 accounts, opening and closing were a third
    of the DuckDB threads' samples in a profile, and 552 connections took 3.3 s to open
    (``benchmarks/ANALYSIS.md``, session 35). Enter it inside
    :func:`~bulutfon_pipeline.account_threads.accounts_in_threads`: what it keeps open has
    that block's configuration.
    """
    global _KEPT
    with _KEPT_LOCK:
        before, _KEPT = _KEPT, {}
    stop = threading.Event()
    watcher = threading.Thread(
        target=_close_idle, args=(stop,), name="bulutfon-duckdb-keeper", daemon=True
    )
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()
        with _KEPT_LOCK:
            kept, _KEPT = _KEPT, before
        for each in kept.values():
            _duckdb_threads().submit(_close_compacted, each.con).result()


def _use_kept(
    key: str, pool: concurrent.futures.Executor, connect: Callable[[], duckdb.DuckDBPyConnection]
) -> _Kept | None:
    """Count one more connection on the file ``key``, opening what keeps it open first
    when nothing does; None outside a :func:`kept_open` block."""
    with _KEPT_LOCK:
        if _KEPT is None:
            return None
        kept = _KEPT.get(key)
        if kept is None:
            kept = _KEPT[key] = _Kept(pool.submit(_open_kept, connect).result())
        kept.users += 1
        return kept


def _done_with_kept(kept: _Kept) -> None:
    with _KEPT_LOCK:
        kept.users -= 1
        if not kept.users:
            kept.idle_since = time.monotonic()


def _close_idle(stop: threading.Event) -> None:
    """:func:`close_idle` every ``KEEP_IDLE_S / 2``, until ``stop``."""
    while not stop.wait(KEEP_IDLE_S / 2):
        close_idle(time.monotonic())


def close_idle(now: float) -> int:
    """Close each kept file none of the accounts' connections has been on since ``now``
    less ``KEEP_IDLE_S``; how many were closed."""
    with _KEPT_LOCK:
        kept = _KEPT or {}
        idle = [k for k, v in kept.items() if not v.users and now - v.idle_since >= KEEP_IDLE_S]
        closing = [kept.pop(key) for key in idle]
    for each in closing:
        _duckdb_threads().submit(_close_vacuumed, each.con).result()
    return len(closing)


def _open_kept(connect: Callable[[], duckdb.DuckDBPyConnection]) -> duckdb.DuckDBPyConnection:
    """The connection that keeps a file open: its automatic checkpoints do not vacuum
    (``KEPT_CLOSE_MEMORY_LIMIT``). A DuckDB without the setting vacuums as before."""
    con = connect()
    with contextlib.suppress(duckdb.Error):
        con.execute("SET max_vacuum_tasks = 0")
    return con


def _close_vacuumed(con: duckdb.DuckDBPyConnection) -> None:
    """Close a kept file that went idle: its checkpoint vacuums, within the accounts'
    limit (an account may open the file again meanwhile, and share that limit)."""
    with contextlib.suppress(duckdb.Error):
        con.execute("RESET max_vacuum_tasks")
    _close(con)


def _close_compacted(con: duckdb.DuckDBPyConnection) -> None:
    """Close a kept file when its :func:`kept_open` block ends, with no account's
    connection left on it: a checkpoint that vacuums within ``KEPT_CLOSE_MEMORY_LIMIT``,
    then the close. A checkpoint that runs out of memory is fatal to DuckDB's instance, not
    to the data: the WAL stays on disk, and the next open replays it."""
    try:
        con.execute("RESET max_vacuum_tasks")
        con.execute(f"SET memory_limit = '{KEPT_CLOSE_MEMORY_LIMIT}'")
        con.execute("CHECKPOINT")
    except duckdb.Error as error:
        log.info("the warehouse's closing checkpoint did not complete (%s); its WAL is "
                 "replayed when it is next opened", type(error).__name__)  # fmt: skip
    with contextlib.suppress(duckdb.Error):
        _close(con)


def _close(con: duckdb.DuckDBPyConnection) -> None:
    with _OPEN_CLOSE:
        con.close()


_THREAD_PREFIX = "bulutfon-duckdb"
#: The threads that do the DuckDB work of accounts loading in threads of this process
#: (and the process they belong to: a forked child makes its own), made on first use.
_WORKERS: tuple[concurrent.futures.ThreadPoolExecutor, int] | None = None
_WORKERS_LOCK = threading.Lock()


def _duckdb_threads() -> concurrent.futures.ThreadPoolExecutor:
    """The process's ``DUCKDB_WORK_THREADS`` DuckDB threads, which run every call on the
    connections of accounts loading in threads.

    DuckDB keeps memory for every thread that has worked in a database, and gives none
    of it back: 25 connections used from one thread took 23 MB, from 25 threads 125 MB
    (``benchmarks/ANALYSIS.md``, session 24). The accounts' own threads hand their DuckDB
    calls here instead, so DuckDB keeps two threads' memory whatever the accounts at once
    (50 accounts at 25 at once: 551 MB before, 535 MB; session 25); their writes took
    turns on the file anyway.
    """
    global _WORKERS
    with _WORKERS_LOCK:
        if _WORKERS is None or _WORKERS[1] != os.getpid():
            pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=DUCKDB_WORK_THREADS, thread_name_prefix=_THREAD_PREFIX
            )
            _WORKERS = (pool, os.getpid())
        return _WORKERS[0]


class _OnDuckDBThreads:
    """A DuckDB connection whose every method call runs on ``pool`` (the process's DuckDB
    threads, :func:`_duckdb_threads`), one call at a time from its one user, so in order.
    A call that returns the connection (``execute``, as DuckDB's does) returns this proxy;
    one that returns another connection (``cursor``) returns that one proxied."""

    __slots__ = ("_con", "_pool")

    def __init__(
        self, con: duckdb.DuckDBPyConnection, pool: concurrent.futures.ThreadPoolExecutor
    ) -> None:
        self._con = con
        self._pool = pool

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._con, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            result = self._pool.submit(attribute, *args, **kwargs).result()
            if result is self._con:
                return self
            if isinstance(result, duckdb.DuckDBPyConnection):
                return _OnDuckDBThreads(result, self._pool)
            return result

        return call
