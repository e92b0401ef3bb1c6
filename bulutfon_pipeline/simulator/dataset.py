"""The calls a simulator serves: paging, lookups, live additions, faults and recordings.

:func:`generate_dataset` builds a :class:`Dataset` from a seed through :mod:`.generator`;
:mod:`.faults` picks the faulty calls, :mod:`.ground_truth` derives the warehouse rows a
correct load produces, and :mod:`.render` turns calls into either dialect.
"""

from __future__ import annotations

import bisect
import datetime as dt
import random
import threading
from collections.abc import Iterable
from typing import Any

from bulutfon_pipeline.settings import LOCAL_TZ
from bulutfon_pipeline.simulator import audio, ground_truth
from bulutfon_pipeline.simulator.faults import pick_faults
from bulutfon_pipeline.simulator.generator import CallGenerator, generate_calls
from bulutfon_pipeline.simulator.model import UTC, Call, SimulatorConfig, gc_paused

__all__ = ["Dataset", "generate_dataset"]


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
    def expected_tables(self, dialect: str | None = None) -> dict[str, list[dict[str, Any]]]:
        """The warehouse rows a correct load of this dataset produces, from the model
        (see :func:`.ground_truth.expected_tables`); ``dialect`` defaults to the served one."""
        dialect = dialect or self.config.dialect
        with self._lock:
            calls = list(self._calls)
            faults = dict(self._faults)
        return ground_truth.expected_tables(calls, faults, dialect)


def generate_dataset(config: SimulatorConfig | None = None) -> Dataset:
    """Build the dataset for ``config``: exactly ``calls_per_day`` calls on each of the
    ``days`` local days ending with ``end_date`` (inclusive). Same config, same data."""
    config = config or SimulatorConfig()
    rng = random.Random(config.seed)
    with gc_paused():
        return Dataset(config, generate_calls(config, rng), rng)
