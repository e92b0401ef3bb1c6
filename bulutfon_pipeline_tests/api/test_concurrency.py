"""AdaptiveLimiter and RatePacer against a fake clock, without any network.

The flow-control tests drive the limiter with a small model of the API (a token bucket,
random 429s, a second client, outages) in 10 ms ticks of a fake clock, one case per
behaviour of issue 12, and assert the pace and the rates it reaches as numbers.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from bulutfon_pipeline.api import AdaptiveLimiter, RatePacer

TICK = 0.01


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class ModelAPI:
    """The API's side: a per-token bucket (capacity one second of ``rate(t)``), random
    429s and outages. ``other(t)`` is another client's requests/s on the same token."""

    rate: Callable[[float], float] = lambda t: 0.0
    random_429: float = 0.0
    other: Callable[[float], float] = lambda t: 0.0
    outage: tuple[float, float] | None = None
    rng: random.Random = field(default_factory=lambda: random.Random(12))
    tokens: float = -1.0
    last_r: float = -1.0
    last_t: float = 0.0

    def answer(self, t: float) -> int:
        r = self.rate(t)
        if r != self.last_r:  # a limit set anew starts with a full bucket (as update_config)
            self.tokens, self.last_r = r, r
        self.tokens = min(r, self.tokens + r * (t - self.last_t))
        self.last_t = t
        if self.outage and self.outage[0] <= t < self.outage[1]:
            return 503
        if r > 0:
            if self.tokens < 1:
                return 429
            self.tokens -= 1
        if self.random_429 and self.rng.random() < self.random_429:
            return 429
        return 200


@dataclass
class Run:
    ok: list[int]  # our accepted requests per second
    limited: list[int]  # our 429s per second
    sent: list[int]
    paces: list[float | None]  # the limiter's pace at the end of each second
    limiter: AdaptiveLimiter

    def ok_rate(self, start: int, end: int) -> float:
        return sum(self.ok[start:end]) / (end - start)

    def share_429(self, start: int = 0, end: int | None = None) -> float:
        sent = sum(self.sent[start:end])
        return sum(self.limited[start:end]) / sent


def drive(api: ModelAPI, seconds: int, capacity: float = 600.0) -> Run:
    """Send as fast as ``capacity`` (what max_concurrency / latency allows) or the pace
    allows, whichever is lower, spread evenly over each tick; answers come at once."""
    clock = FakeClock()
    limiter = AdaptiveLimiter(16, clock=clock)
    ok, limited, sent = [0] * seconds, [0] * seconds, [0] * seconds
    paces: list[float | None] = []
    carry = other_carry = 0.0
    for step in range(int(seconds / TICK)):
        t = clock.now = step * TICK
        second = int(t)
        other_carry += api.other(t) * TICK
        while other_carry >= 1:  # the other client's requests come first in each tick
            other_carry -= 1
            api.answer(t)
        if step % int(1 / TICK) == 0 and step:
            paces.append(limiter.rate)
        pace = capacity if limiter.rate is None else min(capacity, limiter.rate)
        carry += pace * TICK
        count, carry = int(carry), carry - int(carry)
        for i in range(count):
            clock.now = t + TICK * i / count
            attempt = limiter.start_attempt()
            status = api.answer(clock.now)
            sent[second] += 1
            if status == 200:
                ok[second] += 1
                limiter.record(attempt, limited=False)
            elif status == 429:
                limited[second] += 1
                limiter.record(attempt, limited=True)
    paces.append(limiter.rate)
    return Run(ok, limited, sent, paces, limiter)


def test_1_clean_api_is_never_paced() -> None:
    run = drive(ModelAPI(), 10)
    assert run.limiter.rate is None
    assert run.limiter.decreases == 0
    assert run.ok_rate(0, 10) == 600.0


