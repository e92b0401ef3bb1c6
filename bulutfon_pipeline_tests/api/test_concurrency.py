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


def test_first_429_starts_pacing_at_90_percent_of_the_granted_rate() -> None:
    now = {"t": 50.0}

    async def run() -> list[float | None]:
        limiter = AdaptiveLimiter(16, clock=lambda: now["t"])
        trace: list[float | None] = [limiter.rate]  # unpaced until a 429
        assert limiter.pace() == 0.0
        for i in range(100):  # the API granted 100 requests in the last second
            now["t"] = 50.0 + i / 100
            await limiter.on_success()
        await limiter.on_rate_limited(limiter.start_attempt())
        trace.append(limiter.rate)  # 0.9 * 100 req/s
        now["t"] += 1.0  # a second without a 429: probe 2 % higher
        await limiter.on_success()
        trace.append(limiter.rate)
        return trace

    trace = asyncio.run(run())
    assert trace[0] is None
    assert trace[1] == 90.0
    assert trace[2] is not None and abs(trace[2] - 91.8) < 1e-9


def test_pacing_spaces_starts_at_the_pace() -> None:
    now = {"t": 10.0}
    limiter = AdaptiveLimiter(4, clock=lambda: now["t"])
    limiter.rate = 50.0  # as set by a 429
    assert [round(limiter.pace(), 6) for _ in range(3)] == [0.0, 0.02, 0.04]
