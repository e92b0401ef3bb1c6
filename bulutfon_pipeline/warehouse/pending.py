"""What is left to load: the listed calls still waiting for their detail, and where an
interrupted load stands."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from bulutfon_pipeline.warehouse._common import utc
from bulutfon_pipeline.warehouse.backend import Backend

__all__ = [
    "LoadProgress",
    "day_counts",
    "listed_count",
    "load_progress",
    "pending_dates",
    "pending_uuids",
]


@dataclass(frozen=True)
class LoadProgress:
    """Where the loads stand: what is committed since an instant and what is still to do.

    Attributes:
        loaded_since: ``cdrs`` rows written by transactions committed since the instant.
        pending_calls: listed calls still to load (as :func:`pending_uuids` counts them).
        pending_days: the distinct local days of those calls, ascending.
    """

    loaded_since: int
    pending_calls: int
    pending_days: tuple[date, ...]


#: A listed call ``l`` of the account (the one ``?``) is pending: neither a ``cdrs`` row
#: nor a reject of that account, or marked for a new fetch in ``_cdr_refetch`` (its
#: listing changed since it was loaded). The one definition for the uuids to fetch, the
#: days to load and an interrupted run's summary; the query also keeps ``l.account = ?``.
_PENDING = """(
    (NOT EXISTS (SELECT 1 FROM cdrs AS c WHERE c.account = l.account AND c.uuid = l.uuid)
     AND NOT EXISTS (
         SELECT 1 FROM load_rejects AS r WHERE r.account = l.account AND r.uuid = l.uuid))
    OR l.uuid IN (SELECT uuid FROM _cdr_refetch WHERE account = ?))"""


def pending_uuids(
    db: Backend, start: date, end: date, *, refetch: bool = False, account: str
) -> list[str]:
    """``account``'s listed uuids with ``call_date`` in ``[start, end]`` that still need
    their detail.

    Pending means: no ``cdrs`` row and no ``load_rejects`` row, or marked in
    ``_cdr_refetch`` (its listing changed since it was loaded).

    Args:
        start: first local call date (inclusive).
        end: last local call date (inclusive).
        refetch: every listed uuid of the range, loaded or rejected or not.

    Returns:
        uuids, oldest call first.
    """
    pending, params = ("", []) if refetch else (f"AND {_PENDING}", [account])
    with db.transaction() as tx:
        rows = tx.execute(
            f"""
            SELECT l.uuid FROM cdr_listing AS l
            WHERE l.account = ? AND l.call_date BETWEEN ? AND ? {pending}
            ORDER BY l.call_time, l.uuid
            """,  # noqa: S608 - a constant predicate
            [account, start, end, *params],
        ).fetchall()
    return [uuid for (uuid,) in rows]


def listed_count(db: Backend, start: date, end: date, *, account: str) -> int:
    """``account``'s listed calls with ``call_date`` in ``[start, end]``."""
    with db.transaction() as tx:
        sql = "SELECT count(*) FROM cdr_listing WHERE account = ? AND call_date BETWEEN ? AND ?"
        return int(tx.scalar(sql, [account, start, end]) or 0)


def day_counts(db: Backend, start: date, end: date, *, account: str) -> dict[date, dict[str, int]]:
    """Per local day of ``[start, end]`` that has listed calls of ``account``: how many
    are ``listed``, ``loaded`` (a ``cdrs`` row), ``rejected`` (a reject and no ``cdrs``
    row) and ``pending`` (as :func:`pending_uuids` counts them), in one query."""
    with db.transaction() as tx:
        rows = tx.execute(
            f"""
            SELECT l.call_date, count(*),
                   count(*) FILTER (WHERE EXISTS (
                       SELECT 1 FROM cdrs AS c WHERE c.account = l.account AND c.uuid = l.uuid)),
                   count(*) FILTER (WHERE NOT EXISTS (
                       SELECT 1 FROM cdrs AS c WHERE c.account = l.account AND c.uuid = l.uuid)
                       AND EXISTS (SELECT 1 FROM load_rejects AS r
                                   WHERE r.account = l.account AND r.uuid = l.uuid)),
                   count(*) FILTER (WHERE {_PENDING})
            FROM cdr_listing AS l
            WHERE l.account = ? AND l.call_date BETWEEN ? AND ?
            GROUP BY l.call_date ORDER BY l.call_date
            """,  # noqa: S608 - a constant predicate
            [account, account, start, end],
        ).fetchall()
    return {
        day: {"listed": int(n), "loaded": int(ok), "rejected": int(bad), "pending": int(todo)}
        for day, n, ok, bad, todo in rows
    }


def pending_dates(db: Backend, *, account: str) -> list[date]:
    """Distinct local call dates that have pending uuids of ``account``, ascending."""
    with db.transaction() as tx:
        rows = tx.execute(
            "SELECT DISTINCT l.call_date FROM cdr_listing AS l "  # noqa: S608
            f"WHERE l.account = ? AND {_PENDING} ORDER BY l.call_date",
            [account, account],
        ).fetchall()
    return [day for (day,) in rows]


def load_progress(db: Backend, since: datetime, *, account: str) -> LoadProgress:
    """What ``account``'s loads committed since ``since`` and what it still has pending,
    read in one transaction (``since``: an aware instant, e.g. when an interrupted sync
    started)."""
    with db.transaction() as tx:
        loaded = tx.scalar(
            "SELECT count(*) FROM cdrs WHERE account = ? AND loaded_at >= ?",
            [account, utc(since, "since")],
        )
        rows = tx.execute(
            "SELECT l.call_date, count(*) FROM cdr_listing AS l "  # noqa: S608
            f"WHERE l.account = ? AND {_PENDING} GROUP BY l.call_date ORDER BY l.call_date",
            [account, account],
        ).fetchall()
    return LoadProgress(
        loaded_since=int(loaded),
        pending_calls=sum(int(n) for _, n in rows),
        pending_days=tuple(day for day, _ in rows),
    )
