"""The flow control of main before issue 12, kept as the peer of ``benchmarks/flow.py``.

``LegacyLimiter`` is main's ``api/concurrency.py`` ``AdaptiveLimiter`` (AIMD on the
in-flight limit, a pace set at 90 % of the granted rate after each 429, probing 2 %/s)
and ``LegacyAsyncClient`` is today's ``AsyncBulutfonClient`` with main's
``_with_retries`` and ``_fan_out`` (the slot is held for a request's whole life,
Retry-After waits included). Only the flow control differs between the two peers: the
HTTP engine, parsing and retry policy are shared.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

from bulutfon_pipeline.api import AsyncBulutfonClient
from bulutfon_pipeline.api.fanout import fan_out
from bulutfon_pipeline.api.retry import Outcome


class LegacyAttempt:
    __slots__ = ("epoch",)

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch


class LegacyLimiter:
    """main's AdaptiveLimiter, verbatim but for the name."""

    PACE_BACKOFF = 0.9
    PACE_PROBE = 1.02
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
        self.rate: float | None = None
        self._next_start = 0.0
        self._last_probe = 0.0
        self._successes: deque[float] = deque()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
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

    def start_attempt(self) -> LegacyAttempt:
        return LegacyAttempt(self.epoch)

    async def on_rate_limited(self, attempt: LegacyAttempt) -> None:
        if attempt.epoch != self.epoch:
            return
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
        now = self._clock()
        self._successes.append(now)
        if len(self._successes) > 4096:
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


class LegacyAsyncClient(AsyncBulutfonClient):
    """Today's async client with main's fan-out and retry loop over ``LegacyLimiter``."""

    async def _with_retries(
        self, attempt_once: Callable[[], Awaitable[Outcome]], limiter: Any
    ) -> Any:
        retries = self._retries()
        while True:
            if (wait := self._pace_delay()) > 0:
                await self._sleep(wait)
            if limiter is not None and (wait := limiter.pace()) > 0:
                await self._sleep(wait)
            mark = limiter.start_attempt() if limiter is not None else None
            outcome = await attempt_once()
            if limiter is not None and mark is not None:
                if outcome.status == 429:
                    await limiter.on_rate_limited(mark)
                elif outcome.ok:
                    await limiter.on_success()
            delay = retries.after(outcome)
            if retries.done:
                return retries.value
            await self._sleep(delay)

    def _fan_out(  # type: ignore[override]
        self, items: Iterable[Any], fetch_one: Callable[[Any, Any], Awaitable[Any]]
    ) -> AsyncGenerator[Any, None]:
        workers = self.config.max_concurrency
        limiter = LegacyLimiter(workers)
        self.last_limiter = limiter  # type: ignore[assignment]

        async def held(item: Any, lim: Any) -> Any:
            # main's fan-out held the slot for the item's whole life, waits included
            async with lim.slot():
                return await fetch_one(item, lim)

        return fan_out(items, held, limiter, workers)  # type: ignore[arg-type]
