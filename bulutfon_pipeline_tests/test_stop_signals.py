"""A stop signal stops a sync even when its handler's exception is lost.

CPython may run a signal handler inside a finalizer (seen: an aiohttp response's
``__del__`` during the detail fan-out), where the exception it raises is printed as
"Exception ignored" and dropped; DuckDB turns it into ``RuntimeError('Query
interrupted')``. The sync then ran to its end and printed a traceback besides its one
line. These tests play both parts in this process, with real signals.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import signal
import sys
from pathlib import Path

import duckdb
import pytest

from bulutfon_pipeline.runner.interrupts import StoppedError, stop_cleanly
from bulutfon_pipeline.settings import Settings
from bulutfon_pipeline.stop_signals import StopRequestedError, raise_if_stopped, until_stopped


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # No warehouse file: the stop's line says nothing was committed.
    return dataclasses.replace(Settings(), duckdb_path=tmp_path / "none.duckdb")


def _lose_the_next_interrupt() -> None:
    """A handler whose exception goes nowhere, as one run in a finalizer."""
    signal.signal(signal.SIGINT, lambda signum, frame: None)


def test_a_signal_whose_handler_exception_is_lost_stops_the_detail_loop_at_its_next_item(
    settings: Settings,
) -> None:
    taken: list[int] = []
    with pytest.raises(StoppedError) as stopped, stop_cleanly(settings, command="sync"):
        for item in until_stopped(range(10)):
            taken.append(item)
            if item == 2:
                _lose_the_next_interrupt()
                os.kill(os.getpid(), signal.SIGINT)
    assert taken == [0, 1, 2]
    assert stopped.value.exit_code == 130
    assert stopped.value.message.startswith("stopped by SIGINT: nothing was committed; ")


def test_a_signal_turned_into_a_duckdb_runtime_error_is_still_a_stop(settings: Settings) -> None:
    con = duckdb.connect()
    with pytest.raises(StoppedError) as stopped, stop_cleanly(settings, command="sync"):
        os.kill(os.getpid(), signal.SIGTERM)  # our handler raises inside DuckDB's check
        try:
            con.execute("SELECT count(*) FROM range(10000000000) t(i) WHERE i % 7 = 3")
        except RuntimeError as error:
            assert "interrupted" in str(error)  # what DuckDB made of the stop
        raise_if_stopped()
        pytest.fail("the stop was not raised")
    assert stopped.value.exit_code == 143


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
