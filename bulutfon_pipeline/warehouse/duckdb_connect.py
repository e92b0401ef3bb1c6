"""How the pipeline opens a DuckDB file: its settings, and one thread at a time."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from bulutfon_pipeline.settings import (
    DEFAULT_ACCOUNTS_AT_ONCE,
    DUCKDB_CHECKPOINT_THRESHOLD,
    DUCKDB_MEMORY_LIMIT,
    duckdb_threads_memory_limit,
)

__all__ = ["connect_file", "threads_at_once"]

#: Connections to DuckDB files open and close one thread at a time: the Python client
#: raced when accounts' threads did so at once ("Table Function with name
#: python_arrow_scan does not exist"). Their transactions still run concurrently.
_OPEN_CLOSE = threading.Lock()

#: DuckDB's memory limit off the main thread (:func:`threads_at_once` sets it). Every
#: connection a process holds on one file must have the same configuration, so it is one
#: value for the whole process while its threads load.
_threads_memory_limit = duckdb_threads_memory_limit(DEFAULT_ACCOUNTS_AT_ONCE)


@contextmanager
def threads_at_once(threads: int) -> Iterator[None]:
    """While the block runs, up to ``threads`` accounts load in threads of this process:
    their connections' shared database instance gets ``threads`` loads' memory. Enter it
    before the threads start (no connection off the main thread may be open)."""
    global _threads_memory_limit
    before = _threads_memory_limit
    _threads_memory_limit = duckdb_threads_memory_limit(threads)
    try:
        yield
    finally:
        _threads_memory_limit = before


@contextmanager
def connect_file(path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to the file at ``path`` with the pipeline's settings, closed on exit.

    Accounts loading in threads of one process share one database instance, whose memory
    limit is the process's: off the main thread it is one load's limit per account
    loading at once (:func:`threads_at_once`).
    """
    main = threading.current_thread() is threading.main_thread()
    config: dict[str, str | bool | int | float | list[str]] = {
        "memory_limit": DUCKDB_MEMORY_LIMIT if main else _threads_memory_limit,
        "checkpoint_threshold": DUCKDB_CHECKPOINT_THRESHOLD,
    }
    with _OPEN_CLOSE:
        con = duckdb.connect(str(path), config=config)
    try:
        yield con
    finally:
        with _OPEN_CLOSE:
            con.close()
