"""``scan_listing``: pages are staged in chunks (memory bounded by a chunk, the file not
held while paging), and nothing of a scan that dies mid-way reaches ``cdr_listing``."""

from __future__ import annotations

import datetime as dt
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from bulutfon_pipeline.api import ListingPage
from bulutfon_pipeline.loads import scan_listing
from bulutfon_pipeline.normalize import normalize_listing
from bulutfon_pipeline.settings import LOCAL_TZ
from bulutfon_pipeline.warehouse import Warehouse
from bulutfon_pipeline.warehouse.postgres_backend import Postgres

T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
START = dt.date(2015, 4, 1)
LOOKBACK = dt.timedelta(hours=48)
#: 100 calls, newest first, 10 minutes apart: 16 April 2015 back into 15 April.
NEWEST = dt.datetime(2015, 4, 16, 16, 0, tzinfo=LOCAL_TZ)
ITEMS = [
    {
        "uuid": f"call-{n:03d}",
        "call_time": (NEWEST - dt.timedelta(minutes=10 * n)).strftime("%d-%m-%Y %H:%M"),
        "direction": "IN",
        "caller": "90532xxxxxxx",
        "callee": "902322290000",
    }
    for n in range(100)
]


class Listing:
    """A newest-first listing in pages of ``size``; ``on_page(n)`` runs before page n is
    served, and may raise to kill the scan there."""

    def __init__(self, items: list[dict[str, Any]], size: int, on_page: Any = None) -> None:
        self.items, self.size, self.on_page = items, size, on_page

    def iter_listing_pages(self) -> Iterator[ListingPage]:
        for number, start in enumerate(range(0, len(self.items), self.size), start=1):
            if self.on_page is not None:
                self.on_page(number)
            yield ListingPage(number, self.items[start : start + self.size], None, None)


class Killed(Exception):
    """Stands in for the process dying mid-scan (nothing after it runs)."""


@pytest.fixture
def warehouse(tmp_path: Path) -> Warehouse:
    wh = Warehouse(tmp_path / "bulutfon.duckdb", lock_timeout_s=10.0)
    wh.ensure_schema()
    return wh


def table(wh: Warehouse, name: str) -> list[tuple[Any, ...]]:
    with wh.transaction() as con:
        return con.execute(f"SELECT * FROM {name} ORDER BY ALL").fetchall()


def whole_listing(tmp_path: Path) -> list[tuple[Any, ...]]:
    """``cdr_listing`` after one upsert of every item: what any scan of them must leave."""
    wh = Warehouse(tmp_path / "whole.duckdb")
    wh.ensure_schema()
    wh.upsert_listing(normalize_listing(ITEMS), seen_at=T0)
    return table(wh, "cdr_listing")


def scan(wh: Warehouse, client: Listing, chunk_rows: int) -> Any:
    return scan_listing(
        client, wh, lookback=LOOKBACK, start_date=START, now=T0, chunk_rows=chunk_rows
    )


