"""Flow control for the detail fan-out: an AIMD concurrency limit and a fixed RPS pacer.

AIMD (additive increase, multiplicative decrease, as in TCP congestion control): the
limit on in-flight requests starts at ``max_concurrency``; a 429 halves it, and each run
of successes as long as the current limit raises it by one, up to ``max_concurrency``.

A burst of 429s answers requests that were all sent under the same limit, and should
cut the limit once, not once per request. Every cut therefore starts a new *epoch*; an
attempt remembers the epoch it was sent in, and a 429 only cuts the limit if its attempt
was sent in the current epoch.

A concurrency limit alone cannot hold a *rate* limit: with 30 ms responses one request in
flight is already 33 req/s, and between limits 3 and 4 lie 100 and 133 req/s, so near the
API's limit it oscillates and earns a 429 every few seconds (24 % of responses were 429s
at R = 30 req/s, BENCHMARKS.md). So the first cut also starts *rate pacing*: request
starts are spaced at 90 % of the success rate the API granted over the last second (a
measure of R), and the pace then probes upwards by 2 % per second without a 429. Until
the first 429 nothing is paced, so an unlimited API is not slowed down.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
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

    #: Pace at this share of the success rate measured when a 429 arrives.
    PACE_BACKOFF = 0.9
    #: Without 429s, raise the pace by this factor once per second.
    PACE_PROBE = 1.02
    #: The window over which the granted success rate is measured (seconds).
    RATE_WINDOW_S = 1.0

    def __init__(
        self,
        max_limit: int,
        initial: int | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
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
        self._clock = clock
        #: Requests/s the starts are paced at; None until the first 429.
        self.rate: float | None = None
        self._next_start = 0.0
        self._last_probe = 0.0
        self._successes: deque[float] = deque()

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

    def pace(self) -> float:
        """Book the next start under the current pace; seconds to wait before sending."""
        if self.rate is None:
            return 0.0
        now = self._clock()
        start = max(now, self._next_start)
        self._next_start = start + 1.0 / self.rate
        return start - now

    def _granted_rate(self, now: float) -> float:
        window = self._successes
        while window and window[0] < now - self.RATE_WINDOW_S:
            window.popleft()
        return len(window) / self.RATE_WINDOW_S

    def start_attempt(self) -> Attempt:
        """Mark an attempt as sent under the current limit."""
        return Attempt(self.epoch)

    async def on_rate_limited(self, attempt: Attempt) -> None:
        """Multiplicative decrease: halve the limit, once per epoch."""
        if attempt.epoch != self.epoch:
            return  # sent before the last cut; that cut already accounted for it
        now = self._clock()
        granted = self._granted_rate(now)
        if granted > 0:
            paced = self.PACE_BACKOFF * granted
            self.rate = paced if self.rate is None else min(self.rate, paced)
        elif self.rate is not None:
            self.rate *= self.PACE_BACKOFF
        self._last_probe = now
        async with self._cond:
            self.limit = max(1, self.limit // 2)
            self.epoch += 1
            self.decreases += 1
            self._streak = 0
            self.min_limit_seen = min(self.min_limit_seen, self.limit)

    async def on_success(self) -> None:
        """Additive increase: +1 after a run of ``limit`` successes; the pace (if any)
        grows by ``PACE_PROBE`` per second."""
        now = self._clock()
        self._successes.append(now)
        if len(self._successes) > 4096:  # bound the window's memory at any rate
            self._granted_rate(now)
        if self.rate is not None and now - self._last_probe >= 1.0:
            self.rate *= self.PACE_PROBE
            self._last_probe = now
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
