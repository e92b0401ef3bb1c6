"""The counts the runs read outside their turns to write: what is pending per day and the
checks' integrity counts, on DuckDB and on PostgreSQL (the ``warehouse`` fixture).

On DuckDB they group the account's rows instead of joining them (a hash join took 8-16 MB
of the 64 MB the accounts loading in threads share; ``benchmarks/ANALYSIS.md``, session
37). Each state below is built so that every branch of those queries decides a count: a
call loaded, rejected (and a reject without a uuid), pending, marked for a new fetch,
steps and originations without their parent, and another account holding the same
calls. The expected figures are counted here from what was written, in Python.
"""

from __future__ import annotations

from datetime import date, timedelta

from bulutfon_pipeline.normalize import Reject, normalize_listing
from bulutfon_pipeline.warehouse import Warehouse
from bulutfon_pipeline.warehouse.changes import ChangedCall, mark_for_refetch
from bulutfon_pipeline.warehouse.integrity import integrity_counts
from bulutfon_pipeline_tests.warehouse.test_loader import T0, load, seed_detail, seed_listing

DAY = date(2015, 4, 16)


def test_pending_days_and_integrity_count_each_state_of_a_call_and_only_its_account(
    warehouse: Warehouse,
) -> None:
    # Five listed calls of 16 April 2015 and a sixth whose detail has steps.
    detail = seed_detail()
    items = [*seed_listing(), {"uuid": detail["uuid"], "call_time": detail["call_time"]}]
    izmir, ankara = (Warehouse.on(warehouse.db, account=a) for a in ("izmir", "ankara"))
    for wh in (izmir, ankara):  # the same calls in both accounts
        wh.upsert_listing(normalize_listing(items), seen_at=T0)
        load(wh, [detail, items[0]])
    uuids = [item["uuid"] for item in items]
    loaded, rejected = uuids[0], uuids[1]
    # izmir: a reject for a listed call, one for the loaded call (it counts as loaded),
    # one without a uuid (it names no call), and the loaded call marked for a new fetch.
    izmir.add_rejects(
        [
            Reject(rejected, "detail", "HTTP 404", None),
            Reject(loaded, "detail", "HTTP 500", None),
            Reject(None, "normalize", "bad", None),
        ]
    )
    mark_for_refetch(izmir, [ChangedCall(loaded, DAY, ("call_price",))], detected_at=T0)
    # izmir: the detail's cdrs row and one of its steps that has originations go.
    with izmir.transaction() as tx:
        steps = tx.scalar("SELECT count(*) FROM call_flow_steps WHERE account = 'izmir'")
        step, below = tx.execute(
            "SELECT step_index, count(*) FROM originations WHERE account = 'izmir' "
            "GROUP BY step_index ORDER BY step_index LIMIT 1"
        ).fetchall()[0]
        tx.execute("DELETE FROM cdrs WHERE account = 'izmir' AND uuid = ?", [detail["uuid"]])
        tx.execute("DELETE FROM call_flow_steps WHERE account = 'izmir' AND step_index = ?", [step])
    assert steps > 1 and below > 0

    # Pending: every call but the rejected one (the detail's row went; the loaded call is
    # marked for a new fetch).
    pending = sorted(set(uuids) - {rejected})
    assert sorted(izmir.pending_uuids(DAY, DAY)) == pending
    assert izmir.day_counts(DAY, DAY) == {
        DAY: {"listed": 6, "loaded": 1, "rejected": 1, "pending": len(pending)}
    }
    assert izmir.pending_dates() == [DAY]
    progress = izmir.load_progress(T0 - timedelta(days=1))
    assert (progress.pending_calls, progress.pending_days) == (len(pending), (DAY,))
    # ankara: its two loads, nothing of izmir's rejects, marks or deletions.
    assert sorted(ankara.pending_uuids(DAY, DAY)) == sorted(set(uuids) - {loaded, detail["uuid"]})
    assert ankara.day_counts(DAY, DAY) == {
        DAY: {"listed": 6, "loaded": 2, "rejected": 0, "pending": 4}
    }
    assert izmir.day_counts(date(2015, 4, 17), date(2015, 4, 30)) == {}
    assert loaded in izmir.pending_uuids(DAY, DAY)  # marked, so pending though loaded

    counts = integrity_counts(izmir, lookback=timedelta(0))
    with izmir.transaction() as tx:
        listed = tx.execute("SELECT uuid, call_time FROM cdr_listing WHERE account = 'izmir'")
        times = dict(listed.fetchall())
    newest = max(times.values())
    older = {uuid for uuid, at in times.items() if at < newest}
    assert izmir.high_water_mark() == newest and len(older) == 4
    assert counts.orphan_flow_steps == steps - 1  # every step of the call, but the deleted
    assert counts.orphan_originations == below
    assert counts.listed_without_detail == len(older - {loaded, rejected})
    assert (counts.listed_calls, counts.rejected_calls) == (6, 1)
    assert counts.duplicate_keys == dict.fromkeys(counts.duplicate_keys, 0)
    other = integrity_counts(ankara, lookback=timedelta(0))
    assert (other.orphan_flow_steps, other.orphan_originations, other.rejected_calls) == (0, 0, 0)
    assert other.listed_without_detail == len(older - {loaded, detail["uuid"]})
