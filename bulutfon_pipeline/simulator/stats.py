"""Request statistics: ``{endpoint: {status: count}}`` plus detail and recording requests
per uuid. The simulator keeps one set per account and one for the whole server. Stdlib only."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from typing import Any

__all__ = ["ENDPOINTS", "RequestStats"]

ENDPOINTS = ("token", "listing", "detail", "recording", "directory")


class RequestStats:
    """Counts of requests by endpoint and status, and by uuid (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_status: dict[str, Counter[str]] = defaultdict(Counter)
        self._detail_uuids: Counter[str] = Counter()
        self._recording_uuids: Counter[str] = Counter()

    def record(self, endpoint: str, status: int, call_uuid: str | None = None) -> None:
        with self._lock:
            self._by_status[endpoint][str(status)] += 1
            if call_uuid is not None and endpoint == "detail":
                self._detail_uuids[call_uuid] += 1
            elif call_uuid is not None and endpoint == "recording":
                self._recording_uuids[call_uuid] += 1

    def snapshot(self) -> dict[str, Any]:
        """``{endpoint: {status: count}}`` for every endpoint, plus ``detail_uuids`` and
        ``recording_uuids`` ({uuid: requests}) and ``total``."""
        with self._lock:
            out: dict[str, Any] = {e: dict(self._by_status.get(e, {})) for e in ENDPOINTS}
            out["total"] = sum(sum(c.values()) for c in self._by_status.values())
            out["detail_uuids"] = dict(self._detail_uuids)
            out["recording_uuids"] = dict(self._recording_uuids)
            return out

    def reset(self) -> None:
        with self._lock:
            self._by_status.clear()
            self._detail_uuids.clear()
            self._recording_uuids.clear()
