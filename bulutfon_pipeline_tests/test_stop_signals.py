"""A stop signal stops a sync even when its handler's exception is lost.

CPython may run a signal handler inside a finalizer (seen: an aiohttp response's
``__del__`` during the detail fan-out), where the exception it raises is printed as
"Exception ignored" and dropped (DuckDB, too, can turn it into ``RuntimeError('Query
interrupted')``). The sync then ran to its end and printed a traceback besides its one
line. These tests play the lost exception and the finalizer in this process, with real
signals.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bulutfon_pipeline.runner.interrupts import StoppedError, stop_cleanly
from bulutfon_pipeline.settings import Settings
from bulutfon_pipeline.stop_signals import StopRequestedError, raise_if_stopped, until_stopped


@pytest.fixture(autouse=True)
def _signal_handlers_back() -> Iterator[None]:
    """A stopped block keeps ignoring SIGINT and SIGTERM until the process exits (a second
    Ctrl-C must not break its one line); this process goes on to start other tests'
    children, which would inherit the ignored signals."""
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # No warehouse file: the stop's line says nothing was committed.
    return dataclasses.replace(Settings(), duckdb_path=tmp_path / "none.duckdb")


def _lose_the_next_interrupt(signum: signal.Signals) -> None:
    """A handler whose exception goes nowhere, as one run in a finalizer."""
    signal.signal(signum, lambda number, frame: None)


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_whose_handler_exception_is_lost_stops_the_detail_loop_at_its_next_item(
    settings: Settings, signum: signal.Signals, status: int
) -> None:
    taken: list[int] = []
    with pytest.raises(StoppedError) as stopped, stop_cleanly(settings, command="sync"):
        for item in until_stopped(range(10)):
            taken.append(item)
            if item == 2:
                _lose_the_next_interrupt(signum)
                os.kill(os.getpid(), signum)
    assert taken == [0, 1, 2]
    assert stopped.value.exit_code == status
    assert stopped.value.message.startswith(f"stopped by {signum.name}: nothing was committed; ")


def test_outside_a_sync_nothing_is_watched() -> None:
    raise_if_stopped()  # no watch: returns
    assert list(until_stopped(range(3))) == [0, 1, 2]


class _RaisesInFinalizer:
    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __del__(self) -> None:
        raise self.error


def test_an_interrupt_dropped_in_a_finalizer_is_not_printed_but_other_errors_are(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    reported: list[BaseException] = []  # what reaches the hook in place (Python's prints)
    monkeypatch.setattr(sys, "unraisablehook", lambda u: reported.append(u.exc_value))
    with stop_cleanly(settings, command="sync"):
        _RaisesInFinalizer(StopRequestedError(signal.SIGINT))
        _RaisesInFinalizer(KeyboardInterrupt())
        _RaisesInFinalizer(ValueError("a real bug"))
        gc.collect()
    assert [repr(error) for error in reported] == [repr(ValueError("a real bug"))]
    _RaisesInFinalizer(KeyboardInterrupt())  # after the sync: Python's way again
    gc.collect()
    assert [type(error) for error in reported] == [ValueError, KeyboardInterrupt]
