"""What many accounts in one process share: one event loop for every fan-out, one
ephemeral Dagster instance per thread (its runs forgotten after each account), the detail
batches' budget or the turns to write DuckDB, and one schema check per sync. Against the
real simulator, real Dagster runs and real DuckDB files."""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import dagster as dg
import pytest
import sqlalchemy

from bulutfon_pipeline.account_threads import (
    MALLOC_ARENAS,
    MALLOC_MMAP_THRESHOLD,
    MIN_SHARED_DETAIL_BATCH,
    SHARED_DETAILS_BUDGET,
    accounts_in_threads,
    accounts_loading,
    is_glibc,
    shared_detail_batch,
)
from bulutfon_pipeline.api import BulutfonClient, ClientConfig, fanout
from bulutfon_pipeline.partitions import ACCOUNT_TAG, ACCOUNTS_PARTITIONS_NAME
from bulutfon_pipeline.runner import runs
from bulutfon_pipeline.runner.instance import CommandInstance
from bulutfon_pipeline.runner.runs import account_instance
from bulutfon_pipeline.settings import DEFAULT_DETAIL_BATCH_SIZE


def _fan_out_threads() -> set[str]:
    """The names of the threads the client started (the simulator's own are not, nor the
    DuckDB threads an earlier multi-account load of this process left waiting)."""
    names = {t.name for t in threading.enumerate()}
    others = ("bulutfon-sim", "bulutfon-duckdb")
    return {n for n in names if n.startswith("bulutfon-") and not n.startswith(others)}


