"""Fault injection for the reliability tests: a TEST HOOK, inert in normal use.

The loads call :func:`crash_point` at the moments a crash or a storage failure is most
dangerous (mid-listing, between detail batches, inside a write transaction, on either
side of the high-water-mark commit). With neither variable below set, a call is one
environment lookup and returns.

``BULUTFON_FAULT_CRASH_AT=<point>[@N]``
    SIGKILL this process the N-th time (default: first) it reaches ``<point>``: no
    cleanup, no ``finally``, exactly like the OOM killer or a pulled plug.
``BULUTFON_FAULT_FAIL_AT=<point>[@N]``
    Raise ``error`` there instead (the caller passes the exception type its layer would
    really see, e.g. ``duckdb.IOException`` for a full disk).

Points (see the call sites): ``listing_page``, ``detail_batch``, ``details_write``,
``before_watermark_commit``, ``after_watermark_commit``; ``webhook_before_commit`` (the
webhook inbox, inside the transaction that stores a group of posts).
"""

from __future__ import annotations

import os
import signal
from collections import Counter

__all__ = ["CRASH_ENV", "FAIL_ENV", "InjectedFaultError", "crash_point"]

CRASH_ENV = "BULUTFON_FAULT_CRASH_AT"
FAIL_ENV = "BULUTFON_FAULT_FAIL_AT"

_hits: Counter[str] = Counter()


class InjectedFaultError(OSError):
    """The default error :func:`crash_point` raises for ``BULUTFON_FAULT_FAIL_AT``."""


def _matches(spec: str | None, point: str) -> bool:
    if not spec:
        return False
    name, _, nth = spec.partition("@")
    return name == point and _hits[point] == (int(nth) if nth else 1)


def crash_point(point: str, error: type[BaseException] = InjectedFaultError) -> None:
    """Kill the process, or raise ``error``, if the fault variables name ``point``."""
    crash, fail = os.environ.get(CRASH_ENV), os.environ.get(FAIL_ENV)
    if not crash and not fail:
        return
    _hits[point] += 1
    if _matches(crash, point):
        os.kill(os.getpid(), signal.SIGKILL)
    if _matches(fail, point):
        raise error(f"injected fault at {point}: No space left on device")
