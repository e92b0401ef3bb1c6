"""The simulator's dialect-neutral model, its deterministic generator and the ground truth.

A :class:`Dataset` holds :class:`Call` records built from a seed: an office PBX whose
inbound calls go through an IVR menu to a ring group (or straight to an extension),
plus outbound and extension-to-extension calls. Everything is kept in canonical codes
and aware UTC datetimes; :mod:`.render` turns it into either dialect, and
:meth:`Dataset.expected_tables` derives the warehouse rows from the model itself.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import datetime as dt
import gc
import math
import random
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal, NamedTuple

from bulutfon_pipeline.settings import LOCAL_TZ
from bulutfon_pipeline.simulator import vocab

__all__ = [
    "MALFORMED_KINDS",
    "Call",
    "Dataset",
    "FlowStep",
    "Origination",
    "SimulatorConfig",
    "generate_dataset",
]

UTC = dt.UTC
Dialect = Literal["seed", "v1"]
DIALECTS: tuple[str, ...] = ("seed", "v1")

#: Kinds of broken detail bodies, assigned in this order, cycling.
MALFORMED_KINDS: tuple[str, ...] = (
    "impossible_date",
    "flow_not_list",
    "origination_missing_fields",
    "html_200",
    "empty_200",
)
#: Malformed kinds whose body is never JSON: the loader rejects them at stage ``detail``.
NON_JSON_KINDS = frozenset({"html_200", "empty_200"})


@dataclass
class SimulatorConfig:
    """Every knob of the simulator. Dataset knobs are read once at generation; the fault
    knobs (and ``dialect``, ``paginate``, ``max_page_size``) may change at runtime."""

    # --- dataset --------------------------------------------------------------------
    seed: int = 42
    days: int = 30
    calls_per_day: int = 300
    end_date: dt.date = dt.date(2015, 4, 16)
    dialect: str = "seed"
    recording_share: float = 0.3
    masked_share: float = 0.3
    # --- listing ----------------------------------------------------------------------
    paginate: bool = True
    max_page_size: int = 500
    # --- auth -------------------------------------------------------------------------
    master_token: str | None = field(default=None, repr=False)
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    token_ttl_s: float = 7200
    rotate_refresh_tokens: bool = True
    expired_status: int = 401
    # --- faults -----------------------------------------------------------------------
    rate_limit_rps: float = 0.0
    rate_limit_retry_after: bool = False
    random_429_rate: float = 0.0
    random_429_retry_after_share: float = 0.5
    error_rate: float = 0.0
    html_error_share: float = 0.3
    truncate_rate: float = 0.0
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    fault_seed: int = 0
    live_calls_per_page: int = 0
    missing_detail_count: int = 0
    malformed_count: int = 0
    unknown_field_count: int = 0
    # --- outages: every API request answered ``outage_status`` (an overloaded API) -----
    outage_s: float = 0.0  # for this many seconds from when the knob is set
    outage_requests: int = 0  # for the next this many API requests
    outage_status: int = 503

    def __post_init__(self) -> None:
        if self.dialect not in DIALECTS:
            raise ValueError(f"dialect must be one of {DIALECTS}, got {self.dialect!r}")
        if isinstance(self.end_date, str):
            self.end_date = dt.date.fromisoformat(self.end_date)
        if self.days < 0 or self.calls_per_day < 0:
            raise ValueError("days and calls_per_day must be >= 0")

    def replace(self, **changes: Any) -> SimulatorConfig:
        return dataclasses.replace(self, **changes)


# --- model ------------------------------------------------------------------------------


class Origination(NamedTuple):
    """One phone a ring group rang. ``result``: ANSWERED, LOSE_RACE or NO_ANSWER."""

    destination: str
    start_time: dt.datetime
    answer_time: dt.datetime | None
    hangup_time: dt.datetime | None
    result: str


class FlowStep(NamedTuple):
    """One step of a call's flow; ``kind`` is the canonical redirection code."""

    callee: str
    start_time: dt.datetime
    answer_time: dt.datetime | None
    hangup_time: dt.datetime | None
    kind: str
    target: str | None
    #: None: the step rings no group, so the ``origination`` key is absent.
    originations: tuple[Origination, ...] | None = None


