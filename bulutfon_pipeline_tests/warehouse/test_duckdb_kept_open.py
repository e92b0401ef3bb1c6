"""A DuckDB file the accounts' threads write stays open in the process between their
transactions (``duckdb_connect.kept_open``), and is let go once idle: real files, real
threads, and another real process trying to open the file."""

from __future__ import annotations

import contextlib
import functools
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest

from bulutfon_pipeline.account_threads import accounts_in_threads
from bulutfon_pipeline.settings import DUCKDB_ACCOUNTS_MEMORY_LIMIT
from bulutfon_pipeline.warehouse import Warehouse, duckdb_connect
from bulutfon_pipeline.warehouse.duckdb_connect import connect_file, kept_open

#: Idle time in the tests that move the clock themselves: the watcher never acts first.
LONG = 3600.0


def _in_a_thread(work: Callable[[], Any]) -> Any:
    """``work()`` run by an account's thread (not the main one); its result or error."""
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(work())
        except Exception as error:
            out.append(error)

    thread = threading.Thread(target=run, name="account_0")
    thread.start()
    thread.join(60)
    return out[0]


def _another_process_opens(path: Path) -> bool:
    code = "import duckdb, sys; duckdb.connect(sys.argv[1]).close()"
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, timeout=60)
    return done.returncode == 0


def _attach_probe(path: Path) -> None:
    with connect_file(path) as con:  # an in-memory database lives as long as the instance
        con.execute("ATTACH ':memory:' AS probe")
        con.execute("CREATE TABLE probe.t AS SELECT 42 AS v")


def _read_probe(path: Path) -> Any:
    with connect_file(path) as con:
        return con.execute("SELECT v FROM probe.t").fetchall()


def test_a_file_stays_open_between_the_accounts_transactions_until_idle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(duckdb_connect, "KEEP_IDLE_S", LONG)
    path = tmp_path / "warehouse.duckdb"
    Warehouse(path).ensure_schema()
    with accounts_in_threads(2), kept_open():
        assert _in_a_thread(lambda: _attach_probe(path)) is None
        # The transaction ended, and the database is still open: the next connection is to
        # the same instance, and another process cannot have the file.
        assert _in_a_thread(lambda: _read_probe(path)) == [(42,)]
        assert not _another_process_opens(path)
        # Idle for KEEP_IDLE_S (the watcher's clock, moved on): let go, so another process
        # can take its turn, and the next connection opens the database anew.
        assert duckdb_connect.close_idle(time.monotonic() + LONG) == 1
        assert _another_process_opens(path)
        assert isinstance(_in_a_thread(lambda: _read_probe(path)), duckdb.CatalogException)
        # Not idle long enough: kept.
        assert _in_a_thread(lambda: _attach_probe(path)) is None
        assert duckdb_connect.close_idle(time.monotonic() + LONG / 4) == 0
        assert not _another_process_opens(path)
    assert _another_process_opens(path)  # the block let go of what it kept


