"""The spool of an account's fetched details (``detail_spool``): what goes in comes back
exactly, and segments come out only while their thread holds a turn."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from bulutfon_pipeline import jsonio
from bulutfon_pipeline.api.errors import BulutfonError, NotFoundError
from bulutfon_pipeline.api.models import DetailResult
from bulutfon_pipeline.detail_spool import DetailSpool, in_turns


def _detail(uuid: str) -> DetailResult:
    text = f'{{"uuid": "{uuid}", "caller": "+90 (212) 555\\n", "n": 12345678901234567890}}'
    return DetailResult(uuid, jsonio.decode_keeping_text(f'{{"cdr": {text}}}', "cdr")["cdr"])


def test_a_spool_gives_back_what_it_was_given_exactly_and_empties(tmp_path: Path) -> None:
    kept = _detail("u1")
    plain = DetailResult("u2", {"uuid": "u2", "ok": True, "nested": [1.5, None, "ş"]})
    failed = DetailResult("u3", None, NotFoundError("detail u3: 404 Not Found", status=404))
    with contextlib.closing(DetailSpool(tmp_path)) as spool:
        for result in (kept, plain, failed):
            spool.add(result)
        assert spool.count == 3
        assert list(tmp_path.iterdir()) == []  # an unnamed file: nothing left behind
        back = list(spool.drain())
        assert spool.count == 0
        assert list(spool.drain()) == []
        spool.add(plain)
        assert [r.uuid for r in spool.drain()] == ["u2"]
    first, second, third = back
    assert isinstance(first.payload, jsonio.JSONObject)
    assert (first.uuid, first.payload, first.payload.text) == (
        "u1",
        kept.payload,
        kept.payload.text,
    )
    assert first.payload["n"] == 12345678901234567890  # exact, as received
    assert (second.uuid, second.payload, type(second.payload)) == ("u2", plain.payload, dict)
    assert (third.uuid, third.payload, str(third.error)) == ("u3", None, str(failed.error))
    assert isinstance(third.error, BulutfonError)


def _numbered(n: int, hooks: Mapping[int, Callable[[], object]] = {}) -> Iterator[DetailResult]:
    """``n`` details u0, u1...; ``hooks[i]`` runs before detail i is given (``hooks[n]``:
    after the last)."""
    for i in range(n + 1):
        if i in hooks:
            hooks[i]()
        if i < n:
            yield _detail(f"u{i}")


def _load_in_thread(
    source: Iterator[DetailResult], turns: threading.Semaphore, folder: Path, *, most: int
) -> tuple[threading.Thread, list[list[str]]]:
    """A started thread that loads ``source``'s segments (one detail a batch); the uuids of
    each segment it loaded."""
    segments: list[list[str]] = []

    def load() -> None:
        for segment in in_turns(source, turns, folder, least=1, most=most, batch=1):
            segments.append([r.uuid for r in segment])

    thread = threading.Thread(target=load)
    thread.start()
    return thread, segments


def test_segments_come_out_whenever_least_wait_and_a_turn_is_free(tmp_path: Path) -> None:
    turns = threading.BoundedSemaphore(1)
    sizes = []
    for segment in in_turns(_numbered(7), turns, tmp_path, least=3, most=100, batch=10):
        assert not turns.acquire(blocking=False)  # held while the caller loads it
        sizes.append([r.uuid for r in segment])
    assert sizes == [["u0", "u1", "u2"], ["u3", "u4", "u5"], ["u6"]]
    assert turns.acquire(blocking=False)  # released after the last one

    # A turn taken by another account at the 3rd detail, free again at the 4th: the spool
    # gives back the 4 waiting then, and the next 3 when they are in.
    turns.release()
    source = _numbered(7, {2: turns.acquire, 3: turns.release})
    segments = in_turns(source, turns, tmp_path, least=3, most=100, batch=10)
    assert [len(list(s)) for s in segments] == [4, 3]


def test_while_another_account_holds_the_turn_details_spool_until_most(tmp_path: Path) -> None:
    turns = threading.BoundedSemaphore(1)
    turns.acquire()  # another account loads meanwhile
    fetched = threading.Event()
    thread, segments = _load_in_thread(_numbered(5, {5: fetched.set}), turns, tmp_path, most=100)
    assert fetched.wait(30)  # every detail fetched without waiting for the turn
    assert segments == []
    turns.release()
    thread.join(30)
    assert segments == [[f"u{i}" for i in range(5)]]

    # At ``most`` spooled, the fetch waits for the turn before it takes another detail.
    turns.acquire()
    second_taken, third_asked = threading.Event(), threading.Event()
    source = _numbered(4, {1: second_taken.set, 2: third_asked.set})
    thread, segments = _load_in_thread(source, turns, tmp_path, most=2)
    assert second_taken.wait(30)
    # Not a synchronisation: room for a fetch that did not wait to show itself.
    assert not third_asked.wait(0.2)
    turns.release()
    thread.join(30)
    assert segments == [["u0", "u1"], ["u2"], ["u3"]]


def test_a_last_batch_is_made_ready_before_its_turn_one_account_at_a_time(
    tmp_path: Path,
) -> None:
    turns = threading.BoundedSemaphore(1)
    turns.acquire()  # another account writes meanwhile
    made = {"a": threading.Event(), "b": threading.Event()}
    loaded: list[Any] = []

    def account(name: str, source: Iterator[DetailResult]) -> threading.Thread:
        def ready(details: Iterator[DetailResult]) -> tuple[str, list[str]]:
            made[name].set()
            return name, [r.uuid for r in details]

        def load() -> None:
            for segment in in_turns(
                source, turns, tmp_path, least=3, most=100, batch=3, ready=ready
            ):
                assert not turns.acquire(blocking=False)  # loaded in its turn
                loaded.append(segment if isinstance(segment, tuple) else [r.uuid for r in segment])

        thread = threading.Thread(target=load)
        thread.start()
        return thread

    first = account("a", _numbered(2))
    assert made["a"].wait(30)  # ready while the turn is still another's
    second = account("b", _numbered(3))
    # Not a synchronisation: room for a second account getting ready to show itself.
    assert not made["b"].wait(0.2)
    assert loaded == []
    turns.release()
    first.join(30)
    second.join(30)
    assert loaded == [("a", ["u0", "u1"]), ("b", ["u0", "u1", "u2"])]
    assert turns.acquire(blocking=False)

    # A last segment of more than a batch (the turn was busy all along) is given back as
    # it was spooled, in the turn.
    loaded.clear()
    made["a"].clear()
    fetched = threading.Event()
    thread = account("a", _numbered(4, {4: fetched.set}))
    assert fetched.wait(30)
    turns.release()
    thread.join(30)
    assert loaded == [["u0", "u1", "u2", "u3"]]
    assert not made["a"].is_set()


def test_a_load_that_fails_gives_its_turn_back(tmp_path: Path) -> None:
    turns = threading.BoundedSemaphore(1)
    segments = in_turns(_numbered(3), turns, tmp_path, least=2, most=100, batch=2)
    with pytest.raises(RuntimeError), contextlib.closing(segments):
        for _segment in segments:
            raise RuntimeError("the warehouse refused the batch")
    assert turns.acquire(blocking=False)


def test_an_account_loading_while_it_fetches_keeps_no_loaded_detail(
    simulator: Any, tmp_path: Path
) -> None:
    """A segment loaded during the fetch is freed before the next detail is fetched: it is
    not kept until the account's next segment (50 accounts kept 60-70 MB of details so)."""
    import gc
    from datetime import date, timedelta

    from bulutfon_pipeline import loads
    from bulutfon_pipeline.account_threads import accounts_in_threads
    from bulutfon_pipeline.api import BulutfonClient, ClientConfig
    from bulutfon_pipeline.warehouse import Warehouse

    warehouse = Warehouse(tmp_path / "warehouse.duckdb")
    warehouse.ensure_schema()
    fetched: list[DetailResult] = []  # the client's own objects, not the spool's copies
    kept_after_first_segment: list[str] = []

    class Watched:
        """The real client, and a look at what is alive once the first segment loaded."""

        def __init__(self, client: BulutfonClient) -> None:
            self.client = client

        def fetch_details(self, uuids: Any) -> Iterator[DetailResult]:
            for result in self.client.fetch_details(uuids):
                if len(fetched) == 5:  # the first 5 were spooled, loaded, and freed
                    first = {r.uuid for r in fetched}
                    kept_after_first_segment.extend(
                        o.uuid for o in gc.get_objects()
                        if isinstance(o, DetailResult) and o.uuid in first
                        and not any(o is mine for mine in fetched)
                    )  # fmt: skip
                fetched.append(result)
                yield result

    with (
        BulutfonClient(ClientConfig.from_env(simulator.env())) as client,
        accounts_in_threads(2),  # an account of several: it spools, and loads in turns
    ):
        scan = loads.scan_listing(
            client, warehouse, lookback=timedelta(hours=2), start_date=date(2015, 1, 1)
        )
        summary = loads.load_details(
            Watched(client), warehouse, start=min(scan.days_touched),
            end=max(scan.days_touched), batch_size=5,
        )  # fmt: skip
    assert len(fetched) > 5 and summary.fetched == len(fetched)
    assert summary.batches == -(-len(fetched) // 5)  # the first was loaded while fetching
    assert kept_after_first_segment == []