def test_two_accounts_fetch_at_once_on_one_loop_and_one_stopping_early_spares_the_other(
    simulator_factory: Any, tmp_path: Path
) -> None:
    sim = simulator_factory(days=2, calls_per_day=60)
    uuids = list(sim.dataset.uuids)
    halves = {"a": uuids[::2], "b": uuids[1::2]}
    got: dict[str, list[str]] = {"a": [], "b": []}
    seen_threads: list[set[str]] = []
    both_started = threading.Barrier(2)

    def load(name: str, stop_after: int | None) -> None:
        config = ClientConfig.from_env(sim.env("master"), data_dir=tmp_path / name)
        with BulutfonClient(config) as client:
            results = client.fetch_details(halves[name])
            for result in results:
                if not got[name]:
                    both_started.wait(timeout=30)  # both fan-outs are running now
                    seen_threads.append(_fan_out_threads())
                assert result.payload is not None
                got[name].append(result.uuid)
                if stop_after is not None and len(got[name]) == stop_after:
                    results.close()  # cancels this fan-out only
                    break

    threads = [
        threading.Thread(target=load, args=("a", 3)),
        threading.Thread(target=load, args=("b", None)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert len(got["a"]) == 3 and set(got["a"]) <= set(halves["a"])
    assert sorted(got["b"]) == sorted(halves["b"])  # every one of its calls, once
    # Both fan-outs ran on the process's one loop thread, no thread of their own.
    assert seen_threads == [{"bulutfon-fan-out"}, {"bulutfon-fan-out"}]
    assert fanout._fan_out_loop().is_running()


@dg.asset(partitions_def=dg.DynamicPartitionsDefinition(name=ACCOUNTS_PARTITIONS_NAME))
def _probe(context) -> dg.MaterializeResult:  # type: ignore[no-untyped-def]  # Dagster takes no string annotation
    return dg.MaterializeResult(metadata={"account": context.partition_key})


def test_the_accounts_threads_share_one_instance_and_each_forgets_only_its_runs() -> None:
    instances = CommandInstance()
    made: dict[str, Any] = {}
    izmir_done = threading.Event()
    bursa_ran = threading.Event()

    def account(name: str, before_exit: Callable[[], None] = lambda: None) -> None:
        with account_instance([name], instances) as instance:
            tags = {ACCOUNT_TAG: name} if name == "bursa" else {}  # or only the partition
            result = dg.materialize([_probe], instance=instance, partition_key=name, tags=tags)
            assert result.success
            assert result.run_id in instance.get_run_ids()
            assert instance.has_dynamic_partition(ACCOUNTS_PARTITIONS_NAME, name)
            made[name] = instance
            before_exit()
        assert result.run_id not in instance.get_run_ids()  # forgotten once it is done

    def bursa_waits() -> None:
        bursa_ran.set()
        assert izmir_done.wait(timeout=60)

    errors: list[BaseException] = []  # bursa's thread's failed assertions, raised below

    def bursa() -> None:
        try:
            account("bursa", bursa_waits)
        except BaseException as error:
            errors.append(error)
            raise

    try:
        other = threading.Thread(target=bursa)
        other.start()
        assert bursa_ran.wait(timeout=60)
        account("izmir")  # while bursa's run is still in the instance
        izmir_done.set()
        assert len(made["bursa"].get_run_ids()) == 1  # bursa's, not forgotten with izmir's
        other.join(timeout=60)
        assert not other.is_alive()
        assert errors == []
        assert made["izmir"] is made["bursa"]
        assert made["izmir"].get_run_ids() == []
        assert sorted(made["izmir"].get_dynamic_partitions(ACCOUNTS_PARTITIONS_NAME)) == [
            "bursa",
            "izmir",
        ]
    finally:
        instances.close()


@dg.asset
def _failing_probe() -> None:
    raise RuntimeError("probe failed")


def _stored(instance: Any, run_id: str) -> list[Any]:
    """The types of the events ``instance`` stored for the run, in order."""
    return [
        r.event_log_entry.dagster_event_type for r in instance.get_records_for_run(run_id).records
    ]


def test_the_command_instance_keeps_run_events_and_failures_not_each_step_event() -> None:
    from dagster import DagsterEventType

    instances = CommandInstance()
    try:
        with account_instance(["izmir"], instances) as instance:
            done = dg.materialize([_probe], instance=instance, partition_key="izmir")
            # The result still carries every event the run yielded ...
            materialized = done.asset_materializations_for_node("_probe")
            assert [m.metadata["account"].value for m in materialized] == ["izmir"]
            # ... the instance keeps the run's own events and its status, not the rest.
            assert set(_stored(instance, done.run_id)) == {
                DagsterEventType.RUN_START,
                DagsterEventType.RUN_SUCCESS,
            }
            assert instance.get_run_by_id(done.run_id).is_success
            failed = dg.materialize([_failing_probe], instance=instance, raise_on_error=False)
            stored = _stored(instance, failed.run_id)
            assert DagsterEventType.STEP_FAILURE in stored
            assert stored[-1] == DagsterEventType.RUN_FAILURE
            assert DagsterEventType.STEP_START not in stored
            # So no asset has a record or an observation, and the storage answers that
            # without a query (Dagster asks at every materialization, for data versions).
            storage = instance.event_log_storage
            parent = type(storage).__mro__[1]
            assert parent.get_asset_records(storage) == []  # what a query finds
            assert parent.fetch_observations(storage, dg.AssetKey("_probe"), limit=1).records == []
            queries: list[str] = []
            sqlalchemy.event.listen(
                storage._engine, "before_cursor_execute", lambda *a: queries.append(a[2])
            )
            assert storage.get_asset_records([dg.AssetKey("_probe")]) == []
            observed = storage.fetch_observations(dg.AssetKey("_probe"), limit=1)
            assert (observed.records, observed.has_more) == ([], False)
            assert queries == []
            assert dg.materialize([_probe], instance=instance, partition_key="izmir").success
            assert queries, "the engine is the one the runs use"
    finally:
        instances.close()


def test_accounts_in_threads_share_the_detail_batch_budget() -> None:
    assert (DEFAULT_DETAIL_BATCH_SIZE, SHARED_DETAILS_BUDGET, MIN_SHARED_DETAIL_BATCH) == (
        1000,
        2000,
        100,
    )
    assert accounts_loading() is None
    assert shared_detail_batch(1000) == 1000  # one account: as configured
    with accounts_in_threads(1):
        assert shared_detail_batch(1000) == 1000
    with accounts_in_threads(4):
        assert accounts_loading() == 4
        assert shared_detail_batch(1000) == 500
        assert shared_detail_batch(50) == 50  # never above what was asked
    with accounts_in_threads(16):
        assert shared_detail_batch(1000) == 125
    with accounts_in_threads(500):
        assert shared_detail_batch(1000) == 100  # never under the floor
    assert accounts_loading() is None
    assert shared_detail_batch(1000) == 1000


def test_accounts_in_threads_allocate_arrow_memory_from_malloc_not_a_heap_per_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where pyarrow was imported before the pipeline (its default still mimalloc), the
    accounts' threads switch pyarrow's calls to malloc."""
    import pyarrow as pa

    import bulutfon_pipeline

    monkeypatch.setattr(bulutfon_pipeline, "ARROW_POOL_FROM_USER", False)
    first = pa.default_memory_pool()
    pa.set_memory_pool(pa.mimalloc_memory_pool())  # as if pyarrow had picked it first
    system = pa.system_memory_pool()

    def allocated_in_a_thread() -> tuple[str, int]:
        seen: list[tuple[str, int]] = []

        def work() -> None:
            held = system.bytes_allocated()
            values = pa.array(["x" * 100] * 10_000)  # about 1 MB of string data
            seen.append((pa.default_memory_pool().backend_name, system.bytes_allocated() - held))
            del values

        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
        return seen[0]

    try:
        with accounts_in_threads(4):
            name, grew = allocated_in_a_thread()
            assert name == "system"
            assert grew >= 1_000_000  # the account thread's array is in malloc's memory
        assert pa.default_memory_pool().backend_name == "mimalloc"
        with accounts_in_threads(1):  # one account: the default stays
            assert pa.default_memory_pool().backend_name == "mimalloc"
        monkeypatch.setattr(bulutfon_pipeline, "ARROW_POOL_FROM_USER", True)
        with accounts_in_threads(4):  # the user's choice stays
            assert pa.default_memory_pool().backend_name == "mimalloc"
    finally:
        pa.set_memory_pool(first)


#: A fresh process: imports the pipeline, then pyarrow and DuckDB; 4 threads inside
#: ``accounts_in_threads(4)`` each make an Arrow table of a frame (``to_arrow``, as the
#: loads do) and insert it into DuckDB (whose scan of an Arrow table allocates from
#: Arrow's C++ default, whatever ``pyarrow.set_memory_pool`` says); prints Arrow's
#: default allocator, the variable, and how many bytes mimalloc ever allocated.
_ARROW_POOL_SCRIPT = """
import os, threading
import bulutfon_pipeline
from bulutfon_pipeline.account_threads import accounts_in_threads
from bulutfon_pipeline.warehouse.backend import to_arrow
import duckdb, pandas as pd, pyarrow as pa, sqlalchemy as sa

table = sa.Table("t", sa.MetaData(), sa.Column("a", sa.String), sa.Column("b", sa.Integer))
con = duckdb.connect()
con.execute("CREATE TABLE t (a VARCHAR, b BIGINT)")

def work():
    rows = to_arrow(pd.DataFrame({"a": [f"x{i}" for i in range(1000)], "b": range(1000)}), table)
    cursor = con.cursor()
    cursor.execute("INSERT INTO t SELECT * FROM rows")

with accounts_in_threads(4):
    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
assert con.execute("SELECT count(*) FROM t").fetchone()[0] == 4000
print(pa.default_memory_pool().backend_name, os.environ.get("ARROW_DEFAULT_MEMORY_POOL", "-"),
      pa.mimalloc_memory_pool().total_bytes_allocated())
"""


def test_the_pipeline_makes_arrows_default_allocator_malloc_unless_the_user_chose(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import subprocess
    import sys

    monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL", raising=False)

    def run(**env: str) -> list[str]:
        done = subprocess.run(
            [sys.executable, "-c", _ARROW_POOL_SCRIPT],
            capture_output=True, text=True, check=True, env={**os.environ, **env},
        )  # fmt: skip
        return done.stdout.split()

    # Nothing in mimalloc, not even DuckDB's scans of the threads' Arrow tables.
    assert run() == ["system", "system", "0"]
    # The user's choice stays: the same work then allocates from mimalloc.
    name, variable, allocated = run(ARROW_DEFAULT_MEMORY_POOL="mimalloc")
    assert (name, variable) == ("mimalloc", "mimalloc")
    assert int(allocated) > 0


def _fresh_process_count(script: str, *args: int, **env: str) -> int:
    """The number ``script`` prints, run with ``args`` in a fresh Python process (glibc's
    malloc settings are the process's) with ``env`` added to this one's."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", script, *map(str, args)],
        capture_output=True, text=True, check=True, env={**os.environ, **env},
    )  # fmt: skip
    return int(done.stdout)


#: A fresh process (glibc fixes its arena limit once reached): 8 threads allocate at once
#: inside ``accounts_in_threads(N)``; prints how many malloc arenas (heaps) it then has.
_ARENAS_SCRIPT = """
import ctypes, sys, threading
from bulutfon_pipeline.account_threads import accounts_in_threads

libc = ctypes.CDLL(None)
libc.open_memstream.restype = ctypes.c_void_p
both = threading.Barrier(9)

def work():
    held = [bytearray(4000) for _ in range(100)]  # malloc's own, not Python's small blocks
    both.wait()
    both.wait()

with accounts_in_threads(int(sys.argv[1])):
    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    both.wait()  # every thread holds its memory now
    text, size = ctypes.c_char_p(), ctypes.c_size_t()
    stream = ctypes.c_void_p(libc.open_memstream(ctypes.byref(text), ctypes.byref(size)))
    libc.malloc_info(0, stream)
    libc.fclose(stream)
    print(text.value.decode().count("<heap nr="))
    both.wait()
    for thread in threads:
        thread.join()
"""


@pytest.mark.skipif(not is_glibc(), reason="malloc arenas are glibc's")
def test_accounts_in_threads_share_two_malloc_arenas_not_one_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)

    def arenas(threads: int, **env: str) -> int:
        return _fresh_process_count(_ARENAS_SCRIPT, threads, **env)

    # One account alone: the main thread's arena and one a thread (glibc's limit: 8 a core).
    assert arenas(1) == min(9, 8 * (os.cpu_count() or 1))
    assert arenas(4) == MALLOC_ARENAS
    assert arenas(4, MALLOC_ARENA_MAX="3") == 3  # the user's choice stays