def test_without_the_block_every_transaction_opens_the_file_anew(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    Warehouse(path).ensure_schema()
    with accounts_in_threads(2):
        assert _in_a_thread(lambda: _attach_probe(path)) is None
        assert isinstance(_in_a_thread(lambda: _read_probe(path)), duckdb.CatalogException)
        assert _another_process_opens(path)


def test_the_watcher_lets_a_file_go_once_idle_and_never_under_a_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    idle_s = 0.2
    monkeypatch.setattr(duckdb_connect, "KEEP_IDLE_S", idle_s)
    path = tmp_path / "warehouse.duckdb"
    Warehouse(path).ensure_schema()
    released = threading.Event()
    close_idle = duckdb_connect.close_idle

    def watched(now: float) -> int:
        closed = close_idle(now)
        if closed:
            released.set()
        return closed

    monkeypatch.setattr(duckdb_connect, "close_idle", watched)
    opened, done = threading.Event(), threading.Event()

    def hold() -> list[Any]:
        with connect_file(path) as con:
            opened.set()
            assert done.wait(60)
            return con.execute("SELECT 1").fetchall()

    with accounts_in_threads(2), kept_open():
        holder = threading.Thread(target=hold, name="account_0")
        holder.start()
        assert opened.wait(60)
        # Not a synchronisation: room for the watcher (every 0.1 s) to act if it would.
        assert not released.wait(10 * idle_s)
        assert not _another_process_opens(path)
        done.set()
        holder.join(60)
        assert released.wait(60)  # the watcher, on its own clock, once idle for 0.2 s
        assert _another_process_opens(path)


def _append(path: Path, first: int, checkpoint: bool) -> None:
    """10,000 rows of ``t`` in one transaction of an account's thread, then a checkpoint
    (as DuckDB's automatic ones are, when the WAL reaches its threshold)."""
    with connect_file(path) as con:
        rows = f"range({first}, {first + 10_000}) r(i)"
        con.execute(f"INSERT INTO t SELECT i, repeat('x', 100) || i FROM {rows}")
        if checkpoint:
            con.execute("CHECKPOINT")


def _appends(path: Path, checkpointed: int) -> None:
    """``checkpointed`` transactions each followed by a checkpoint, then one more."""
    for k in range(checkpointed + 1):
        first, checkpoint = k * 10_000, k < checkpointed
        assert _in_a_thread(functools.partial(_append, path, first, checkpoint)) is None


def _table_t(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A DuckDB file with an empty table ``t``; the watcher never closes it first."""
    monkeypatch.setattr(duckdb_connect, "KEEP_IDLE_S", LONG)
    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE t (i BIGINT, s VARCHAR)")
    return path


def _layout(con: Any) -> tuple[int, int]:
    """``t``'s row groups and rows."""
    groups = con.execute("SELECT count(DISTINCT row_group_id) FROM pragma_storage_info('t')")
    return groups.fetchone()[0], con.execute("SELECT count(*) FROM t").fetchone()[0]


def _settings(con: Any) -> tuple[str, str]:
    """The instance's memory limit (as DuckDB shows it) and vacuum tasks."""
    limit, tasks = con.execute(
        "SELECT current_setting('memory_limit'), current_setting('max_vacuum_tasks')"
    ).fetchone()
    return limit, str(tasks)


def _read_layout_and_settings(path: Path) -> tuple[tuple[int, int], tuple[str, str]]:
    with connect_file(path) as con:
        return _layout(con), _settings(con)


def _closes_seen(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Each close of a connection: its instance's :func:`_settings` then."""
    seen: list[tuple[str, str]] = []
    close = duckdb_connect._close

    def recorded(con: duckdb.DuckDBPyConnection) -> None:
        with contextlib.suppress(duckdb.Error):  # an invalidated instance answers nothing
            seen.append(_settings(con))
        close(con)

    monkeypatch.setattr(duckdb_connect, "_close", recorded)
    return seen


def _shown(limit: str) -> str:
    """A memory limit as DuckDB shows it (``80MB``: ``76.2 MiB``)."""
    with duckdb.connect(config={"memory_limit": limit}) as con:
        return con.execute("SELECT current_setting('memory_limit')").fetchone()[0]


def test_a_kept_files_checkpoints_leave_compacting_to_its_last_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _table_t(tmp_path, monkeypatch)
    seen = _closes_seen(monkeypatch)
    with accounts_in_threads(2), kept_open():
        _appends(path, checkpointed=4)
        # While kept, a checkpoint leaves each transaction's rows in a row group of their
        # own (no vacuum), and the accounts' limit stands.
        assert _in_a_thread(lambda: _read_layout_and_settings(path)) == (
            (5, 50_000), (_shown(DUCKDB_ACCOUNTS_MEMORY_LIMIT), "0")
        )  # fmt: skip
    # The block's close vacuumed within its own limit: one row group, and no WAL left.
    assert seen[-1] == (_shown(duckdb_connect.KEPT_CLOSE_MEMORY_LIMIT), "100")
    assert not path.with_name(path.name + ".wal").exists()
    with duckdb.connect(str(path), read_only=True) as con:
        assert _layout(con) == (1, 50_000)


def test_an_idle_close_vacuums_within_the_accounts_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An account may open the file again while it closes: the limit stays the accounts'.
    path = _table_t(tmp_path, monkeypatch)
    seen = _closes_seen(monkeypatch)
    with accounts_in_threads(2), kept_open():
        _appends(path, checkpointed=3)
        assert duckdb_connect.close_idle(time.monotonic() + LONG) == 1
        assert seen[-1] == (_shown(DUCKDB_ACCOUNTS_MEMORY_LIMIT), "100")
        with duckdb.connect(str(path), read_only=True) as con:
            assert _layout(con) == (1, 40_000)


def test_a_closing_checkpoint_out_of_memory_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Out of memory, DuckDB's checkpoint is fatal to its instance; the rows are in the WAL,
    # which the next open replays.
    path = _table_t(tmp_path, monkeypatch)
    monkeypatch.setattr(duckdb_connect, "KEPT_CLOSE_MEMORY_LIMIT", "1MB")
    with (
        caplog.at_level("INFO", logger=duckdb_connect.__name__),
        accounts_in_threads(2),
        kept_open(),
    ):
        _appends(path, checkpointed=3)
    assert "closing checkpoint did not complete (FatalException)" in caplog.text
    assert path.with_name(path.name + ".wal").exists()
    with duckdb.connect(str(path)) as con:
        assert _layout(con)[1] == 40_000
