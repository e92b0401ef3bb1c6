"""How the pipeline opens a DuckDB file: its settings, and one thread at a time."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from bulutfon_pipeline.account_threads import accounts_loading
from bulutfon_pipeline.settings import (
    DEFAULT_ACCOUNTS_AT_ONCE,
    DUCKDB_CHECKPOINT_THRESHOLD,
    DUCKDB_MEMORY_LIMIT,
    DUCKDB_THREADS_CHECKPOINT_THRESHOLD,
    duckdb_threads_memory_limit,
)

__all__ = ["connect_file"]

#: Connections to DuckDB files open and close one thread at a time: the Python client
#: raced when accounts' threads did so at once ("Table Function with name
#: python_arrow_scan does not exist"). Their transactions still run concurrently.
_OPEN_CLOSE = threading.Lock()


def _threads_memory_limit() -> str:
    """DuckDB's memory limit off the main thread: one load's per account loading in
    threads (:func:`~bulutfon_pipeline.account_threads.accounts_in_threads`), the default
    number of them outside such a block. Constant while a block runs, as every connection
    a process holds on one file must have the same configuration."""
    return duckdb_threads_memory_limit(accounts_loading() or DEFAULT_ACCOUNTS_AT_ONCE)


@contextmanager
def connect_file(path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to the file at ``path`` with the pipeline's settings, closed on exit.

    Accounts loading in threads of one process share one database instance, whose memory
    limit is the process's: off the main thread it is one load's limit per account
    loading at once (:func:`_threads_memory_limit`); while several load, the instance
    checkpoints at DuckDB's default WAL size (``DUCKDB_THREADS_CHECKPOINT_THRESHOLD``).
    """
    main = threading.current_thread() is threading.main_thread()
    config: dict[str, str | bool | int | float | list[str]] = {
        "memory_limit": DUCKDB_MEMORY_LIMIT if main else _threads_memory_limit(),
        "checkpoint_threshold": (
            DUCKDB_THREADS_CHECKPOINT_THRESHOLD
            if not main and (accounts_loading() or 1) > 1
            else DUCKDB_CHECKPOINT_THRESHOLD
        ),
    }
    with _OPEN_CLOSE:
        con = duckdb.connect(str(path), config=config)
    try:
        yield con
    finally:
        with _OPEN_CLOSE:
            con.close()