#: A fresh process: a thread inside ``accounts_in_threads(N)`` allocates 30 blocks of
#: argv[2] bytes and holds them; prints how many of them glibc mapped on their own (the
#: IS_MMAPPED bit of the size field before each block). glibc maps a block over its
#: threshold only when its arena has no free space for it, hence "most" below.
_MMAP_SCRIPT = """
import ctypes, sys, threading
from bulutfon_pipeline.account_threads import accounts_in_threads

size = int(sys.argv[2])
mapped = []

def work():
    held = []
    for _ in range(30):
        held.append(block := bytearray(size))  # malloc's own, not Python's small blocks
        address = ctypes.addressof((ctypes.c_char * size).from_buffer(block))
        mapped.append(ctypes.c_size_t.from_address(address - 8).value & 2 == 2)

with accounts_in_threads(int(sys.argv[1])):
    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
print(sum(mapped))
"""


@pytest.mark.skipif(not is_glibc(), reason="the mmap threshold is glibc's")
def test_accounts_in_threads_map_large_blocks_on_their_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)

    def mapped(threads: int, size: int, **env: str) -> int:
        return _fresh_process_count(_MMAP_SCRIPT, threads, size, **env)

    below_glibcs = 100 * 1024  # under glibc's own threshold (128 KB), over ours
    assert mapped(4, below_glibcs) >= 25  # most on their own: freed, each goes back
    assert mapped(1, below_glibcs) == 0  # one account alone: glibc's as it was
    assert mapped(4, MALLOC_MMAP_THRESHOLD // 2) == 0  # smaller blocks stay in the arenas
    assert mapped(4, below_glibcs, MALLOC_MMAP_THRESHOLD_="1048576") == 0  # the user's


def test_accounts_in_threads_checkpoint_while_their_connections_overlap(tmp_path: Path) -> None:
    """Accounts' connections overlap, so the database is never closed (which checkpoints)
    while they load: while several load, DuckDB checkpoints at its default WAL size, or
    every row loaded would stay in memory until the last connection closed. The main
    thread, and an accounts file's only account, keep the 256 MB threshold."""
    from bulutfon_pipeline.warehouse.duckdb_connect import connect_file

    path = tmp_path / "warehouse.duckdb"
    wal = Path(f"{path}.wal")
    seen: dict[str, Any] = {}

    def load() -> None:
        with connect_file(path) as holder, connect_file(path) as con:  # holder: another account
            con.execute("CREATE TABLE t (s VARCHAR)")
            for _ in range(8):  # about 5 MB of WAL each
                con.execute("INSERT INTO t SELECT repeat('x', 1000) || range FROM range(5000)")
            seen["wal"] = wal.stat().st_size if wal.exists() else 0
            seen["in_memory"] = con.execute(
                "SELECT sum(memory_usage_bytes) FROM duckdb_memory() "
                "WHERE tag IN ('IN_MEMORY_TABLE', 'OVERFLOW_STRINGS')"
            ).fetchone()[0]
            seen["rows"] = holder.execute("SELECT count(*) FROM t").fetchone()[0]

    with accounts_in_threads(2):
        thread = threading.Thread(target=load)
        thread.start()
        thread.join()
    assert seen["rows"] == 8 * 5000
    assert seen["wal"] < 16 * 2**20  # about 40 MB were written: checkpointed on the way
    assert seen["in_memory"] < 16 * 2**20
    import duckdb

    from bulutfon_pipeline.settings import DUCKDB_CHECKPOINT_THRESHOLD

    threshold = "SELECT current_setting('checkpoint_threshold')"
    alone = duckdb.connect(config={"checkpoint_threshold": DUCKDB_CHECKPOINT_THRESHOLD})
    expected = alone.execute(threshold).fetchone()
    alone.close()
    with connect_file(path) as con:  # the main thread: one load alone keeps its threshold
        assert con.execute(threshold).fetchone() == expected

    def one_account() -> None:  # an accounts file's only account loads in a thread, alone
        with connect_file(path) as con:
            seen["alone"] = con.execute(threshold).fetchone()

    with accounts_in_threads(1):
        thread = threading.Thread(target=one_account)
        thread.start()
        thread.join()
    assert seen["alone"] == expected


def test_a_multi_account_sync_loads_each_accounts_spooled_details_in_turns(
    simulator_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bulutfon_pipeline import account_threads
    from bulutfon_pipeline.runner import run_sync
    from bulutfon_pipeline.warehouse import detail_writer
    from bulutfon_pipeline_tests.helpers import environment

    # Into DuckDB the accounts spool and load in turns, in whole batches: the shared budget
    # (10 details for 2 accounts: 5 each, 4 batches) is a server warehouse's, so 20 calls
    # go in 2 batches of BULUTFON_DETAIL_BATCH_SIZE=10.
    monkeypatch.setattr(account_threads, "SHARED_DETAILS_BUDGET", 10)
    monkeypatch.setattr(account_threads, "MIN_SHARED_DETAIL_BATCH", 1)
    # The turns know which thread holds them: a write counts as in a turn only if its own
    # thread holds it, not another account's.
    monkeypatch.setattr(account_threads, "threading", SimpleNamespace(BoundedSemaphore=_HeldBy))

    def held_here() -> bool:
        turns = account_threads.write_turns(False)
        return isinstance(turns, _HeldBy) and turns.holder == threading.get_ident()

    written: list[tuple[str, int, bool]] = []
    writing = [0, 0]  # batches being written now, the most at once
    lock = threading.Lock()
    load = detail_writer.load_details

    def in_turn(db: Any, raw: Any, *args: Any, **kwargs: Any) -> Any:
        with lock:
            written.append((kwargs["account"], len(raw), held_here()))
            writing[0] += 1
            writing[1] = max(writing)
        try:
            return load(db, raw, *args, **kwargs)
        finally:
            with lock:
                writing[0] -= 1

    monkeypatch.setattr(detail_writer, "load_details", in_turn)
    from bulutfon_pipeline.warehouse import Warehouse

    merged: list[tuple[str, str, bool]] = []

    def recorded_in_turn(method: str) -> None:
        original = getattr(Warehouse, method)

        def in_turn(self: Warehouse, *args: Any, **kwargs: Any) -> Any:
            # The directories merge together: whoever holds the turn merges all handed over.
            together = [o.account for o in args[0]] if method == "merge_directories" else []
            merged.extend((method, a, held_here()) for a in together or [self.account])
            return original(self, *args, **kwargs)

        monkeypatch.setattr(Warehouse, method, in_turn)

    recorded_in_turn("finish_listing_scan")
    recorded_in_turn("merge_directories")
    recorded_in_turn("begin_listing_scan")  # nothing staged: nothing to write, no turn
    sim = simulator_factory(days=2, calls_per_day=10, accounts=["izmir", "ankara"])
    accounts_file = tmp_path / "accounts.toml"
    accounts_file.write_text(
        '[accounts.izmir]\naccess_token_env = "TOKEN_IZMIR"\n'
        '[accounts.ankara]\naccess_token_env = "TOKEN_ANKARA"\n'
    )
    env = {
        **{k: v for k, v in sim.env().items() if k != "BULUTFON_ACCESS_TOKEN"},
        "BULUTFON_ACCESS_TOKEN": "",
        "BULUTFON_ACCOUNTS_FILE": str(accounts_file),
        "TOKEN_IZMIR": sim.env(account="izmir")["BULUTFON_ACCESS_TOKEN"],
        "TOKEN_ANKARA": sim.env(account="ankara")["BULUTFON_ACCESS_TOKEN"],
        "BULUTFON_DUCKDB_PATH": str(tmp_path / "warehouse.duckdb"),
        "BULUTFON_DATA_DIR": str(tmp_path / "data"),
        "BULUTFON_START_DATE": "2015-01-01",
        "BULUTFON_DETAIL_BATCH_SIZE": "10",
    }
    (tmp_path / "data").mkdir()
    workers = _record_duckdb_threads(monkeypatch)
    runs._asset_job.cache_clear()
    with environment(env):
        result = run_sync()
    assert result.failures == {}
    # One Dagster job per selection (listing, details), each run by both accounts.
    assert runs._asset_job.cache_info()[:2] == (2, 2)  # (hits, misses)
    for name in ("izmir", "ankara"):
        expected = len(sim.expected_tables(name)["cdrs"])
        done = result.by_account[name]
        assert (done.detail_total("new"), done.detail_total("batches")) == (expected, 2), name
        assert sorted(n for account, n, _ in written if account == name) == [10, 10], name
    assert all(held for _, _, held in written), written  # every batch written in a turn
    assert writing[1] == 1  # one at a time
    # The listings' and the directories' merges too; a scan's start takes none.
    assert sorted(merged) == [
        (method, account, method != "begin_listing_scan")
        for method in ("begin_listing_scan", "finish_listing_scan", "merge_directories")
        for account in ("ankara", "izmir")
    ]
    assert not [p for p in tmp_path.rglob("*") if "spool" in p.name]  # none left behind
    assert accounts_loading() is None  # the block ended with the sync
    # The accounts' own threads did no DuckDB work: the process's DuckDB threads did it.
    from bulutfon_pipeline.settings import DUCKDB_WORK_THREADS

    duckdb_threads = {name for name in workers if name.startswith("bulutfon-duckdb")}
    assert workers - duckdb_threads == {"MainThread"}  # the schema, before; the copy, after
    assert 1 <= len(duckdb_threads) <= DUCKDB_WORK_THREADS


class _HeldBy(threading.BoundedSemaphore):
    """A bounded semaphore that knows which thread holds it (one slot)."""

    holder: int | None = None

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        got = super().acquire(blocking, timeout)
        if got:
            self.holder = threading.get_ident()
        return got

    __enter__ = acquire

    def release(self, n: int = 1) -> None:
        self.holder = None
        super().release(n)

    def __exit__(self, *exc: object) -> None:
        self.release()


def _record_duckdb_threads(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """The names of the threads that open DuckDB connections or call their methods."""
    import duckdb

    names: set[str] = set()
    connect = duckdb.connect

    class Recorded:  # a connection that records who calls its methods
        def __init__(self, con: Any) -> None:
            self._con = con

        def __getattr__(self, name: str) -> Any:
            found = getattr(self._con, name)
            return functools.partial(self._called, found) if callable(found) else found

        def _called(self, method: Any, *args: Any, **kwargs: Any) -> Any:
            names.add(threading.current_thread().name)
            result = method(*args, **kwargs)
            return self if result is self._con else result  # execute() returns its connection

    def recorded(*args: Any, **kwargs: Any) -> Any:
        names.add(threading.current_thread().name)
        return Recorded(connect(*args, **kwargs))

    monkeypatch.setattr(duckdb, "connect", recorded)
    return names


def test_inside_schema_ready_no_account_checks_the_schema_again(tmp_path: Path) -> None:
    from bulutfon_pipeline.warehouse import Warehouse

    path = tmp_path / "w.duckdb"
    missing = tmp_path / "not-yet.duckdb"

    def tables(at: Path) -> set[str]:
        import duckdb

        con = duckdb.connect(str(at))
        try:
            return {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        finally:
            con.close()

    with Warehouse(path).schema_ready():
        assert "cdrs" in tables(path)  # ensured on entry
        Warehouse(path, account="izmir").ensure_schema()  # any account: nothing to do
        path.unlink()  # so a check of the schema would have made the file again
        Warehouse(path, account="ankara").ensure_schema()
        assert not path.exists()
        Warehouse(missing).ensure_schema()  # another warehouse is checked as before
        assert "cdrs" in tables(missing)
    Warehouse(path).ensure_schema()  # after the block: checked (and made) again
    assert "cdrs" in tables(path)


def test_the_clis_runs_share_built_resources_and_read_credentials_when_a_client_opens(
    simulator_factory: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bulutfon_pipeline.resources import BulutfonResource
    from bulutfon_pipeline.runner import run_sync
    from bulutfon_pipeline.runner.errors import user_error
    from bulutfon_pipeline_tests.helpers import environment

    # Each job's resources are built once (resources.built_resources), not by Dagster for
    # every run; the credentials are still read when a client opens, so a token changed
    # between two syncs of one process is the one used.
    opened: list[BulutfonResource] = []
    client = BulutfonResource.client

    def recorded(self: BulutfonResource, account: Any = None) -> Any:
        opened.append(self)
        return client(self, account)

    monkeypatch.setattr(BulutfonResource, "client", recorded)
    sim = simulator_factory(days=1, calls_per_day=6)
    env = {
        **sim.env(),
        "BULUTFON_DUCKDB_PATH": str(tmp_path / "warehouse.duckdb"),
        "BULUTFON_DATA_DIR": str(tmp_path / "data"),
        "BULUTFON_START_DATE": "2015-01-01",
    }
    runs._asset_job.cache_clear()
    wrong = {**env, "BULUTFON_ACCESS_TOKEN": "not-the-simulators-token"}
    with environment(wrong), pytest.raises(Exception) as failed:
        run_sync()
    assert "401" in str(user_error(failed.value))
    assert sim.stats()["listing"] == {"401": 1}
    with environment(env):
        result = run_sync()
    assert result.detail_total("new") == len(sim.expected_tables()["cdrs"]) == 6
    # The failed sync's listing run, then the listing, directory (one run) and details:
    # each job's one object served all of its runs.
    assert len(opened) == 4
    assert len({id(resource) for resource in opened}) == 2
    assert runs._asset_job.cache_info()[:2] == (1, 2)  # (hits, misses)
