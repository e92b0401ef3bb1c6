"""What accounts loading in threads of one process share: turns to write an embedded
warehouse, a budget of details in memory (a server warehouse's), DuckDB's memory limit,
Arrow's allocator and the C library's malloc arenas.

``runner.accounts.run_each`` enters :func:`accounts_in_threads`; the loads take
:func:`write_turns` (``loads``, ``detail_spool``, ``Warehouse.write_turn``), hand their
directories to whoever holds one (:func:`write_in_turn`, ``directory``) or ask
:func:`shared_detail_batch` for their batch size, ``warehouse.duckdb_connect`` asks
:func:`accounts_loading` for its threads' memory limit.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from collections.abc import Iterator
from typing import Any, TypeVar

from bulutfon_pipeline.grouped_writes import WriteAll, WriteGroup
from bulutfon_pipeline.settings import DEFAULT_DETAIL_BATCH_SIZE

T = TypeVar("T")
R = TypeVar("R")

#: Details all the accounts loading in threads of one process into a server warehouse hold
#: at once: each account's batches shrink to its share of it (at least
#: ``MIN_SHARED_DETAIL_BATCH``), so a worker's memory stays flat as the accounts at once
#: grow (``shared_detail_batch``). Into DuckDB they spool instead (``write_turns``).
SHARED_DETAILS_BUDGET = 2 * DEFAULT_DETAIL_BATCH_SIZE
MIN_SHARED_DETAIL_BATCH = 100
#: glibc malloc arenas while accounts load in threads (``_threads_malloc``).
MALLOC_ARENAS = 2
#: The size from which glibc's malloc maps each block on its own while accounts load in
#: threads (``_threads_malloc``), instead of its dynamic threshold (128 KB, rising).
MALLOC_MMAP_THRESHOLD = 64 * 1024
#: Accounts loading in threads that write an embedded warehouse at the same time
#: (``write_turns``); the others go on fetching into their spools. One: 50 accounts at
#: once peaked at 423-438 MB, against 578-592 MB when all wrote at once (ANALYSIS.md).
ACCOUNTS_WRITING_AT_ONCE = 1
#: Details an account loads at least, while it fetches, when it finds the turn free: it
#: loads them then, while no other account wants the turn, and leaves less to the loads
#: that queue when the fetches end (50 x 400 calls: about 1.5 s faster a sync, at the
#: same peak; ``benchmarks/ANALYSIS.md``, session 37). Fewer would pay a transaction's
#: fixed cost for too few details.
SPOOLED_DETAILS_LEAST = 100
#: Details an account spools at most before it waits for its turn to load them (on disk,
#: about 3-5 KB each; a turn comes round faster than the accounts' limits fill it).
SPOOLED_DETAILS_MOST = 10 * DEFAULT_DETAIL_BATCH_SIZE
#: Accounts loading in threads of this process now (``accounts_in_threads``); ``None``
#: outside a multi-account sync.
_accounts_in_threads: int | None = None
#: The turns to write an embedded warehouse while ``_accounts_in_threads`` is set.
_write_turns: threading.BoundedSemaphore | None = None
#: The writes handed over to whoever holds a turn (``write_in_turn``), by kind.
_write_groups: dict[str, WriteGroup[Any, Any]] = {}
_write_groups_lock = threading.Lock()


@contextlib.contextmanager
def accounts_in_threads(threads: int) -> Iterator[None]:
    """While the block runs, up to ``threads`` accounts load in threads of this process.
    Enter it before the threads start: every DuckDB connection a process holds on one file
    must have the same configuration (no connection off the main thread may be open)."""
    global _accounts_in_threads, _write_turns, _write_groups
    before = _accounts_in_threads, _write_turns, _write_groups
    _accounts_in_threads = max(1, threads)
    _write_turns = threading.BoundedSemaphore(ACCOUNTS_WRITING_AT_ONCE)
    _write_groups = {}
    try:
        _threads_malloc(threads)
        with _shared_arrow_allocator(threads):
            yield
    finally:
        _accounts_in_threads, _write_turns, _write_groups = before


def _threads_malloc(threads: int) -> None:
    """glibc's malloc while several accounts load in threads, for the rest of the process
    (glibc fixes its arena limit when it first reaches it); a variable the user set is
    left as it is, and another C library is left alone:

    * glibc gives each new thread an arena of its own, up to 8 per core, and each keeps
      the memory its thread freed for that thread's next allocations; new threads share
      ``MALLOC_ARENAS`` arenas instead (``MALLOC_ARENA_MAX``): 50 accounts at 25 at once
      peaked at 535 MB with an arena each, 502 MB with two, at the same CPU (session 25);
    * a block of ``MALLOC_MMAP_THRESHOLD`` or more (the loads' Arrow and pandas buffers)
      that the arenas have no free space for is mapped on its own and given back when
      freed (``MALLOC_MMAP_THRESHOLD_``), rather than growing an arena whose freed space
      the accounts' other allocations keep from going back: 50 x 400 calls, the arenas
      grew to 113-118 MB against 138 MB, and peaked at 410-416 MB against 421-422 (10
      accounts: 320-323 against 323-328), at the same CPU (session 38).

    (``benchmarks/ANALYSIS.md``.)"""
    if threads <= 1 or not is_glibc():
        return
    m_arena_max, m_mmap_threshold = -8, -3  # glibc's malloc.h
    with contextlib.suppress(OSError, AttributeError):
        mallopt = ctypes.CDLL(None).mallopt
        if not os.environ.get("MALLOC_ARENA_MAX"):
            mallopt(m_arena_max, MALLOC_ARENAS)
        if not os.environ.get("MALLOC_MMAP_THRESHOLD_"):
            mallopt(m_mmap_threshold, MALLOC_MMAP_THRESHOLD)


def is_glibc() -> bool:
    """Whether this process's C library is glibc."""
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (ValueError, OSError, AttributeError):
        return False


@contextlib.contextmanager
def _shared_arrow_allocator(threads: int) -> Iterator[None]:
    """pyarrow's calls (pandas' strings, the loads' tables) allocate from the C library's
    malloc while accounts load in threads, where pyarrow was imported before the pipeline
    could choose Arrow's allocator (``bulutfon_pipeline.ARROW_MEMORY_POOL``). Its default,
    mimalloc, keeps a heap per thread: 50 accounts at 32 at once peaked at 786 MB with
    it, 555 MB without (about 7 MB per account at once). ``ARROW_DEFAULT_MEMORY_POOL``,
    when the user set it, is left as it is."""
    import bulutfon_pipeline

    if threads <= 1 or bulutfon_pipeline.ARROW_POOL_FROM_USER:
        yield
        return
    import pyarrow as pa

    before = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        yield
    finally:
        pa.set_memory_pool(before)


def accounts_loading() -> int | None:
    """How many accounts load in threads of this process now (``None``: not in a block)."""
    return _accounts_in_threads


def write_turns(server: bool) -> threading.BoundedSemaphore | None:
    """The turns (``ACCOUNTS_WRITING_AT_ONCE``) the accounts loading in threads of this
    process take to write an embedded warehouse (``server`` False): to load their spooled
    details (``detail_spool.in_turns``), to stage and merge their listing, to merge their
    directory and to record their recordings (:func:`write_turn`); ``None`` on a server,
    or when not several accounts load in threads. Writes outside a turn would overlap
    their transactions within one load's memory limit: 50 listing merges at once ran out
    of it."""
    if server or _accounts_in_threads is None or _accounts_in_threads <= 1:
        return None
    return _write_turns


def write_turn(server: bool) -> contextlib.AbstractContextManager[Any]:
    """Hold one of :func:`write_turns` while the block writes the warehouse; nothing to
    hold when there are none."""
    turns = write_turns(server)
    return turns if turns is not None else contextlib.nullcontext()


def write_in_turn(server: bool, kind: str, item: T, write_all: WriteAll[T, R]) -> R:
    """Write ``item`` through ``write_all([item])`` in one of :func:`write_turns`; while
    there are turns, hand it to the other writes of ``kind`` (naming the warehouse too)
    that whoever holds a turn makes together (``grouped_writes``). ``item``'s result."""
    turns = write_turns(server)
    if turns is None:
        return write_all([item])[0]
    with _write_groups_lock:
        group = _write_groups.setdefault(kind, WriteGroup())
    return group.write(item, turns, write_all)


def shared_detail_batch(batch_size: int) -> int:
    """An account's details per transaction into a server warehouse: ``batch_size``
    alone, its share of ``SHARED_DETAILS_BUDGET`` (never above ``batch_size``) while
    accounts load in threads."""
    if _accounts_in_threads is None or _accounts_in_threads <= 1:
        return batch_size
    share = max(MIN_SHARED_DETAIL_BATCH, SHARED_DETAILS_BUDGET // _accounts_in_threads)
    return min(batch_size, share)
