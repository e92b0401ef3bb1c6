"""AdaptiveLimiter (AIMD) and RatePacer, without any network."""

from __future__ import annotations

import asyncio

from bulutfon_pipeline.api import AdaptiveLimiter, RatePacer


def test_aimd_halves_once_per_epoch_and_grows_by_one_per_run() -> None:
    async def run() -> list[int]:
        limiter = AdaptiveLimiter(16)
        trace = [limiter.limit]
        attempts = [limiter.start_attempt() for _ in range(5)]  # five requests in flight
        for attempt in attempts:  # all answered 429
            await limiter.on_rate_limited(attempt)
        trace.append(limiter.limit)  # halved once: 16 -> 8
        await limiter.on_rate_limited(limiter.start_attempt())  # a new request, 429 again
        trace.append(limiter.limit)  # 8 -> 4
        for _ in range(4):  # a run of `limit` successes
            await limiter.on_success()
        trace.append(limiter.limit)  # 4 -> 5
        for _ in range(200):  # 5 + 6 + ... + 15 successes reach 16
            await limiter.on_success()
        trace.append(limiter.limit)  # capped at the ceiling
        for _ in range(10):
            await limiter.on_rate_limited(limiter.start_attempt())
        trace.append(limiter.limit)  # never below 1
        return trace

    assert asyncio.run(run()) == [16, 8, 4, 5, 16, 1]


def test_limiter_bounds_in_flight() -> None:
    async def run() -> int:
        limiter = AdaptiveLimiter(3)
        peak = 0

        async def task() -> None:
            nonlocal peak
            async with limiter.slot():
                peak = max(peak, limiter.in_flight)
                await asyncio.sleep(0)

        await asyncio.gather(*(task() for _ in range(20)))
        assert limiter.in_flight == 0
        return peak

    assert asyncio.run(run()) == 3


def test_rate_pacer_spaces_starts() -> None:
    now = {"t": 100.0}
    pacer = RatePacer(4.0, clock=lambda: now["t"])  # one start every 0.25 s
    assert [pacer.reserve() for _ in range(4)] == [0.0, 0.25, 0.5, 0.75]
    now["t"] = 110.0  # long idle: no burst credit is saved up beyond "now"
    assert pacer.reserve() == 0.0
    assert pacer.reserve() == 0.25
