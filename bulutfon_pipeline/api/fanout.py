"""The adaptive fan-out: many requests under one flow-control limiter, and its sync bridge.

:func:`fan_out` runs one coroutine per item under an
:class:`~bulutfon_pipeline.api.concurrency.AdaptiveLimiter`; :func:`limited_attempt` is
the limiter's part in every attempt of the async retry loop (its pace before sending,
429s and successes after). Every use of the limiter is in this module.
:func:`drain_in_thread` runs an async generator on an event loop in a background thread
and yields its items to sync code (the sync client's batch methods).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Iterable
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

from bulutfon_pipeline.api.concurrency import AdaptiveLimiter
from bulutfon_pipeline.api.core import AsyncSleep
from bulutfon_pipeline.api.retry import Outcome

__all__ = [
    "WORKERS_PER_SLOT",
    "drain_in_thread",
    "fan_out",
    "limited_attempt",
    "new_limiter",
    "retry_wait",
]

T = TypeVar("T")
C = TypeVar("C")
_Item = TypeVar("_Item")
_Result = TypeVar("_Result")


def new_limiter(max_concurrency: int) -> AdaptiveLimiter:
    """The limiter of one fan-out, starting (and capped) at ``max_concurrency``."""
    return AdaptiveLimiter(max_concurrency)


#: Fan-out workers per in-flight slot: items waiting out a Retry-After (1 s) or a backoff
#: hold a worker but no slot. 20 % of 600 req/s answered ``Retry-After: 1`` parks ~120.
WORKERS_PER_SLOT = 16


async def limited_attempt(
    limiter: AdaptiveLimiter | None,
    sleep: AsyncSleep,
    attempt_once: Callable[[], Awaitable[Outcome]],
    pace_delay: Callable[[], float],
) -> Outcome:
    """One attempt: it holds one of the limiter's slots, is paced (``pace_delay``, the fixed
    ``max_rps`` cap, then the limiter's pace) and reports its answer to the limiter.

    The slot is held for the attempt only: a request that then waits out its Retry-After
    or backoff is re-queued and leaves its slot to others.
    """
    if limiter is None:
        if (wait := pace_delay()) > 0:
            await sleep(wait)
        return await attempt_once()
    async with limiter.slot():
        if (wait := pace_delay()) > 0:
            await sleep(wait)
        await limiter.turn(sleep)
        mark = limiter.start_attempt()
        outcome = await attempt_once()
    if outcome.status == 429:
        await limiter.on_rate_limited(mark)
    elif outcome.ok:
        await limiter.on_success(mark)
    if not outcome.ok:
        limiter.spares.release()  # this item now waits (or ends) without a slot
    return outcome


def retry_wait(limiter: AdaptiveLimiter | None, outcome: Outcome, delay: float) -> float:
    """The wait before retrying ``outcome``: a 429 without ``Retry-After`` under a limiter
    waits at most ``RETRY_429_MAX_S``, because the limiter's pace, not this request's
    backoff, keeps the rate under the limit (a long backoff would only leave the request
    behind for the tail)."""
    if limiter is not None and outcome.status == 429 and outcome.retry_after is None:
        return min(delay, limiter.RETRY_429_MAX_S)
    return delay


async def fan_out(
    items: Iterable[_Item],
    fetch_one: Callable[[_Item, AdaptiveLimiter], Awaitable[_Result]],
    limiter: AdaptiveLimiter,
    workers: int,
) -> AsyncGenerator[_Result, None]:
    """Run ``fetch_one`` over ``items`` under one adaptive flow-control limiter.

    ``workers`` workers pull items lazily from a shared iterator, so each item goes to
    one worker and nothing is materialized up front; the limiter's slots (taken per
    attempt, in :func:`limited_attempt`) cap the requests in flight, and the extra workers
    keep them busy while other items wait out a Retry-After or a backoff. Only
    ``limiter.max_limit`` workers start at once; each spare is made when an attempt fails
    (``limiter.spares``), so a clean run has no worker queued on a slot (a handoff per
    request that cost ~10 us each) and no idle task. Results come
    back through a queue of ``limiter.max_limit`` entries as they complete. ``fetch_one``
    reports a per-item failure in its result; any other exception (a bug, a failing item
    source) is re-raised here after the workers are cancelled.
    """
    source = iter(items)
    done = object()
    results: asyncio.Queue[Any] = asyncio.Queue(maxsize=limiter.max_limit)
    started = min(workers, limiter.max_limit)

    async def worker() -> None:
        try:
            for item in source:
                result = await fetch_one(item, limiter)
                await results.put(result)
        except Exception as exc:  # a bug or a failing item source: surface it
            await results.put(_Crash(exc))
        await results.put(done)

    async def start_spares() -> None:
        # A spare is made when an attempt fails (``limiter.spares``), not up front: 240
        # idle tasks per fan-out at the default concurrency, held by every account at once.
        nonlocal started
        while started < workers:
            await limiter.spares.acquire()
            started += 1
            tasks.append(asyncio.create_task(worker()))

    tasks = [asyncio.create_task(worker()) for _ in range(started)]
    if started < workers:
        tasks.append(asyncio.create_task(start_spares()))
    finished = 0
    try:
        # Once every started worker is done, the items are exhausted: a spare not
        # started yet has nothing left to pull.
        while finished < started:
            got = await results.get()
            if got is done:
                finished += 1
            elif isinstance(got, _Crash):
                raise got.error
            else:
                yield got
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class _Crash:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


#: The process's one event loop for every fan-out (its daemon thread, and the process it
#: belongs to: a forked child makes its own), made on first use.
_LOOP: tuple[asyncio.AbstractEventLoop, threading.Thread, int] | None = None
_LOOP_LOCK = threading.Lock()


def _fan_out_loop() -> asyncio.AbstractEventLoop:
    """The event loop every fan-out of this process runs on, in one daemon thread.

    One loop for all of them, not one thread and loop per fan-out: with many accounts
    loading at once (``BULUTFON_ACCOUNTS_AT_ONCE``), each fan-out's own loop thread was
    one more thread contending for the GIL, and every socket wait a wake-up of its own.
    """
    global _LOOP
    with _LOOP_LOCK:
        if _LOOP is None or _LOOP[2] != os.getpid() or not _LOOP[1].is_alive():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="bulutfon-fan-out", daemon=True)
            thread.start()
            _LOOP = (loop, thread, os.getpid())
        return _LOOP[0]


def drain_in_thread(
    open_client: Callable[[], AbstractAsyncContextManager[C]],
    start: Callable[[C], AsyncGenerator[T, None]],
    *,
    backlog: int,
    name: str,
) -> Generator[T, None, None]:
    """Run ``start(client)`` on the process's fan-out event loop (a background thread)
    and yield its items here, with at most ``backlog`` finished items waiting.

    ``open_client()`` is entered on that loop. Closing this generator early cancels the
    async work and waits until it has closed its client. ``name`` names the task.
    """
    handoff: queue.Queue[tuple[str, Any]] = queue.Queue()
    started = threading.Event()
    finished = threading.Event()
    runtime: dict[str, Any] = {}
    # The backlog's count, shared by the two threads under ``lock``: the consumer wakes the
    # loop only when the pump waits for room (``waiter``), not once per item: a rate-limited
    # account's items come one at a time, and each wake of the loop cost a write to its
    # pipe and a round of its selector.
    lock = threading.Lock()
    room: dict[str, Any] = {"taken": 0, "waiter": None}

    async def pump() -> None:
        runtime.update(task=asyncio.current_task())
        started.set()
        handed = 0
        async with open_client() as client, contextlib.aclosing(start(client)) as results:
            async for result in results:
                while True:
                    with lock:
                        if handed - room["taken"] < backlog:
                            break
                        room["waiter"] = waiter = asyncio.get_running_loop().create_future()
                    await waiter
                handed += 1
                handoff.put(("item", result))

    async def run() -> None:
        try:
            await pump()
            handoff.put(("done", None))
        except asyncio.CancelledError:
            handoff.put(("done", None))
        except BaseException as exc:
            handoff.put(("error", exc))
        finally:
            started.set()
            finished.set()

    loop = _fan_out_loop()
    loop.call_soon_threadsafe(lambda: loop.create_task(run(), name=f"bulutfon-{name}"))
    started.wait()
    try:
        while True:
            kind, value = handoff.get()
            if kind == "item":
                with lock:
                    room["taken"] += 1
                    waiter, room["waiter"] = room["waiter"], None
                if waiter is not None:
                    loop.call_soon_threadsafe(_wake, waiter)
                yield value
            elif kind == "done":
                return
            else:
                raise value
    finally:
        if not finished.is_set() and "task" in runtime:
            loop.call_soon_threadsafe(runtime["task"].cancel)
        finished.wait()


def _wake(waiter: asyncio.Future[None]) -> None:
    """Let the pump of :func:`drain_in_thread` on (unless its task was cancelled)."""
    if not waiter.done():
        waiter.set_result(None)
