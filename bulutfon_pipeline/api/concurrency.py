"""Flow control for the detail fan-out: an in-flight cap and a rate pacer that learns the
API's limit from the share of 429s, and a fixed RPS pacer.

The API answers "slow down" (429) for two kinds of reasons, and only one of them is about
our rate:

* a **rate limit** (a token bucket per token, maybe shared with another client): its
  429s keep coming as long as we send faster than it refills, and their share grows with
  our rate;
* **sporadic** 429s (a proxy, a brief overload, another integration): a share of requests
  that stays the same whatever our rate.

So a single 429 is not a verdict on the rate, and ``Retry-After`` is a wait for *that*
request, not for the whole fan-out: the caller re-queues the request after the wait and
frees its in-flight slot meanwhile (see ``AsyncBulutfonClient._with_retries``).

The limiter measures, per *interval* (about a second, at least ``MIN_SAMPLES``
responses), the share ``q`` of 429s among the answers to requests sent under the current
pace, and compares it with ``noise``, the share of 429s that did not respond to the rate:

* ``q <= noise + tolerance`` (binomial: three standard deviations): not limited. The
  pace, if any, grows: by ``FAST_GROWTH`` per second while under ``SLOW_START`` × the
  last estimate of the limit (TCP's slow start below ssthresh), by ``NEAR_GROWTH`` per
  second up to ``BEYOND`` × the estimate (where the limit probably is, like TCP's
  congestion avoidance near the last loss), then it *probes* beyond: a first step of
  ``1 + PROBE_STEP`` per second, then ``FAST_GROWTH`` for each clear interval after it.
  A limit that has not moved is met on the gentle first step, where its 429s are few; a
  limit found where it was before (``STABLE``) is probed that way, one that moved (a
  limit that changes, a client sharing it) from the fast steps on, so it is found
  within seconds when it comes back up. A pace that does not bind (we sent less than it
  allows: the machine, the tail, retries waiting) is held, neither grown nor dropped
  (TCP's congestion window validation, RFC 7661). A calm interval right after a cut
  that kept the share of known sporadic 429s undoes the cut.
* otherwise the interval is *congested*. If the previous interval was a cut and the
  share did not change although the rate did, the 429s are **sporadic**: ``noise``
  takes the share and the cut (or the cuts in a row) is undone. Otherwise it is a
  **rate limit**: what the API accepted since the interval's first 429 is its rate
  (token-bucket estimation: a drained bucket grants exactly its refill rate; an interval
  whose first 429 came late runs on ``MEASURE_S`` to measure it), and the pace is set to
  ``CUT`` × that.

An interval ends early on a burst of 429s (``EARLY_429S``), so a limit that drops is
followed within a fraction of a second; the interval right after a cut, which tests it,
ends early only if most answers are refused. Answers to requests sent before a change of
pace (an *epoch*) are not counted for the new pace, and the starts take their turns
(:meth:`AdaptiveLimiter.turn`) with the spacing of the pace when the turn comes, not a
time booked under an older pace. Until the first congested interval nothing is paced,
so an unlimited API is not slowed down. 5xx answers and timeouts say nothing about the
rate; the caller retries them with backoff.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

__all__ = ["AdaptiveLimiter", "Attempt", "RatePacer"]


class Attempt:
    """One request attempt as the limiter sees it: the epoch (pace) it was sent under."""

    __slots__ = ("epoch",)

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch


class AdaptiveLimiter:
    """In-flight cap plus an adaptive rate pacer for one fan-out. Single event loop only.

    Args:
        max_limit: requests in flight at most (``max_concurrency``).
        initial: a lower in-flight cap, if given (kept from the AIMD design's signature).
        clock: monotonic seconds (a fake clock in tests).
    """

    #: An interval lasts this long (seconds) ...
    INTERVAL_S = 1.0
    #: ... and holds at least this many answers before it is judged.
    MIN_SAMPLES = 12
    #: End an interval early after this many 429s (a limit that just dropped) ...
    EARLY_429S = 5
    #: ... this long (seconds) after its first 429, so the accepted rate means something.
    EARLY_MIN_S = 0.025
    #: An interval whose first 429 came late runs on until this long (s) after it, so the
    #: rate the API accepted since then is measured over enough answers.
    MEASURE_S = 0.25
    #: A burst's 429 share exceeds ``noise`` by this much at least.
    BURST_EXCESS = 0.1
    #: Pace at this share of the rate the API accepted in a congested interval.
    CUT = 0.95
    #: Growth per second of the pace below ``BEYOND`` x the limit's last estimate.
    NEAR_GROWTH = 1.05
    #: Growth per second beyond it: the limit moved up, find it fast.
    FAST_GROWTH = 2.0
    BEYOND = 1.0
    #: The first step of growth beyond the estimate (per second) is ``1 + PROBE_STEP``;
    #: each clear interval multiplies its excess by ``PROBE_ACCEL`` (1.1, then 2.0).
    PROBE_STEP = 0.1
    PROBE_ACCEL = 10.0
    #: A cut's estimate within this share of the previous one finds the limit unmoved.
    STABLE = 0.15
    #: Below this share of the estimate the pace grows by ``FAST_GROWTH`` (TCP's slow
    #: start below ssthresh): a pace left far under the limit (a competing client that
    #: has gone, a cut measured over a short burst) gets back within seconds.
    SLOW_START = 0.5
    #: After a cut, 429s that keep at least this share of the cut interval's are sporadic
    #: (a limit's share falls to about zero; a limit that fell makes it grow).
    SPORADIC_SHARE = 0.5
    #: The smallest excess of the 429 share over ``noise`` that counts as congestion.
    MIN_TOLERANCE = 0.02
    #: Weight of a calm interval's lower share in the running ``noise`` estimate.
    NOISE_WEIGHT = 0.2
    #: A 429 without Retry-After waits at most this long (s) before it goes again: the
    #: pace keeps the rate, so the request need not back off on its own.
    RETRY_429_MAX_S = 0.5
    #: ``noise`` never exceeds this: an API refusing more than a third is limiting, not noisy.
    MAX_NOISE = 0.35

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
        #: The in-flight cap; this design keeps it at ``max_limit`` (the pace does the work).
        self.limit = min(max_limit, initial or max_limit)
        self.in_flight = 0
        self._slots = asyncio.Semaphore(self.limit)
        #: Released once per attempt that did not succeed: its item now waits out a
        #: Retry-After or a backoff without a slot, and the fan-out starts a spare worker
        #: to keep the slot busy (see ``fanout.fan_out``).
        self.spares = asyncio.Semaphore(0)
        self._clock = clock
        #: Requests/s the starts are paced at; None while unpaced.
        self.rate: float | None = None
        #: The latest estimate of the API's rate limit (accepted req/s when congested).
        self.estimate: float | None = None
        #: The share of 429s that does not depend on our rate (sporadic 429s).
        self.noise = 0.0
        self.epoch = 0
        #: Pace cuts (rate limit seen), sporadic verdicts (cut undone), pace raises.
        self.decreases = 0
        self.sporadic = 0
        self.increases = 0
        self.min_rate_seen: float | None = None
        #: When the latest paced start went (:meth:`turn`); the starts take turns.
        self._last_start = -math.inf
        self._turns = asyncio.Lock()
        self._t0 = clock()
        self._ok = 0
        self._limited = 0
        #: When the interval's first 429 came, and the successes since: a drained bucket
        #: grants its refill rate, so these measure the limit without the bucket's burst.
        self._first_429: float | None = None
        self._ok_after = 0
        #: (429 share, pace before the cuts) of the interval that caused the latest cut,
        #: until the next interval is judged; the pace is the one before a run of cuts in
        #: a row (a burst's cut and the one after it, both on the same sporadic 429s).
        self._cut: tuple[float, float | None] | None = None
        #: Clear intervals in a row beyond the estimate (the probe's step grows with them).
        self._probes = 0

    @property
    def min_limit_seen(self) -> int:
        """The lowest in-flight cap (constant in this design; kept for metadata)."""
        return self.limit

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the ``limit`` in-flight slots (FIFO) for the duration of the block."""
        async with self._slots:
            self.in_flight += 1
            try:
                yield
            finally:
                self.in_flight -= 1

    async def turn(self, sleep: Callable[[float], Awaitable[None]]) -> None:
        """Wait for this request's start under the current pace: one start every
        ``1 / rate`` seconds, the spacing taken from the pace when the start's turn
        comes, so a cut or a rise applies from the next start on.

        The starts wait their turn one after another instead of each booking a time
        ahead (main's old design): booked times keep the pace they were booked at, so after a
        cut up to ``limit`` of them would go at the old pace into a drained bucket (and
        count as the new pace's 429s), and after a rise they would hold the new pace back
        by up to ``limit / rate`` seconds, over a second at a low pace.
        """
        if self.rate is None:
            return  # unpaced: no waiting, no lock
        async with self._turns:
            if self.rate is not None:
                due = self._last_start + 1.0 / self.rate
                wait = due - self._clock()
                if wait > 0:
                    await sleep(wait)
                    # Counted at its due time, not when the sleep woke (an event loop
                    # wakes ~1 ms late: a fifth of a 200 req/s pace); the next waits less.
                    self._last_start = due
                    return
            self._last_start = self._clock()

    def start_attempt(self) -> Attempt:
        """Mark an attempt as sent under the current pace."""
        return Attempt(self.epoch)

    async def on_rate_limited(self, attempt: Attempt) -> None:
        """Count a 429 answer to ``attempt`` (judged with its interval)."""
        self.record(attempt, limited=True)

    async def on_success(self, attempt: Attempt | None = None) -> None:
        """Count a successful answer to ``attempt`` (judged with its interval)."""
        self.record(attempt, limited=False)

    def record(self, attempt: Attempt | None, *, limited: bool) -> None:
        """Count one answer and judge the interval when it is complete."""
        if attempt is not None and attempt.epoch != self.epoch:
            return  # sent under an older pace: it says nothing about the current one
        now = self._clock()
        if limited:
            self._limited += 1
            if self._first_429 is None:
                self._first_429 = now
        else:
            self._ok += 1
            if self._first_429 is not None:
                self._ok_after += 1
        elapsed = now - self._t0
        if self._ok + self._limited < self.MIN_SAMPLES:
            return
        if elapsed < self.INTERVAL_S and not self._burst(now):
            return
        if (
            self._first_429 is not None
            and now - self._first_429 < self.MEASURE_S
            and elapsed < self.INTERVAL_S + self.MEASURE_S
            and elapsed >= self.INTERVAL_S
        ):
            return  # 429s came late: measure what the API accepts before judging
        self._judge(now, elapsed)

    def _burst(self, now: float) -> bool:
        """Whether the 429s since the interval's first one already show congestion."""
        if self._first_429 is None or self._limited < self.EARLY_429S:
            return False
        if now - self._first_429 < self.EARLY_MIN_S:
            return False
        since = self._ok_after + self._limited
        share = self._limited / since
        if self._cut is not None:
            # The interval after a cut tests that cut and runs full, unless the limit
            # plainly fell meanwhile: most answers refused, twice the cut's share.
            return since >= self.MIN_SAMPLES and share >= max(0.5, 2.0 * self._cut[0])
        # Checked on every answer, so a stricter bar than the interval's own judgement.
        return since >= self.MIN_SAMPLES and self._congested(share, since, 4.0, self.BURST_EXCESS)

    def _congested(
        self, share: float, samples: int, deviations: float = 3.0, floor: float = MIN_TOLERANCE
    ) -> bool:
        """Whether ``share`` is above what ``noise`` explains: by more than ``deviations``
        binomial standard deviations and more than ``floor``."""
        spread = max(self.noise, 0.01) * (1.0 - self.noise)
        tolerance = max(floor, deviations * math.sqrt(spread / samples))
        return share > self.noise + tolerance

    def _judge(self, now: float, elapsed: float) -> None:
        samples = self._ok + self._limited
        share = self._limited / samples  # over the whole interval
        accepted = self._ok / elapsed
        if self._first_429 is not None and now - self._first_429 >= self.EARLY_MIN_S:
            accepted = self._ok_after / (now - self._first_429)
        burst = elapsed < self.INTERVAL_S  # ended early by a burst: congested
        sent = samples / elapsed
        cut, self._cut = self._cut, None
        if not burst and not self._congested(share, samples):
            # Calm: the noise follows a lower share down. It never creeps up while paced:
            # 429s that grow with a pace probing a limit would become "noise" that way;
            # only a sporadic verdict (a cut that left the share unchanged) or an unpaced
            # interval (no limit in sight) raises it.
            if share < self.noise or (self.rate is None and self.noise > 0):
                self.noise += self.NOISE_WEIGHT * (share - self.noise)
            if cut is not None and self.noise > 0 and share >= self.SPORADIC_SHARE * self.noise:
                # A cut on a random excess of known sporadic 429s: they kept their share,
                # a rate limit's would have gone (to about zero). Undo it.
                self.rate = cut[1]
                self._new_epoch()
            else:
                self._grow(elapsed, sent, clear=not self._congested(share, samples, 1.0, 0.0))
        elif cut is not None and not burst and self._sporadic(cut, share, samples):
            # The pace was cut to what the API accepted, which ends a rate limit's 429s;
            # these kept their share: they do not depend on the rate.
            self.noise = min(self.MAX_NOISE, (share + cut[0]) / 2)
            self.rate = cut[1]
            self.sporadic += 1
            self._new_epoch()
        else:
            if burst:  # the share that triggered it: since the interval's first 429
                share = self._limited / (self._ok_after + self._limited)
            self._cut = (share, self.rate if cut is None else cut[1])
            # A limit found again where it was (within ``STABLE``) is probed gently; one
            # that moved (a limit that changes, a client that shares it) from the fast
            # steps on, so a limit that moves back up is found within seconds.
            stable = self.estimate is not None and (
                abs(accepted - self.estimate) <= self.STABLE * self.estimate
            )
            self._probes = 0 if stable else 2
            self.estimate = accepted
            paced = max(self.CUT * accepted, 1.0 / self.INTERVAL_S)
            self.rate = paced if self.rate is None else min(self.rate, paced)
            self.min_rate_seen = min(self.min_rate_seen or self.rate, self.rate)
            self.decreases += 1
            self._new_epoch()
        self._t0 = now
        self._ok = self._limited = self._ok_after = 0
        self._first_429 = None

    def _sporadic(self, cut: tuple[float, float | None], share: float, samples: int) -> bool:
        """After a cut: did the 429s keep their share (sporadic) or not (a limit)?

        The cut paced us at what the API accepted, so a limit's 429 share falls to about
        zero; a limit that fell at the same time makes it grow. Sporadic 429s keep their
        share: no lower than ``SPORADIC_SHARE`` of it, no higher than binomial noise
        (3 standard deviations and ``MIN_TOLERANCE``) allows.
        """
        spread = 3.0 * math.sqrt(cut[0] * (1.0 - cut[0]) / samples) + self.MIN_TOLERANCE
        return self.SPORADIC_SHARE * cut[0] <= share <= cut[0] + spread

    def _grow(self, elapsed: float, sent: float, *, clear: bool) -> None:
        if self.rate is None:
            return
        # Probing only above the last estimate and with no 429 beyond the noise at all.
        probing = clear and (self.estimate is None or self.rate >= self.BEYOND * self.estimate)
        if sent < 0.8 * self.rate:
            # The pace does not bind (we send less: the machine, the tail, retries
            # waiting): it has shown nothing above what we sent, so it stays (TCP's
            # congestion window validation, RFC 7661). Dropping it, or letting it grow,
            # would send the next surge of our own capacity into the limit unpaced.
            return
        if self.estimate is not None and self.rate < self.SLOW_START * self.estimate:
            # Far below where the limit was: slow start up to SLOW_START x the estimate.
            grown = self.rate * self.FAST_GROWTH**elapsed
            self.rate = max(min(grown, self.SLOW_START * self.estimate), self.rate)
        elif probing:
            # Beyond the estimate, a step that grows with each clear interval (1.1, then
            # FAST_GROWTH): a limit that has not moved is met a little above it, where its
            # 429s are few (a doubling right away cost a burst of them every few
            # seconds); a limit that has moved up is found within a few seconds.
            step = min(self.FAST_GROWTH, 1.0 + self.PROBE_STEP * self.PROBE_ACCEL**self._probes)
            self.rate *= step**elapsed
            self._probes += 1
        else:
            self.rate *= self.NEAR_GROWTH**elapsed
        self.increases += 1

    def _new_epoch(self) -> None:
        self.epoch += 1


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
