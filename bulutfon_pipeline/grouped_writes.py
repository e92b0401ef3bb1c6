"""Group commit for the accounts that take turns to write one embedded warehouse.

While accounts load in threads of one process into DuckDB, they write it one at a time
(``account_threads.write_turns``). With 50 accounts at once, a turn lasts mostly for its
small DuckDB calls, each of which gives the GIL up and waits to get it back among the
other accounts' threads (``benchmarks/ANALYSIS.md``, sessions 33 and 35). So an account
hands its write to a :class:`WriteGroup` and then waits for a turn. Whoever gets the turn
makes every write handed over by then, in one transaction, with one statement of each
kind for them all (``warehouse.directory.merge_directories``). The others find theirs
made when their turn comes, and give it back at once.

A group that fails is made again one write at a time, each in its own transaction: one
account's bad write fails that account only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager
from typing import Any, Generic, TypeVar

__all__ = ["TurnStoppedError", "WriteGroup"]

T = TypeVar("T")
R = TypeVar("R")
#: Writes all the given items in one transaction; their results, in their order.
WriteAll = Callable[[Sequence[T]], Sequence[R]]


class TurnStoppedError(RuntimeError):
    """A write handed over was not made: the turn that held it was stopped."""


class WriteGroup(Generic[T, R]):
    """Writes of one kind, handed over by the accounts until one of them holds a turn."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handed: list[tuple[T, Future[R]]] = []

    def write(self, item: T, turn: AbstractContextManager[Any], write_all: WriteAll[T, R]) -> R:
        """Hand ``item`` over, take ``turn``, and while holding it make every write handed
        over by then through ``write_all`` (the holder's own); ``item``'s result.

        Raises:
            Whatever ``write_all([item])`` raises, when ``item`` is written alone.
        """
        mine: Future[R] = Future()
        with self._lock:
            self._handed.append((item, mine))
        with turn:
            with self._lock:
                group, self._handed = self._handed, []
            _write(group, write_all)
        return mine.result()  # made in this turn, or in an earlier one


def _write(group: list[tuple[T, Future[R]]], write_all: WriteAll[T, R]) -> None:
    """Settle every future of ``group`` (:func:`_settle`), even when the holder is
    interrupted: the writes not made then fail with :class:`TurnStoppedError`."""
    try:
        _settle(group, write_all)
    except BaseException as stop:
        for _, future in group:
            if not future.done():
                future.set_exception(
                    TurnStoppedError(f"not written: its turn was stopped ({type(stop).__name__})")
                )
        raise


def _settle(group: list[tuple[T, Future[R]]], write_all: WriteAll[T, R]) -> None:
    """Make ``group``'s writes together, or one by one if together they failed (a write
    alone keeps its own error). An empty group (its writes made in an earlier turn) makes
    none."""
    if not group:
        return
    if len(group) == 1:
        _settle_alone(group[0], write_all)
        return
    try:
        results = write_all([item for item, _ in group])
    except Exception:
        for handed in group:
            _settle_alone(handed, write_all)
        return
    for (_, future), result in zip(group, results, strict=True):
        future.set_result(result)


def _settle_alone(handed: tuple[T, Future[R]], write_all: WriteAll[T, R]) -> None:
    item, future = handed
    try:
        future.set_result(write_all([item])[0])
    except Exception as error:
        future.set_exception(error)
