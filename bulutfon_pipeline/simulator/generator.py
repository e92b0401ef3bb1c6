"""The deterministic generator: an office PBX's calls, built from one random stream.

Inbound calls go through an IVR menu to a ring group (or straight to an extension); the
rest are outbound and extension-to-extension calls. The same stream gives the same calls.
Imports only ``settings`` (the local time zone) and :mod:`.model`.
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import math
import random
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, NamedTuple

from bulutfon_pipeline.settings import LOCAL_TZ
from bulutfon_pipeline.simulator.model import UTC, Call, FlowStep, Origination, SimulatorConfig

__all__ = ["DID", "EXTENSIONS", "GROUPS", "CallGenerator", "generate_calls"]

EXTENSIONS: tuple[str, ...] = tuple(str(n) for n in range(1001, 1021))
GROUPS: dict[str, tuple[str, ...]] = {"101": EXTENSIONS[:10], "102": EXTENSIONS[10:]}
DID = "908508850000"
#: Local hours 07..22 only (weights): the office day plus evenings. No call falls near
#: the 03:00-04:00 DST transitions, so every rendered local time is unambiguous.
HOUR_WEIGHTS: dict[int, float] = {
    7: 1, 8: 4, 9: 10, 10: 14, 11: 14, 12: 9, 13: 10, 14: 13, 15: 13, 16: 12, 17: 9,
    18: 5, 19: 3, 20: 2, 21: 1, 22: 1,
}  # fmt: skip
_HOURS = list(HOUR_WEIGHTS)
_HOUR_CUM = list(itertools.accumulate(HOUR_WEIGHTS.values()))
_MOBILE_PREFIXES = ("90532", "90533", "90542", "90505", "90555", "90530", "90544")
_LANDLINE_PREFIXES = ("90212", "90216", "90232", "90312")
PRICE_PER_MINUTE = Decimal("0.0182")
PRICE_QUANTUM = Decimal("0.0001")

# Branching (tuned so a call averages about ten flow-step + origination rows).
P_IN, P_OUT = 0.78, 0.15  # LOCAL gets the rest
P_IN_DIRECT = 0.1  # inbound redirected straight to an extension
P_MENU_LOOP = 0.3  # caller returns from menu 11 to menu 10 once
P_ROUND_ANSWERED = 0.36
P_CALLER_GIVES_UP = 0.08  # after an unanswered ring round
MAX_ROUNDS = 5
P_TRANSFER = 0.2
P_LOCAL_TO_GROUP = 0.5


class _Phone(NamedTuple):
    """How a single phone answers: flow-step kind, answer probability, seconds until it
    is answered or the caller gives up (inclusive ranges), P(caller cancelled | not)."""

    kind: str
    p_answered: float
    answer_after: tuple[int, int]
    give_up_after: tuple[int, int]
    p_cancelled: float


_EXTENSION = _Phone("CONNECTING_TO_EXTENSION", 0.78, (3, 20), (5, 40), 0.5)
_EXTERNAL = _Phone("OTHER", 0.72, (4, 25), (5, 45), 0.4)

_SECONDS = tuple(dt.timedelta(seconds=i) for i in range(4000))


def _s(seconds: int) -> dt.timedelta:
    return _SECONDS[seconds] if seconds < 4000 else dt.timedelta(seconds=seconds)


def _floor_minute(t: dt.datetime) -> dt.datetime:
    return t.replace(second=0, microsecond=0)


def floor_minute_opt(t: dt.datetime | None) -> dt.datetime | None:
    return None if t is None else t.replace(second=0, microsecond=0)


class CallGenerator:
    """Builds calls from one random stream; the same stream gives the same calls."""

    def __init__(self, rng: random.Random, recording_share: float, masked_share: float):
        self.rng = rng
        self.recording_share = recording_share
        self.masked_share = masked_share

    # random.randint/choice/sample are slow; these fast equivalents keep 100k calls at a
    # few seconds. They consume the stream differently, but determinism is all we need.
    def _ri(self, a: int, b: int) -> int:
        """Uniform int in [a, b]."""
        return a + int(self.rng.random() * (b - a + 1))

    def _choice(self, seq: Sequence[str]) -> str:
        return seq[int(self.rng.random() * len(seq))]

    def _sample(self, seq: Sequence[str], k: int) -> list[str]:
        pool = list(seq)
        rnd = self.rng.random
        for i in range(k):
            j = i + int(rnd() * (len(pool) - i))
            pool[i], pool[j] = pool[j], pool[i]
        return pool[:k]

    # -- numbers ---------------------------------------------------------------------
    def _number(self, prefixes: Sequence[str], keep: int) -> str:
        rng = self.rng
        number = self._choice(prefixes) + str(10_000_000 + int(rng.random() * 10**7))[1:]
        if rng.random() < self.masked_share:
            return number[:keep] + "x" * (len(number) - keep)
        return number

    def _did(self) -> str:
        return "90850885xxxx" if self.rng.random() < self.masked_share else DID

    def _talk(self) -> int:
        return min(3600, 8 + int(self.rng.expovariate(1 / 150)))

    # -- a ring group ------------------------------------------------------------------
    def _ring_group(
        self, group: str, start: dt.datetime
    ) -> tuple[list[list[Any]], int | None, dt.datetime | None, dt.datetime, bool]:
        """Ring rounds until someone answers, the caller gives up or MAX_ROUNDS pass.

        Returns (originations as mutable rows, index of the winner row, answer instant,
        end of ringing, caller_cancelled).
        """
        rnd = self.rng.random
        rows: list[list[Any]] = []
        t = start
        for _ in range(MAX_ROUNDS):
            members = self._sample(GROUPS[group], 2 + int(rnd() * 4))
            t1 = t + _SECONDS[1]
            starts = [t1 if rnd() < 0.5 else t for _ in members]
            if rnd() < P_ROUND_ANSWERED:
                answer = t + _s(self._ri(4, 18))
                winner = int(rnd() * len(members))
                for i, (ext, st) in enumerate(zip(members, starts, strict=True)):
                    if i == winner:
                        rows.append([ext, st, answer, None, "ANSWERED"])
                    else:
                        rows.append([ext, st, None, answer, "LOSE_RACE"])
                return rows, len(rows) - len(members) + winner, answer, answer, False
            end = t + _s(self._ri(15, 25))
            pairs = zip(members, starts, strict=True)
            rows.extend([ext, st, None, end, "NO_ANSWER"] for ext, st in pairs)
            t = end + _s(1)
            if rnd() < P_CALLER_GIVES_UP:
                return rows, None, None, end, True
        return rows, None, None, rows[-1][3], False

    @staticmethod
    def _origs(rows: list[list[Any]]) -> tuple[Origination, ...]:
        return tuple(map(Origination._make, rows))

    def _group_step(
        self, group: str, start: dt.datetime, steps: list[FlowStep]
    ) -> tuple[str | None, dt.datetime | None, dt.datetime, bool]:
        """Append a ringing group step (and maybe a transfer); return winner, answer, end."""
        rng = self.rng
        rows, winner, answer, end, cancelled = self._ring_group(group, start)
        if winner is None:
            steps.append(
                FlowStep(group, start, None, end, "CONNECTING_TO_GROUP", None, self._origs(rows))
            )
            return None, None, end, cancelled
        assert answer is not None
        talk_end: dt.datetime = answer + _s(self._talk())
        rows[winner][3] = talk_end
        winner_ext = rows[winner][0]
        steps.append(
            FlowStep(group, start, answer, talk_end, "CONNECTING_TO_GROUP", None, self._origs(rows))
        )
        end = talk_end
        if rng.random() < P_TRANSFER:  # the agent hands the caller to a colleague
            other = self._choice([e for e in EXTENSIONS if e != winner_ext])
            steps.append(
                FlowStep(winner_ext, talk_end, talk_end, None, "REDIRECTED_TO_EXTENSION", other)
            )
            st = talk_end + _s(1)
            ans = st + _s(self._ri(3, 15))
            end = ans + _s(self._talk())
            steps.append(FlowStep(other, st, ans, end, "CONNECTING_TO_EXTENSION", None))
        return winner_ext, answer, end, False

    # -- calls -------------------------------------------------------------------------
    def make_call(self, t0: dt.datetime, direction: str | None = None) -> Call:
        """One call starting at instant ``t0`` (UTC, whole seconds)."""
        rng = self.rng
        h = f"{rng.getrandbits(128):032x}"  # shaped like the API's time-based (v1) uuids
        call_uuid = f"{h[:8]}-{h[8:12]}-1{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"
        if direction is None:
            r = rng.random()
            direction = "IN" if r < P_IN else "OUT" if r < P_IN + P_OUT else "LOCAL"
        steps: list[FlowStep] = []
        extension: str | None = None
        price: Decimal | None = None
        cause: str
        state: str | None
        if direction == "IN":
            caller = self._number(_MOBILE_PREFIXES, 5)
            callee = self._did()
            answer, end, cancelled = self._inbound(callee, t0, steps)
        elif direction == "OUT":
            extension = self._choice(EXTENSIONS)
            caller = self._did()
            callee = self._number(_MOBILE_PREFIXES + _LANDLINE_PREFIXES, 5)
            answer, end, cancelled = self._ring(_EXTERNAL, callee, t0, steps)
            if answer is not None and rng.random() < 0.9:
                minutes = math.ceil((end - answer).total_seconds() / 60)
                price = (PRICE_PER_MINUTE * minutes).quantize(PRICE_QUANTUM)
        else:
            caller = self._choice(EXTENSIONS)
            if rng.random() < P_LOCAL_TO_GROUP:
                callee = self._choice(list(GROUPS))
                _, answer, end, cancelled = self._group_step(callee, t0, steps)
            else:
                callee = self._choice([e for e in EXTENSIONS if e != caller])
                answer, end, cancelled = self._ring(_EXTENSION, callee, t0, steps)
        if answer is not None:
            cause = "NORMAL_CLEARING"
            state = "recv_bye" if rng.random() < 0.6 else "send_bye"
        elif cancelled:
            cause = "ORIGINATOR_CANCEL"
            state = "recv_cancel" if rng.random() < 0.5 else None
        elif direction != "IN" and rng.random() < 0.4:
            cause, state = "USER_BUSY", "send_refuse"
        else:
            cause, state = "NO_ANSWER", None
        record = "NO"
        fmt: str | None = None
        if answer is not None and rng.random() < self.recording_share:
            record = "REMOVED" if rng.random() < 0.1 else "YES"
            if record == "YES":
                fmt = "wav" if rng.random() < 0.5 else "mp3"
        return Call(
            uuid=call_uuid,
            direction=direction,
            caller=caller,
            callee=callee,
            extension=extension,
            call_time=_floor_minute(t0),
            answer_time=floor_minute_opt(answer),
            hangup_time=_floor_minute(end),
            call_record=record,
            hangup_cause=cause,
            hangup_state=state,
            call_price=price,
            flow=tuple(steps),
            price_as_number=rng.random() < 0.35,
            extension_as_number=rng.random() < 0.5,
            recording_format=fmt,
            recording_octet_stream=fmt is not None and rng.random() < 0.25,
        )

    def _inbound(
        self, did: str, t0: dt.datetime, steps: list[FlowStep]
    ) -> tuple[dt.datetime | None, dt.datetime, bool]:
        rng = self.rng
        if rng.random() < P_IN_DIRECT:
            ext = self._choice(EXTENSIONS)
            steps.append(FlowStep(did, t0, None, None, "REDIRECTED_TO_EXTENSION", ext))
            return self._ring(_EXTENSION, ext, t0 + _s(1), steps)
        steps.append(FlowStep(did, t0, None, None, "REDIRECTED_TO_MENU", "10"))
        t = t0 + _s(self._ri(0, 1))
        steps.append(FlowStep("10", t, t, None, "REDIRECTED_TO_MENU", "11"))
        t += _s(self._ri(3, 12))
        if rng.random() < P_MENU_LOOP:  # pressed "back"
            steps.append(FlowStep("11", t, t, None, "REDIRECTED_TO_MENU", "10"))
            t += _s(self._ri(2, 6))
            steps.append(FlowStep("10", t, t, None, "REDIRECTED_TO_MENU", "11"))
            t += _s(self._ri(2, 8))
        group = self._choice(("101", "102"))
        steps.append(FlowStep("11", t, t, None, "REDIRECTED_TO_GROUP", group))
        _, answer, end, cancelled = self._group_step(group, t + _s(self._ri(0, 1)), steps)
        return answer, end, cancelled

    def _ring(
        self, phone: _Phone, callee: str, start: dt.datetime, steps: list[FlowStep]
    ) -> tuple[dt.datetime | None, dt.datetime, bool]:
        """Ring one phone (an extension or an outside number): append its step and return
        (answer instant, end, caller_cancelled)."""
        rng = self.rng
        if rng.random() < phone.p_answered:
            answer = start + _s(self._ri(*phone.answer_after))
            end = answer + _s(self._talk())
            steps.append(FlowStep(callee, start, answer, end, phone.kind, None))
            return answer, end, False
        end = start + _s(self._ri(*phone.give_up_after))
        steps.append(FlowStep(callee, start, None, end, phone.kind, None))
        return None, end, rng.random() < phone.p_cancelled

    def local_instant(self, day: dt.date) -> dt.datetime:
        rng = self.rng
        hour = _HOURS[bisect.bisect_right(_HOUR_CUM, rng.random() * _HOUR_CUM[-1])]
        local = dt.datetime(
            day.year, day.month, day.day, hour, int(rng.random() * 60), int(rng.random() * 60),
            tzinfo=LOCAL_TZ,
        )  # fmt: skip
        return local.astimezone(UTC)

    # -- more calls for a live dataset ---------------------------------------------------
    def head_calls(self, newest: dt.datetime, count: int) -> list[Call]:
        """``count`` calls newer than ``newest``, one to three minutes apart, oldest first."""
        new: list[Call] = []
        t = newest
        for _ in range(count):
            t = t + dt.timedelta(minutes=1 + self._ri(0, 2))
            new.append(self.make_call(t + _s(self._ri(0, 59))))
        return new

    def late_calls(self, newest: dt.datetime, count: int, hours_ago: float) -> list[Call]:
        """``count`` calls in the half hour up to ``hours_ago`` hours before ``newest``:
        late arrivals inside a lookback window."""
        new: list[Call] = []
        base = newest - dt.timedelta(hours=hours_ago)
        for _ in range(count):
            t0 = _floor_minute(base) - dt.timedelta(minutes=self._ri(0, 29))
            new.append(self.make_call(t0 + _s(self._ri(0, 59))))
        return new


def generate_calls(config: SimulatorConfig, rng: random.Random) -> list[Call]:
    """Exactly ``calls_per_day`` calls on each of the ``days`` local days ending with
    ``end_date`` (inclusive), in generation order, drawn from ``rng``."""
    gen = CallGenerator(rng, config.recording_share, config.masked_share)
    first = config.end_date - dt.timedelta(days=config.days - 1)
    calls: list[Call] = []
    for d in range(config.days):
        day = first + dt.timedelta(days=d)
        for _ in range(config.calls_per_day):
            calls.append(gen.make_call(gen.local_instant(day)))
    return calls
