"""The calls a simulator serves: paging, lookups, live additions, faults and recordings.

:func:`generate_dataset` builds a :class:`Dataset` from a seed through :mod:`.generator`;
:mod:`.faults` picks the faulty calls, :mod:`.ground_truth` derives the warehouse rows a
correct load produces, and :mod:`.render` turns calls into each dialect.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import random
import threading
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from bulutfon_pipeline.settings import LOCAL_TZ
from bulutfon_pipeline.simulator import audio, ground_truth, vocab
from bulutfon_pipeline.simulator.faults import pick_faults
from bulutfon_pipeline.simulator.generator import (
    PRICE_QUANTUM,
    CallGenerator,
    floor_minute_opt,
    generate_calls,
)
from bulutfon_pipeline.simulator.model import UTC, Call, SimulatorConfig, gc_paused

__all__ = ["Dataset", "generate_dataset"]

#: What :meth:`Dataset.change_call` may change.
_CHANGEABLE = frozenset(
    {"call_record", "call_price", "answer_time", "hangup_time", "hangup_cause", "hangup_state"}
)


class Dataset:
    """The calls a simulator serves, in listing order, plus which of them are faulty.

    Thread-safe: the server thread and a test thread may use it at the same time.
    """

    def __init__(self, config: SimulatorConfig, calls: Iterable[Call], rng: random.Random):
        self.config = config
        self._lock = threading.RLock()
        self._calls: list[Call] = sorted(calls, key=lambda c: c.sort_key)
        self._by_uuid: dict[str, Call] = {c.uuid: c for c in self._calls}
        self._gen = CallGenerator(rng, config.recording_share, config.masked_share)
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

    def recording(self, call_uuid: str) -> tuple[bytes, str] | None:
        """(audio bytes, Content-Type) of a call's recording, or None when it has none."""
        call = self.get(call_uuid)
        if call is None or call.call_record != "YES" or call.recording_format is None:
            return None
        return audio.recording_for(call.uuid, call.recording_format, call.recording_octet_stream)

    # -- changing ----------------------------------------------------------------------
    def add_calls(self, count: int, where: str = "head", hours_ago: float = 6) -> list[str]:
        """Add ``count`` calls. ``head``: newer than every call so far (calls that just
        ended); ``late``: ``hours_ago`` hours before the newest call (a late arrival
        inside a lookback window). Returns the new uuids, oldest first."""
        if where not in ("head", "late"):
            raise ValueError(f"where must be 'head' or 'late', got {where!r}")
        with self._lock:
            newest = self._calls[0].call_time if self._calls else dt.datetime.combine(
                self.config.end_date, dt.time(12), LOCAL_TZ
            ).astimezone(UTC)  # fmt: skip
            if where == "head":
                new = self._gen.head_calls(newest, count)
            else:
                new = self._gen.late_calls(newest, count, hours_ago)
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
                    value = None if value is None else Decimal(str(value)).quantize(PRICE_QUANTUM)
                except ArithmeticError:
                    raise ValueError(f"call_price: not a decimal {value!r}") from None
            elif name in ("answer_time", "hangup_time"):
                if isinstance(value, str):
                    value = dt.datetime.fromisoformat(value)
                if value is not None and (
                    not isinstance(value, dt.datetime) or value.tzinfo is None
                ):
                    raise ValueError(f"{name}: expected an aware time, got {value!r}")
                value = floor_minute_opt(value.astimezone(UTC) if value else None)
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
        fields (see :func:`.faults.pick_faults`). Deterministic from the seed."""
        with self._lock:
            self._faults = pick_faults(
                self._calls, self.config.seed, missing, malformed, unknown_field
            )

    # -- ground truth ------------------------------------------------------------------
    def expected_tables(
        self, dialect: str | None = None, base_url: str = ""
    ) -> dict[str, list[dict[str, Any]]]:
        """The warehouse rows a correct load of this dataset produces, from the model
        (see :func:`.ground_truth.expected_tables`); ``dialect`` defaults to the served one,
        ``base_url`` is the serving host (v2's recording URLs)."""
        dialect = dialect or self.config.dialect
        with self._lock:
            calls = list(self._calls)
            faults = dict(self._faults)
        return ground_truth.expected_tables(calls, faults, dialect, base_url)


def generate_dataset(config: SimulatorConfig | None = None) -> Dataset:
    """Build the dataset for ``config``: exactly ``calls_per_day`` calls on each of the
    ``days`` local days ending with ``end_date`` (inclusive). Same config, same data."""
    config = config or SimulatorConfig()
    rng = random.Random(config.seed)
    with gc_paused():
        return Dataset(config, generate_calls(config, rng), rng)
