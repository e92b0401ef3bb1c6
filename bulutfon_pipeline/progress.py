"""A tiny progress hook, so asset code can report progress to whoever runs it.

The asset code is shared by the Dagster UI, the schedule and the CLI. Only the CLI has a
terminal; it installs a reporter (a rich progress bar) for the duration of a command and
the asset code calls :func:`reporter` without knowing who is listening.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


class ProgressReporter(Protocol):
    """What the asset code reports to (:func:`reporter`)."""

    def start(self, task: str, total: int | None) -> None: ...
    def advance(self, task: str, amount: int = 1) -> None: ...
    def finish(self, task: str) -> None: ...


class PartsReporter(Protocol):
    """What a command installs (:func:`installed`): the same calls, each with the part of
    the work it is about (an account's name; ``""`` for the one account of a command)."""

    def start(self, task: str, total: int | None, part: str) -> None: ...
    def advance(self, task: str, amount: int, part: str) -> None: ...
    def finish(self, task: str, part: str) -> None: ...


class NullReporter:
    """Reports nothing: the default outside the CLI."""

    def start(self, task: str, total: int | None, part: str) -> None:
        pass

    def advance(self, task: str, amount: int, part: str) -> None:
        pass

    def finish(self, task: str, part: str) -> None:
        pass


_current: PartsReporter = NullReporter()


class _Part:
    """The installed reporter, for one part of the work (see :func:`reporter`)."""

    def __init__(self, parts: PartsReporter, part: str) -> None:
        self._parts, self._part = parts, part

    def start(self, task: str, total: int | None) -> None:
        self._parts.start(task, total, self._part)

    def advance(self, task: str, amount: int = 1) -> None:
        self._parts.advance(task, amount, self._part)

    def finish(self, task: str) -> None:
        self._parts.finish(task, self._part)


def reporter(part: str = "") -> ProgressReporter:
    """The reporter installed by the running command (a no-op by default), for ``part`` of
    the work: accounts loading at once each report theirs under their name, from any
    thread, and the installed reporter adds the parts of a task up."""
    return _Part(_current, part)


@contextmanager
def installed(new: PartsReporter) -> Iterator[PartsReporter]:
    """Install ``new`` as the reporter for the duration of the ``with`` block."""
    global _current
    previous, _current = _current, new
    try:
        yield new
    finally:
        _current = previous