def test_pages_are_staged_in_chunks_and_merged_once(
    warehouse: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    staged: list[int] = []
    stage_listing = warehouse.stage_listing

    def spy(stage: Any, frame: pd.DataFrame) -> int:
        staged.append(len(frame))
        return stage_listing(stage, frame)

    monkeypatch.setattr(warehouse, "stage_listing", spy)

    result = scan(warehouse, Listing(ITEMS, size=10), chunk_rows=25)

    # A chunk goes out once 25 rows have gathered (after pages 3, 6 and 9); page 10 is
    # staged by the final transaction. No chunk outgrows chunk_rows + one page.
    assert staged == [30, 30, 30]
    assert (result.staged_chunks, result.pages, result.items, result.new) == (3, 10, 100, 100)
    assert result.days_touched == [dt.date(2015, 4, 15), dt.date(2015, 4, 16)]
    assert result.high_water_mark == NEWEST.astimezone(dt.UTC)
    assert table(warehouse, "cdr_listing") == whole_listing(tmp_path)
    assert table(warehouse, "_cdr_listing_stage") == []


def test_a_small_scan_is_one_transaction(warehouse: Warehouse) -> None:
    result = scan(warehouse, Listing(ITEMS, size=10), chunk_rows=5000)
    assert (result.staged_chunks, result.new) == (0, 100)
    assert table(warehouse, "_cdr_listing_stage") == []


def test_a_scan_killed_between_chunks_commits_nothing_and_the_rerun_is_exact(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    def die_on_page_8(number: int) -> None:
        if number == 8:
            raise Killed

    with pytest.raises(Killed):
        scan(warehouse, Listing(ITEMS, size=10, on_page=die_on_page_8), chunk_rows=25)

    # Two chunks (60 rows) are staged, but neither cdr_listing nor the mark moved.
    assert len(table(warehouse, "_cdr_listing_stage")) == 60
    assert table(warehouse, "cdr_listing") == [] and warehouse.high_water_mark() is None

    result = scan(warehouse, Listing(ITEMS, size=10), chunk_rows=25)

    assert (result.new, result.updated) == (100, 0)
    assert table(warehouse, "cdr_listing") == whole_listing(tmp_path)
    assert table(warehouse, "_cdr_listing_stage") == []


def test_the_file_is_not_held_while_the_listing_is_paged(warehouse: Warehouse) -> None:
    opened: list[subprocess.CompletedProcess[str]] = []

    def open_from_another_process(number: int) -> None:
        if number == 5:  # after the chunk of pages 1-3 was staged
            code = f"import duckdb; duckdb.connect({str(warehouse.path)!r}).close()"
            opened.append(
                subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            )

    scan(warehouse, Listing(ITEMS, size=10, on_page=open_from_another_process), chunk_rows=25)

    assert opened and opened[0].returncode == 0, opened[0].stderr


def test_listing_scans_of_concurrent_runs_take_turns_on_postgres(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """No pool keeps runs apart on PostgreSQL: a scan that begins while another one is
    paging waits for it (``listing_scan_lock``, which the cdr_listing asset takes) instead
    of clearing what it staged, which made the first one fail ("listing rows this scan
    staged are gone")."""
    first_wh = Warehouse.on(Postgres(postgres_url, lock_timeout_s=30.0))
    first_wh.ensure_schema()
    second_wh = Warehouse.on(Postgres(postgres_url, lock_timeout_s=30.0))
    staged, second_waits_or_ended = threading.Event(), threading.Event()
    waits: list[str] = []

    class Waits(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "waiting for another listing scan" in record.getMessage():
                waits.append(record.getMessage())
                second_waits_or_ended.set()

    def pause_on_page_3(number: int) -> None:
        if number == 3:  # pages 1 and 2 are staged (20 rows, chunks of 15)
            staged.set()
            assert second_waits_or_ended.wait(30), "the second scan neither waited nor ended"

    outcome: dict[str, Any] = {}

    def second() -> None:
        try:
            assert staged.wait(30), "the first scan staged nothing"
            with second_wh.listing_scan_lock(log.info):
                outcome["result"] = scan(second_wh, Listing(ITEMS, size=10), chunk_rows=15)
        except Exception as exc:  # reported by the assertion below
            outcome["error"] = exc
        finally:
            second_waits_or_ended.set()

    log = logging.getLogger("bulutfon_pipeline.assets.listing")
    caplog.set_level(logging.INFO, logger=log.name)
    handler = Waits()
    log.addHandler(handler)
    try:
        thread = threading.Thread(target=second)
        thread.start()
        with first_wh.listing_scan_lock(log.info):  # as the cdr_listing asset does
            first = scan(first_wh, Listing(ITEMS, size=10, on_page=pause_on_page_3), 15)
        thread.join(60)
    finally:
        log.removeHandler(handler)

    assert "error" not in outcome, outcome
    assert first.new == 100
    assert outcome["result"].new == 0  # it scanned after the first had committed
    assert len(waits) == 1 and "listing scan" in waits[0], waits
    with first_wh.transaction() as tx:
        assert tx.scalar("SELECT count(*) FROM cdr_listing") == 100
        assert tx.scalar("SELECT count(*) FROM _cdr_listing_stage") == 0
