"""Flow control for the detail fan-out: an AIMD concurrency limit and a fixed RPS pacer.

AIMD (additive increase, multiplicative decrease, as in TCP congestion control): the
limit on in-flight requests starts at ``max_concurrency``; a 429 halves it, and each run
of successes as long as the current limit raises it by one, up to ``max_concurrency``.

A burst of 429s answers requests that were all sent under the same limit, and should
cut the limit once, not once per request. Every cut therefore starts a new *epoch*; an
attempt remembers the epoch it was sent in, and a 429 only cuts the limit if its attempt
was sent in the current epoch. No clock is involved, so the behaviour is deterministic.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

__all__ = ["AdaptiveLimiter", "Attempt", "RatePacer"]


class Attempt:
    """What the limiter needs to know about one request attempt: its epoch."""

    __slots__ = ("epoch",)

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch


class AdaptiveLimiter:
    """An asyncio concurrency limit that adapts to 429s (AIMD). Single event loop only.

    Args:
        max_limit: the ceiling (``max_concurrency``).
        initial: the starting limit; ``max_limit`` by default.
    """

    def __init__(self, max_limit: int, initial: int | None = None) -> None:
        if max_limit < 1:
            raise ValueError("max_limit must be >= 1")
        self.max_limit = max_limit
        self.limit = min(max_limit, initial or max_limit)
        self.in_flight = 0
        self.epoch = 0
        self.decreases = 0
        self.increases = 0
        self.min_limit_seen = self.limit
        self._streak = 0
        self._cond = asyncio.Condition()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the ``limit`` in-flight slots for the duration of the block."""
        async with self._cond:
            await self._cond.wait_for(lambda: self.in_flight < self.limit)
            self.in_flight += 1
        try:
            yield
        finally:
            async with self._cond:
                self.in_flight -= 1
                self._cond.notify_all()

    def start_attempt(self) -> Attempt:
        """Mark an attempt as sent under the current limit."""
        return Attempt(self.epoch)

    async def on_rate_limited(self, attempt: Attempt) -> None:
        """Multiplicative decrease: halve the limit, once per epoch."""
        if attempt.epoch != self.epoch:
            return  # sent before the last cut; that cut already accounted for it
        async with self._cond:
            self.limit = max(1, self.limit // 2)
            self.epoch += 1
            self.decreases += 1
            self._streak = 0
            self.min_limit_seen = min(self.min_limit_seen, self.limit)

    async def on_success(self) -> None:
        """Additive increase: +1 after a run of ``limit`` successes."""
        self._streak += 1
        if self._streak < self.limit or self.limit >= self.max_limit:
            return
        async with self._cond:
            self._streak = 0
            self.limit += 1
            self.increases += 1
            self._cond.notify_all()


class RatePacer:
    """A fixed requests-per-second cap: spaces request starts ``1/rps`` apart.

    Thread-safe, so the sync client and the async fan-out it runs in a background thread
    share one budget. :meth:`reserve` books the next start time and returns how long the
    caller must wait; the caller sleeps with its own (sync or async) sleep.
    """

    def __init__(self, rps: float, clock: Callable[[], float] = time.monotonic) -> None:
        if rps <= 0:
            raise ValueError("rps must be > 0")
        self.interval = 1.0 / rps
        self._clock = clock
        self._next = 0.0
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Book a start slot; returns the seconds to wait before sending."""
        with self._lock:
            now = self._clock()
            start = max(now, self._next)
            self._next = start + self.interval
            return start - now
