"""Several accounts' listing scans finished in one transaction
(``listing.finish_listing_scans``, what accounts taking turns on one DuckDB file do), on
DuckDB and PostgreSQL: each gets exactly what it gets when finished alone."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pytest

from bulutfon_pipeline.normalize import Reject
from bulutfon_pipeline.warehouse import Warehouse, WarehouseError
from bulutfon_pipeline.warehouse.listing import ListingFinish
from bulutfon_pipeline_tests.warehouse.test_loader import T0, T1, _page, rows, seed_listing

#: One scan: its staged chunks, its last rows, its rejects, when it was read.
Scan = tuple[list[pd.DataFrame], pd.DataFrame | None, list[Reject], datetime]


def _finish(wh: Warehouse, scan: Scan) -> ListingFinish:
    """Begin ``wh``'s scan and stage its chunks; what finishes it."""
    chunks, rest, rejects, seen_at = scan
    stage = wh.begin_listing_scan()
    for chunk in chunks:
        wh.stage_listing(stage, chunk)
    return ListingFinish(stage, rest, rejects, seen_at, wh.account)


def _listing_of(wh: Warehouse) -> dict[str, list[tuple[Any, ...]]]:
    """The account's listing rows, mark, rejects and staged rows (without the account)."""
    mine = [wh.account]
    return {
        "cdr_listing": rows(wh, "SELECT uuid, call_time, call_date, direction, caller, callee, "
                            "first_seen_at, last_seen_at FROM cdr_listing WHERE account = ? "
                            "ORDER BY uuid", mine),
        "mark": rows(wh, "SELECT key, value, updated_at FROM _pipeline_state "
                     "WHERE account = ? ORDER BY key", mine),
        "rejects": rows(wh, "SELECT uuid, stage, reason, payload FROM load_rejects "
                        "WHERE account = ? ORDER BY reason", mine),
        "staged": rows(wh, "SELECT count(*) FROM _cdr_listing_stage WHERE account = ?", mine),
    }  # fmt: skip


def test_scans_finished_together_get_what_each_finished_alone_gets(
    warehouse: Warehouse,
) -> None:
    items = seed_listing()
    # The live list moved: a call again further down, with other values (the first wins).
    moved = {**items[0], "direction": "OUT", "call_time": "17-04-2015 10:00"}
    called_back = {**items[1], "callee": 1009}  # listed again with another callee
    later = {**items[2], "uuid": "later-call", "call_time": "18-04-2015 09:30"}
    bad = Reject(None, "listing", "item 6: call_time: not a date 'dün'", '{"uuid": null}')
    scans: dict[str, list[Scan]] = {
        "izmir": [
            ([_page(items[:3], 1), _page([moved, *items[3:]], 2)], None, [bad, bad], T0),
            ([], _page([later, called_back], 1), [], T1),
        ],
        "ankara": [
            ([], _page(items[:2], 1), [], T0),
            ([_page(items[2:], 1)], _page(items[:1], 2), [], T1),
        ],
    }
    together = Warehouse.on(warehouse.db, account="izmir")
    results = []
    for step in range(2):
        finishes = [
            _finish(Warehouse.on(warehouse.db, account=account), steps[step])
            for account, steps in scans.items()
        ]
        results.append(together.finish_listing_scans(finishes))
        for (account, steps), result in zip(scans.items(), results[-1], strict=True):
            alone = Warehouse.on(warehouse.db, account=f"{account}-alone")
            chunks, rest, rejects, seen_at = steps[step]
            finish = _finish(alone, steps[step])
            expected = alone.finish_listing_scan(
                finish.stage, rest, rejects=rejects, seen_at=seen_at
            )
            assert result == expected, (account, step)
    (izmir_0, ankara_0), (izmir_1, ankara_1) = results
    # izmir: 5 calls, one reject (twice given); then a new call and one whose callee moved.
    assert (izmir_0.new, izmir_0.rejected, izmir_0.high_water_mark) == (
        5, 1, datetime(2015, 4, 16, 13, 17, tzinfo=UTC),
    )  # fmt: skip
    assert (izmir_1.new, izmir_1.updated, izmir_1.unchanged) == (1, 1, 0)
    assert izmir_1.high_water_mark == datetime(2015, 4, 18, 6, 30, tzinfo=UTC)
    assert (ankara_0.new, ankara_1.new, ankara_1.unchanged) == (2, 3, 1)
    for account in scans:
        mine = _listing_of(Warehouse.on(warehouse.db, account=account))
        assert mine == _listing_of(Warehouse.on(warehouse.db, account=f"{account}-alone"))
        assert len(mine["cdr_listing"]) == {"izmir": 6, "ankara": 5}[account]
        assert mine["staged"] == [(0,)]


def test_one_scan_whose_rows_are_gone_fails_the_scans_finished_with_it(
    warehouse: Warehouse,
) -> None:
    items = seed_listing()
    izmir = Warehouse.on(warehouse.db, account="izmir")
    ankara = Warehouse.on(warehouse.db, account="ankara")
    gone = _finish(izmir, ([_page(items, 1)], None, [], T0))
    izmir.begin_listing_scan()  # another scan of izmir clears what this one staged
    kept = _finish(ankara, ([_page(items[:2], 1)], _page(items[2:], 2), [], T0))

    with pytest.raises(WarehouseError, match="the scan of izmir staged are gone"):
        izmir.finish_listing_scans([kept, gone])
    # Nothing was written, ankara's included; it finishes alone afterwards.
    assert rows(warehouse, "SELECT count(*) FROM cdr_listing") == [(0,)]
    assert ankara.high_water_mark() is None
    assert ankara.finish_listing_scans([kept])[0].new == 5
    with pytest.raises(ValueError, match="one scan per account"):
        izmir.finish_listing_scans([gone, gone])