@dataclass(frozen=True, slots=True)
class Call:
    """A call in canonical form. Numbers are text as sent (masked ones contain ``x``)."""

    uuid: str
    direction: str
    caller: str
    callee: str
    extension: str | None
    call_time: dt.datetime
    answer_time: dt.datetime | None
    hangup_time: dt.datetime | None
    call_record: str  # YES | NO | REMOVED
    hangup_cause: str  # canonical Q.850 name
    hangup_state: str | None  # canonical send_bye/... or None
    call_price: Decimal | None
    flow: tuple[FlowStep, ...]
    call_type: str = "voice"
    #: v1 rendering choices (the API sends these either way).
    price_as_number: bool = False
    extension_as_number: bool = False
    #: "wav" | "mp3" when call_record == "YES".
    recording_format: str | None = None
    recording_octet_stream: bool = False

    @property
    def answered(self) -> bool:
        return self.answer_time is not None

    @property
    def missing_call(self) -> bool:
        return self.direction == "IN" and self.answer_time is None

    @property
    def sort_key(self) -> tuple[float, str]:
        """Listing order: newest call_time first, then uuid ascending."""
        return (-self.call_time.timestamp(), self.uuid)


# --- generator --------------------------------------------------------------------------

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
_HOUR_CUM = list(__import__("itertools").accumulate(HOUR_WEIGHTS.values()))
_MOBILE_PREFIXES = ("90532", "90533", "90542", "90505", "90555", "90530", "90544")
_LANDLINE_PREFIXES = ("90212", "90216", "90232", "90312")
PRICE_PER_MINUTE = Decimal("0.0182")
_Q4 = Decimal("0.0001")

# Branching (tuned so a call averages about ten flow-step + origination rows).
P_IN, P_OUT = 0.78, 0.15  # LOCAL gets the rest
P_IN_DIRECT = 0.1  # inbound redirected straight to an extension
P_MENU_LOOP = 0.3  # caller returns from menu 11 to menu 10 once
P_ROUND_ANSWERED = 0.36
P_CALLER_GIVES_UP = 0.08  # after an unanswered ring round
MAX_ROUNDS = 5
P_TRANSFER = 0.2
P_LOCAL_TO_GROUP = 0.5


#: What :meth:`Dataset.change_call` may change.
_CHANGEABLE = frozenset(
    {"call_record", "call_price", "answer_time", "hangup_time", "hangup_cause", "hangup_state"}
)

_SECONDS = tuple(dt.timedelta(seconds=i) for i in range(4000))


def _s(seconds: int) -> dt.timedelta:
    return _SECONDS[seconds] if seconds < 4000 else dt.timedelta(seconds=seconds)


def _floor_minute(t: dt.datetime) -> dt.datetime:
    return t.replace(second=0, microsecond=0)


def _floor_minute_opt(t: dt.datetime | None) -> dt.datetime | None:
    return None if t is None else t.replace(second=0, microsecond=0)


class _Generator:
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
            answer, end, cancelled = self._ring_external(callee, t0, steps)
            if answer is not None and rng.random() < 0.9:
                minutes = math.ceil((end - answer).total_seconds() / 60)
                price = (PRICE_PER_MINUTE * minutes).quantize(_Q4)
        else:
            caller = self._choice(EXTENSIONS)
            if rng.random() < P_LOCAL_TO_GROUP:
                callee = self._choice(list(GROUPS))
                _, answer, end, cancelled = self._group_step(callee, t0, steps)
            else:
                callee = self._choice([e for e in EXTENSIONS if e != caller])
                answer, end, cancelled = self._ring_extension(callee, t0, steps)
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
            answer_time=_floor_minute_opt(answer),
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
            return self._ring_extension(ext, t0 + _s(1), steps)
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

    def _ring_extension(
        self, ext: str, start: dt.datetime, steps: list[FlowStep]
    ) -> tuple[dt.datetime | None, dt.datetime, bool]:
        rng = self.rng
        if rng.random() < 0.78:
            answer = start + _s(self._ri(3, 20))
            end = answer + _s(self._talk())
            steps.append(FlowStep(ext, start, answer, end, "CONNECTING_TO_EXTENSION", None))
            return answer, end, False
        end = start + _s(self._ri(5, 40))
        steps.append(FlowStep(ext, start, None, end, "CONNECTING_TO_EXTENSION", None))
        return None, end, rng.random() < 0.5

    def _ring_external(
        self, number: str, start: dt.datetime, steps: list[FlowStep]
    ) -> tuple[dt.datetime | None, dt.datetime, bool]:
        rng = self.rng
        if rng.random() < 0.72:
            answer = start + _s(self._ri(4, 25))
            end = answer + _s(self._talk())
            steps.append(FlowStep(number, start, answer, end, "OTHER", None))
            return answer, end, False
        end = start + _s(self._ri(5, 45))
        steps.append(FlowStep(number, start, None, end, "OTHER", None))
        return None, end, rng.random() < 0.4

    def local_instant(self, day: dt.date) -> dt.datetime:
        rng = self.rng
        hour = _HOURS[bisect.bisect_right(_HOUR_CUM, rng.random() * _HOUR_CUM[-1])]
        local = dt.datetime(
            day.year, day.month, day.day, hour, int(rng.random() * 60), int(rng.random() * 60),
            tzinfo=LOCAL_TZ,
        )  # fmt: skip
        return local.astimezone(UTC)


