"""Group commit (``grouped_writes``): whoever holds the turn makes every write handed over
by then, in one call; a failed group is made again one write at a time. Real threads,
and a turn the test opens once every writer waits for it (no sleep)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from bulutfon_pipeline.grouped_writes import TurnStoppedError, WriteGroup


class _Turn:
    """A one-slot turn that counts who waits for it (``waiting``), closed at first."""

    def __init__(self) -> None:
        self.slot = threading.Semaphore(0)
        self.waiting = threading.Semaphore(0)

    def __enter__(self) -> None:
        self.waiting.release()
        self.slot.acquire()

    def __exit__(self, *exc: object) -> None:
        self.slot.release()


def _write_at_once(
    items: Sequence[str], write_all: Callable[[Sequence[str]], Sequence[str]]
) -> dict[str, Any]:
    """Each item written by its own thread through one group; the turn opens once all
    wait for it. Each item's result, or the error its thread got."""
    group: WriteGroup[str, str] = WriteGroup()
    turn = _Turn()
    got: dict[str, Any] = {}

    def writer(item: str) -> None:
        try:
            got[item] = group.write(item, turn, write_all)
        except BaseException as error:
            got[item] = error

    threads = [threading.Thread(target=writer, args=(item,)) for item in items]
    for thread in threads:
        thread.start()
    for _ in items:
        assert turn.waiting.acquire(timeout=30)
    turn.slot.release()
    for thread in threads:
        thread.join(timeout=30)
    return got


def test_the_holder_of_the_turn_writes_every_write_handed_over_in_one_call() -> None:
    calls: list[list[str]] = []

    def write_all(items: Sequence[str]) -> list[str]:
        calls.append(list(items))
        return [item.upper() for item in items]

    got = _write_at_once(["izmir", "ankara", "bursa"], write_all)
    assert got == {"izmir": "IZMIR", "ankara": "ANKARA", "bursa": "BURSA"}
    assert len(calls) == 1 and sorted(calls[0]) == ["ankara", "bursa", "izmir"]


def test_a_failed_group_is_written_one_by_one_and_fails_only_the_bad_write() -> None:
    calls: list[list[str]] = []

    def write_all(items: Sequence[str]) -> list[str]:
        calls.append(list(items))
        if "bad" in items:
            raise ValueError("bad row")
        return [item.upper() for item in items]

    got = _write_at_once(["izmir", "bad", "bursa"], write_all)
    assert got["izmir"] == "IZMIR" and got["bursa"] == "BURSA"
    assert isinstance(got["bad"], ValueError) and str(got["bad"]) == "bad row"
    assert sorted(map(len, calls)) == [1, 1, 1, 3]  # together, then each alone


def test_a_write_stopped_in_its_turn_fails_every_write_it_held() -> None:
    def write_all(items: Sequence[str]) -> list[str]:
        raise KeyboardInterrupt

    got = _write_at_once(["izmir", "ankara"], write_all)
    stopped = [item for item, error in got.items() if isinstance(error, KeyboardInterrupt)]
    assert len(stopped) == 1  # the holder's own thread
    other = got[({"izmir", "ankara"} - set(stopped)).pop()]
    assert isinstance(other, TurnStoppedError)
    assert "KeyboardInterrupt" in str(other)


def test_without_turns_a_write_is_made_alone_at_once() -> None:
    from bulutfon_pipeline import account_threads

    calls: list[list[str]] = []

    def write_all(items: Sequence[str]) -> list[str]:
        calls.append(list(items))
        return [item.upper() for item in items]

    assert account_threads.write_in_turn(False, "kind", "izmir", write_all) == "IZMIR"
    assert account_threads.write_in_turn(True, "kind", "izmir", write_all) == "IZMIR"
    assert calls == [["izmir"], ["izmir"]]

    def failing(items: Sequence[str]) -> list[str]:
        raise ValueError("bad row")

    with pytest.raises(ValueError, match="bad row"):
        account_threads.write_in_turn(False, "kind", "izmir", failing)
