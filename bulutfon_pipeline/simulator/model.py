"""The simulator's dialect-neutral model: its knobs and the records a call is made of.

Everything is kept in canonical codes and aware UTC datetimes; :mod:`.render` turns a
:class:`Call` into any dialect. This module imports nothing of the project.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import gc
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal, NamedTuple

__all__ = [
    "DIALECTS",
    "UTC",
    "Call",
    "Dialect",
    "FlowStep",
    "Origination",
    "SimulatorConfig",
    "gc_paused",
]

UTC = dt.UTC
Dialect = Literal["seed", "v1", "v2"]
#: ``v2``: the v1 routes answer in v1 and the ``/v2/`` routes in v2 (every route is
#: served whatever the dialect; the dialect says which one ``SimulatorServer.env`` uses).
DIALECTS: tuple[str, ...] = ("seed", "v1", "v2")


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
    #: The v2 API key (v1 tokens are refused on v2 and this key on v1).
    api_key: str | None = field(default=None, repr=False)
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
    # --- the clock --------------------------------------------------------------------
    #: The instant the API's ``Date`` headers say, ISO-8601 with an offset ("" = the
    #: wall clock): tests pin it to observe a directory change at a known instant.
    clock: str = ""

    def __post_init__(self) -> None:
        if self.dialect not in DIALECTS:
            raise ValueError(f"dialect must be one of {DIALECTS}, got {self.dialect!r}")
        if isinstance(self.end_date, str):
            self.end_date = dt.date.fromisoformat(self.end_date)
        if self.clock and dt.datetime.fromisoformat(self.clock).tzinfo is None:
            raise ValueError(
                f"clock must be an ISO-8601 instant with an offset, got {self.clock!r}"
            )
        if self.days < 0 or self.calls_per_day < 0:
            raise ValueError("days and calls_per_day must be >= 0")

    def replace(self, **changes: Any) -> SimulatorConfig:
        return dataclasses.replace(self, **changes)


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


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while building calls or ground-truth rows: a million small
    objects trigger repeated full GC passes that find nothing to free."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
