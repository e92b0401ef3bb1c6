"""Stopping ``sync`` and ``backfill`` cleanly on SIGINT (Ctrl-C) or SIGTERM.

Either signal ends the block with :class:`StoppedError`, which carries one line (what is
committed, and that ``sync`` continues from there) and the exit status a shell reports for
a process that a signal stopped, 128 + the signal number: 130 for SIGINT, 143 for SIGTERM.
The CLI prints the line and exits with it.

Nothing is left half-written because every write is a DuckDB transaction: the exception
the signal raises unwinds through :meth:`Warehouse.transaction`, which rolls back the
batch in flight and closes the file; ``sync_lock``'s ``finally`` drops the lock file.

Dagster complicates the "which signal" part. While ``execute_in_process`` runs, Dagster
installs its own SIGINT handler and points SIGTERM at it (``dagster._utils.interrupts``):
inside an asset it raises ``DagsterExecutionInterruptedError``; between steps it only
notes the signal, raises it at the next step, or forgets it once the run ends. Its
handler does not say which signal came. So :func:`stop_cleanly` also sets the signal
module's wakeup fd: CPython writes the number of every signal that has a Python handler
to it, whichever handler that is. After the command fails (with whatever exception) or
after each Dagster run (:func:`raise_if_stopped`), the pipe says whether SIGINT or
SIGTERM came and which one came first.

The pipe is also what stops the detail fan-out: a handler's exception can be lost (run
inside a finalizer, where Python prints and drops it; turned into a ``RuntimeError`` by a
DuckDB query), so the detail loop asks the pipe between items
(``stop_signals.until_stopped``), and an interrupt dropped in a finalizer is not printed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

from bulutfon_pipeline.settings import Settings
from bulutfon_pipeline.stop_signals import (
    STOP_SIGNALS,
    StopRequestedError,
    Watch,
    raise_if_stopped,
    watching,
)

LOGGER = logging.getLogger(__name__)

__all__ = [
    "STOP_SIGNALS",
    "StopRequestedError",
    "StoppedError",
    "raise_if_stopped",
    "stop_cleanly",
]


class StoppedError(BaseException):
    """The block was stopped by a signal and rolled back cleanly (a BaseException: nothing
    on the way may take it for a failure)."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum
        self.message = message

    @property
    def exit_code(self) -> int:
        """128 + the signal number: 130 for SIGINT, 143 for SIGTERM."""
        return 128 + self.signum


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise StopRequestedError(signum)


@contextlib.contextmanager
def stop_cleanly(settings: Settings, *, command: str) -> Iterator[None]:
    """Run the block so that SIGINT or SIGTERM ends it with :class:`StoppedError`.

    Args:
        settings: names the warehouse, read at the end for what the block committed.
        command: the command's name, for the message (``sync`` or ``backfill``).
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread; nothing to do elsewhere
        return
    started = dt.datetime.now(dt.UTC)
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    os.set_blocking(write_fd, False)
    previous_fd = signal.set_wakeup_fd(write_fd)
    previous = {stop_signal: signal.getsignal(stop_signal) for stop_signal in STOP_SIGNALS}
    watch = Watch(read_fd)
    watching(watch)
    previous_hook = sys.unraisablehook
    sys.unraisablehook = _unraisable_hook(previous_hook)
    try:
        # Set even when the shell started us with SIGINT ignored (a background job).
        for stop_signal in STOP_SIGNALS:
            signal.signal(stop_signal, _raise_stop)
        try:
            yield
        except BaseException:
            signum = watch.received()
            if signum is None:
                raise
            _ignore_further_signals()  # a second Ctrl-C must not break the one line
            raise StoppedError(
                signum, _stopped_message(signum, settings, started, command)
            ) from None
        signum = watch.received()
        if signum is not None:  # after the last Dagster run, when nothing raised
            _ignore_further_signals()
            raise StoppedError(signum, _stopped_message(signum, settings, started, command))
    finally:
        if watch.signum is None:  # stopping: keep ignoring a second signal until the exit
            for stop_signal, handler in previous.items():
                signal.signal(stop_signal, handler if handler is not None else signal.SIG_DFL)
        signal.set_wakeup_fd(previous_fd)
        sys.unraisablehook = previous_hook
        watching(None)
        os.close(read_fd)
        os.close(write_fd)


#: What a stop signal's handler raises: ours, Python's default, and Dagster's inside a
#: step (``DagsterExecutionInterruptedError``, by name: this module is imported by every
#: command, and only the runs import Dagster).
_INTERRUPTS = (StopRequestedError, KeyboardInterrupt)
_DAGSTER_INTERRUPT = "DagsterExecutionInterruptedError"


def _unraisable_hook(previous: Any) -> Any:
    """``sys.unraisablehook`` for the block: a stop signal whose handler ran inside a
    finalizer (an aiohttp response's ``__del__``) raised where Python can only print and
    drop the exception; the wakeup fd keeps the signal and the detail loop stops at its
    next item, so the interrupt is not printed (that would break the one line)."""

    def hook(unraisable: Any) -> None:
        error = unraisable.exc_value
        if isinstance(error, _INTERRUPTS) or type(error).__name__ == _DAGSTER_INTERRUPT:
            LOGGER.debug("a stop signal's handler ran in a finalizer: %r", unraisable.object)
            return
        previous(unraisable)

    return hook


def _ignore_further_signals() -> None:
    for stop_signal in STOP_SIGNALS:
        signal.signal(stop_signal, signal.SIG_IGN)


def _stopped_message(signum: int, settings: Settings, since: dt.datetime, command: str) -> str:
    """One line: what is committed and how to continue."""
    name = signal.Signals(signum).name
    resume = "run `bulutfon-pipeline sync` again to continue"
    if command != "sync":
        resume += f" (or run the same `{command}` again)"
    return f"stopped by {name}: {_committed(settings, since)}; {resume}"


def _committed(settings: Settings, since: dt.datetime) -> str:
    """What the stopped command committed and what is left to load, over every account of
    the deployment (``BULUTFON_ACCOUNTS_FILE``, or ``default``)."""
    from bulutfon_pipeline.accounts import load_accounts
    from bulutfon_pipeline.warehouse import Warehouse

    if settings.warehouse_url is None and not settings.duckdb_path.exists():
        return "nothing was committed"
    try:
        # A short lock wait: the message must not hang a process that was told to stop.
        warehouse = Warehouse.from_settings(dataclasses.replace(settings, lock_timeout_s=5.0))
        accounts = [account.name for account in load_accounts()]
        progress = warehouse.load_progress(since, accounts)
    except Exception:  # a summary must never turn a stop into a traceback
        return "every batch loaded before the signal is committed"
    days = progress.pending_days
    if not days:
        left = "no listed call is left to load"
    else:
        span = days[0].isoformat() if len(days) == 1 else f"{days[0]}..{days[-1]}"
        on = f"{len(days)} day" if len(days) == 1 else f"{len(days)} days"
        left = f"{progress.pending_calls} listed calls on {on} ({span}) still to load"
    return f"{progress.loaded_since} calls loaded by this run are committed, {left}"