@pytest.mark.parametrize("limit", [100.0, 400.0])
def test_2_fixed_limit_is_held_just_under_it(limit: float) -> None:
    run = drive(ModelAPI(rate=lambda t: limit), 40)
    paces = [p for p in run.paces[5:] if p is not None]
    # paced from the first second on: just under the limit, probing up (a doubling after
    # a clear second) until 429s come back
    assert len(paces) == 35
    assert 0.8 * limit <= min(paces) and max(paces) <= 2.2 * limit
    assert sorted(paces)[len(paces) // 2] == pytest.approx(limit, rel=0.1)
    assert run.limiter.estimate == pytest.approx(limit, rel=0.1)
    assert run.ok_rate(5, 40) >= 0.97 * limit  # the API is kept busy
    assert run.share_429() < 0.04
    assert run.share_429(5) < 0.03  # after the first cut, only the probes meet the limit


@pytest.mark.parametrize("share", [0.05, 0.20])
def test_3_sporadic_429s_do_not_slow_the_pace(share: float) -> None:
    run = drive(ModelAPI(random_429=share), 30)
    limiter = run.limiter
    assert limiter.rate is None  # judged sporadic: the cut was undone
    assert 1 <= limiter.sporadic <= 2 and limiter.decreases <= 4  # a second verdict refines
    assert limiter.noise == pytest.approx(share, abs=0.02)
    assert sum(p is None for p in run.paces) >= 20  # unpaced all but a few seconds
    # all the capacity is used; (1 - share) of it is accepted
    assert run.ok_rate(3, 30) >= 0.96 * (1 - share) * 600


def test_4_shared_limit_is_regained_within_5_s_of_the_other_client_leaving() -> None:
    # R = 60 req/s; another client polls at 50 req/s from t = 10 s to 30 s.
    run = drive(ModelAPI(rate=lambda t: 60.0, other=lambda t: 50.0 if 10 <= t < 30 else 0.0), 45)
    assert 0.7 * 10 <= run.ok_rate(12, 30) <= 20.0  # while shared, about what was left
    reached = next(s for s in range(30, 45) if run.ok[s] >= 0.85 * 60)
    assert reached - 30 <= 5
    assert run.ok_rate(36, 45) >= 0.9 * 60


def test_5_limit_that_drops_and_comes_back() -> None:
    # R = 200, 50 from t = 10 s to 30 s, then 200 again.
    run = drive(ModelAPI(rate=lambda t: 50.0 if 10 <= t < 30 else 200.0), 45)
    available = 10 * 200 + 20 * 50 + 15 * 200
    assert sum(run.ok) >= 0.85 * available
    assert run.share_429() < 0.05
    assert run.ok_rate(12, 30) >= 0.9 * 50  # followed the drop within 2 s
    assert run.ok_rate(36, 45) >= 0.9 * 200  # and the rise within 6 s


def test_6_503_bursts_say_nothing_about_the_rate() -> None:
    run = drive(ModelAPI(outage=(5.0, 10.0)), 15)
    assert run.limiter.rate is None and run.limiter.decreases == 0
    assert run.ok[5:10] == [0] * 5 and run.ok_rate(10, 15) == 600.0


def test_7_slow_api_keeps_every_slot_busy() -> None:
    # 16 in flight at 300 ms: 53.3 req/s is all the concurrency allows; never paced.
    run = drive(ModelAPI(), 20, capacity=16 / 0.3)
    assert run.limiter.rate is None and run.limiter.limit == 16
    assert run.ok_rate(0, 20) == pytest.approx(16 / 0.3, abs=0.1)


def test_answers_to_requests_sent_before_a_cut_are_not_counted() -> None:
    clock = FakeClock()
    limiter = AdaptiveLimiter(16, clock=clock)
    early = [limiter.start_attempt() for _ in range(21)]
    for attempt in early[:10]:
        limiter.record(attempt, limited=True)
    for attempt in early[10:20]:
        limiter.record(attempt, limited=False)
    clock.now = 1.0
    limiter.record(early[20], limited=False)  # the interval ends: 10 of 21 were 429s
    assert (limiter.decreases, limiter.epoch) == (1, 1)
    # 11 accepted in the second since the first 429: the bucket's refill rate
    assert limiter.estimate == 11.0 and limiter.rate == pytest.approx(10.45)
    for attempt in early * 3:  # late answers to the old pace change nothing
        limiter.record(attempt, limited=True)
    assert (limiter.decreases, limiter.rate) == (1, pytest.approx(10.45))


def test_slots_cap_the_requests_in_flight() -> None:
    async def run() -> int:
        limiter = AdaptiveLimiter(3)
        peak = 0

        async def one() -> None:
            nonlocal peak
            async with limiter.slot():
                peak = max(peak, limiter.in_flight)
                await asyncio.sleep(0)

        await asyncio.gather(*(one() for _ in range(20)))
        assert limiter.in_flight == 0
        return peak

    assert asyncio.run(run()) == 3


def test_pace_spaces_starts_at_the_rate() -> None:
    clock = FakeClock()
    limiter = AdaptiveLimiter(16, clock=clock)
    assert limiter.pace() == 0.0  # unpaced
    limiter.rate = 50.0
    assert [round(limiter.pace(), 6) for _ in range(3)] == [0.0, 0.02, 0.04]


def test_rate_pacer_spaces_starts() -> None:
    clock = FakeClock()
    pacer = RatePacer(10, clock=clock)
    assert [round(pacer.reserve(), 6) for _ in range(3)] == [0.0, 0.1, 0.2]
    clock.now = 5.0
    assert pacer.reserve() == 0.0


def test_invalid_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="max_limit"):
        AdaptiveLimiter(0)
    with pytest.raises(ValueError, match="rps"):
        RatePacer(0)