# --- dataset ----------------------------------------------------------------------------


class Dataset:
    """The calls a simulator serves, in listing order, plus which of them are faulty.

    Thread-safe: the server thread and a test thread may use it at the same time.
    """

    def __init__(self, config: SimulatorConfig, calls: Iterable[Call], rng: random.Random):
        self.config = config
        self._lock = threading.RLock()
        self._calls: list[Call] = sorted(calls, key=lambda c: c.sort_key)
        self._by_uuid: dict[str, Call] = {c.uuid: c for c in self._calls}
        self._gen = _Generator(rng, config.recording_share, config.masked_share)
        self._faults: dict[str, str] = {}
        self.assign_faults(config.missing_detail_count, config.malformed_count,
                           config.unknown_field_count)  # fmt: skip

    # -- reading -----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._calls)

    @property
    def calls(self) -> list[Call]:
        """A snapshot of all calls, newest first."""
        with self._lock:
            return list(self._calls)

    @property
    def uuids(self) -> list[str]:
        with self._lock:
            return [c.uuid for c in self._calls]

    def get(self, call_uuid: str) -> Call | None:
        with self._lock:
            return self._by_uuid.get(call_uuid)

    def fault(self, call_uuid: str) -> str | None:
        """``missing``, ``malformed:<kind>``, ``unknown_field`` or None."""
        with self._lock:
            return self._faults.get(call_uuid)

    @property
    def faults(self) -> dict[str, str]:
        with self._lock:
            return dict(self._faults)

    def page(self, page: int, limit: int) -> tuple[list[Call], int]:
        """Items of a 1-based page (newest first) and the total count."""
        with self._lock:
            start = (page - 1) * limit
            return self._calls[start : start + limit], len(self._calls)

    # -- changing ----------------------------------------------------------------------
    def add_calls(self, count: int, where: str = "head", hours_ago: float = 6) -> list[str]:
        """Add ``count`` calls. ``head``: newer than every call so far (calls that just
        ended); ``late``: ``hours_ago`` hours before the newest call (a late arrival
        inside a lookback window). Returns the new uuids, oldest first."""
        if where not in ("head", "late"):
            raise ValueError(f"where must be 'head' or 'late', got {where!r}")
        with self._lock:
            gen = self._gen
            newest = self._calls[0].call_time if self._calls else dt.datetime.combine(
                self.config.end_date, dt.time(12), LOCAL_TZ
            ).astimezone(UTC)  # fmt: skip
            new: list[Call] = []
            if where == "head":
                t = newest
                for _ in range(count):
                    t = t + dt.timedelta(minutes=1 + gen._ri(0, 2))
                    new.append(gen.make_call(t + _s(gen._ri(0, 59))))
            else:
                base = newest - dt.timedelta(hours=hours_ago)
                for _ in range(count):
                    t0 = _floor_minute(base) - dt.timedelta(minutes=gen._ri(0, 29))
                    new.append(gen.make_call(t0 + _s(gen._ri(0, 59))))
            for call in new:
                key = call.sort_key
                index = bisect.bisect_left(self._calls, key, key=lambda c: c.sort_key)
                self._calls.insert(index, call)
                self._by_uuid[call.uuid] = call
            return [c.uuid for c in new]

    def change_call(self, call_uuid: str, **changes: Any) -> Call:
        """Change a call after the fact, as the PBX does once a call has ended.

        Allowed keys: ``call_record`` (``YES``/``NO``/``REMOVED``), ``call_price`` (a
        :class:`~decimal.Decimal`, a decimal string or None), ``answer_time`` and
        ``hangup_time`` (aware datetimes or ISO-8601 strings with an offset, or None;
        floored to the whole minute like every top-level time), ``hangup_cause`` (a
        canonical Q.850 name) and ``hangup_state`` (canonical, or None). The listing, the
        detail, the recording endpoint and :meth:`expected_tables` all follow.

        Returns:
            The changed call.

        Raises:
            KeyError: no such call.
            ValueError: an unknown key or a bad value.
        """
        unknown = set(changes) - _CHANGEABLE
        if unknown:
            raise ValueError(f"cannot change {sorted(unknown)}; changeable: {sorted(_CHANGEABLE)}")
        values: dict[str, Any] = {}
        for name, value in changes.items():
            if name == "call_record":
                if value not in ("YES", "NO", "REMOVED"):
                    raise ValueError(f"call_record must be YES, NO or REMOVED, got {value!r}")
            elif name == "call_price":
                try:
                    value = None if value is None else Decimal(str(value)).quantize(_Q4)
                except ArithmeticError:
                    raise ValueError(f"call_price: not a decimal {value!r}") from None
            elif name in ("answer_time", "hangup_time"):
                if isinstance(value, str):
                    value = dt.datetime.fromisoformat(value)
                if value is not None and (
                    not isinstance(value, dt.datetime) or value.tzinfo is None
                ):
                    raise ValueError(f"{name}: expected an aware time, got {value!r}")
                value = _floor_minute_opt(value.astimezone(UTC) if value else None)
            elif name == "hangup_cause" and value not in vocab.HANGUP_CAUSE_SEED:
                raise ValueError(f"hangup_cause must be one of {sorted(vocab.HANGUP_CAUSE_SEED)}")
            elif (
                name == "hangup_state"
                and value is not None
                and (value not in vocab.HANGUP_STATE_SEED)
            ):
                raise ValueError(f"hangup_state must be one of {sorted(vocab.HANGUP_STATE_SEED)}")
            values[name] = value
        with self._lock:
            call = self._by_uuid[call_uuid]
            if values.get("call_record") == "YES" and call.recording_format is None:
                values["recording_format"] = "wav"
            changed = dataclasses.replace(call, **values)
            self._by_uuid[call_uuid] = changed
            index = self._calls.index(call)
            self._calls[index] = changed  # call_time is not changeable: the order holds
            return changed

    def set_recording_share(self, share: float) -> None:
        """Share of answered calls with a recording, for calls generated from now on."""
        with self._lock:
            self._gen.recording_share = share

    def assign_faults(self, missing: int, malformed: int, unknown_field: int) -> None:
        """Pick which calls 404, which have a broken detail body and which carry unknown
        fields. Deterministic from the seed; malformed kinds cycle through MALFORMED_KINDS."""
        with self._lock:
            rng = random.Random(f"{self.config.seed}-faults")
            pool = [c.uuid for c in self._calls]
            rng.shuffle(pool)
            faults: dict[str, str] = {}
            for i in range(malformed):
                kind = MALFORMED_KINDS[i % len(MALFORMED_KINDS)]
                for j, candidate in enumerate(pool):
                    if kind != "origination_missing_fields" or any(
                        s.originations for s in self._by_uuid[candidate].flow
                    ):
                        faults[pool.pop(j)] = f"malformed:{kind}"
                        break
            for _ in range(min(missing, len(pool))):
                faults[pool.pop()] = "missing"
            for _ in range(min(unknown_field, len(pool))):
                faults[pool.pop()] = "unknown_field"
            self._faults = faults

    # -- ground truth ------------------------------------------------------------------
    def expected_tables(self, dialect: str | None = None) -> dict[str, list[dict[str, Any]]]:
        """The warehouse rows a correct load of this dataset produces, from the model.

        Keys ``cdrs``, ``call_flow_steps``, ``originations``, ``load_rejects``; columns as
        in docs/architecture.md without ``loaded_at`` (rejects: ``uuid`` and ``stage``).
        As-sent columns hold the served dialect's text. ``step_index`` and
        ``attempt_index`` are 0-based positions in ``call_flow`` / ``origination``.
        """
        dialect = dialect or self.config.dialect
        with self._lock:
            calls = list(self._calls)
            faults = dict(self._faults)
        with _gc_paused():
            return self._expected_tables(calls, faults, dialect)

    @staticmethod
    def _expected_tables(
        calls: list[Call], faults: dict[str, str], dialect: str
    ) -> dict[str, list[dict[str, Any]]]:
        cdrs: list[dict[str, Any]] = []
        steps: list[dict[str, Any]] = []
        origs: list[dict[str, Any]] = []
        rejects: list[dict[str, Any]] = []
        v1 = dialect == "v1"
        for call in calls:
            fault = faults.get(call.uuid)
            if fault == "missing":
                rejects.append({"uuid": call.uuid, "stage": "detail"})
                continue
            if fault is not None and fault.startswith("malformed:"):
                kind = fault.split(":", 1)[1]
                stage = "detail" if kind in NON_JSON_KINDS else "normalize"
                rejects.append({"uuid": call.uuid, "stage": stage})
                continue
            cdrs.append(_cdr_row(call, dialect))
            for si, step in enumerate(call.flow):
                steps.append({
                    "cdr_uuid": call.uuid,
                    "step_index": si,
                    "callee": step.callee,
                    "start_time": step.start_time,
                    "answer_time": step.answer_time,
                    "hangup_time": step.hangup_time,
                    "redirection": vocab.redirection_text(step.kind, step.target, dialect),
                    "redirection_kind": step.kind,
                    "redirection_target": step.target,
                })  # fmt: skip
                for ai, o in enumerate(step.originations or ()):
                    origs.append({
                        "cdr_uuid": call.uuid,
                        "step_index": si,
                        "attempt_index": ai,
                        "destination": o.destination,
                        "start_time": o.start_time,
                        "answer_time": o.answer_time,
                        "hangup_time": o.hangup_time,
                        "result": o.result if v1 else vocab.RESULT_SEED[o.result],
                        "outcome": o.result if o.result in vocab.OUTCOMES else "OTHER",
                        "answered": o.result == "ANSWERED",
                    })  # fmt: skip
        return {"cdrs": cdrs, "call_flow_steps": steps, "originations": origs,
                "load_rejects": rejects}  # fmt: skip

    def recording(self, call_uuid: str) -> tuple[bytes, str] | None:
        """(audio bytes, Content-Type) of a call's recording, or None when it has none."""
        from bulutfon_pipeline.simulator import audio

        call = self.get(call_uuid)
        if call is None or call.call_record != "YES" or call.recording_format is None:
            return None
        return audio.recording_for(call.uuid, call.recording_format, call.recording_octet_stream)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """A million small objects trigger repeated full GC passes that find nothing to free."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _seconds(a: dt.datetime | None, b: dt.datetime | None) -> int | None:
    if a is None or b is None:
        return None
    return int((b - a).total_seconds())


def _cdr_row(call: Call, dialect: str) -> dict[str, Any]:
    v1 = dialect == "v1"
    answered = call.answer_time is not None
    return {
        "uuid": call.uuid,
        "call_type": call.call_type,
        "direction": call.direction,
        "caller": call.caller,
        "callee": call.callee,
        "extension": call.extension if v1 else None,
        "call_time": call.call_time,
        "answer_time": call.answer_time,
        "hangup_time": call.hangup_time,
        "call_date": call.call_time.astimezone(LOCAL_TZ).date(),
        "answered": answered,
        "ring_seconds": _seconds(call.call_time, call.answer_time or call.hangup_time),
        "talk_seconds": _seconds(call.answer_time, call.hangup_time) if answered else 0,
        "call_record": vocab.call_record_text(call.call_record, dialect),
        "has_recording": call.call_record == "YES",
        "hangup_cause": vocab.hangup_cause_text(call.hangup_cause, dialect),
        "hangup_cause_code": call.hangup_cause,
        "hangup_state": vocab.hangup_state_text(call.hangup_state, dialect),
        "hangup_state_code": call.hangup_state,
        "missing_call": call.missing_call,
        "call_price": call.call_price if v1 else None,
    }


def generate_dataset(config: SimulatorConfig | None = None) -> Dataset:
    """Build the dataset for ``config``: exactly ``calls_per_day`` calls on each of the
    ``days`` local days ending with ``end_date`` (inclusive). Same config, same data."""
    config = config or SimulatorConfig()
    rng = random.Random(config.seed)
    gen = _Generator(rng, config.recording_share, config.masked_share)
    first = config.end_date - dt.timedelta(days=config.days - 1)
    calls: list[Call] = []
    with _gc_paused():
        for d in range(config.days):
            day = first + dt.timedelta(days=d)
            for _ in range(config.calls_per_day):
                calls.append(gen.make_call(gen.local_instant(day)))
        return Dataset(config, calls, rng)
