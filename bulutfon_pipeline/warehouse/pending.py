"""What is left to load: the listed calls still waiting for their detail, and where an
interrupted load stands."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

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

#: The same calls on DuckDB, read without a join. There each correlated subquery of
#: :data:`_PENDING` is a hash join, and a hash join takes 8-16 MB of DuckDB's memory
#: however few rows it holds (:func:`day_counts`' four took 33 MB). Accounts loading in
#: threads share one limit (64 MB then), and two such reads beside a load ran out of it
#: (``benchmarks/ANALYSIS.md``, session 37). So DuckDB groups what the account's tables
#: hold of each uuid: a FROM item ``l``, one row per uuid, with ``listed`` (1:
#: in ``cdr_listing``, whose key is ``(account, uuid)``, and within ``{where}``),
#: ``loaded``, ``rejected``, ``refetch`` (1 or 0) and the listing's ``call_date`` and
#: ``call_time``; ``{keys}`` narrows the ``cdrs`` rows to the listed ones. PostgreSQL keeps
#: :data:`_PENDING`: its indexes answer a listed call at a time. :func:`_calls_duckdb` gives
#: the parameters.
_CALLS_DUCKDB = """(
    SELECT uuid, max(call_date) AS call_date, max(call_time) AS call_time,
           max(listed) AS listed, max(loaded) AS loaded, max(rejected) AS rejected,
           max(refetch) AS refetch
    FROM (
        SELECT uuid, call_date, call_time, 1 AS listed, 0 AS loaded, 0 AS rejected,
               0 AS refetch
        FROM cdr_listing WHERE account = ? {where}
        UNION ALL SELECT uuid, NULL, NULL, 0, 1, 0, 0 FROM cdrs WHERE account = ? {keys}
        UNION ALL SELECT uuid, NULL, NULL, 0, 0, 1, 0 FROM load_rejects
            WHERE account = ? AND uuid IS NOT NULL
        UNION ALL SELECT uuid, NULL, NULL, 0, 0, 0, 1 FROM _cdr_refetch WHERE account = ?
    ) AS facts
    GROUP BY uuid
) AS l"""
#: A call of :data:`_CALLS_DUCKDB` that is pending, as :data:`_PENDING` defines it.
_PENDING_DUCKDB = "l.listed = 1 AND ((l.loaded = 0 AND l.rejected = 0) OR l.refetch = 1)"
_IN_RANGE = "AND call_date BETWEEN ? AND ?"


def _calls_duckdb(
    account: str, where: str = "", params: Sequence[Any] = ()
) -> tuple[str, list[Any]]:
    """:data:`_CALLS_DUCKDB` with the conditions ``where`` on the listing (taking
    ``params``), and the parameters of the whole. With ``where``, only the ``cdrs`` rows of
    the calls it lists are grouped (one small semi-join): grouping all of an account's
    calls for a day's range ran out of the 64 MB at a million calls."""
    keys, keys_params = "", []
    if where:
        keys = f"AND uuid IN (SELECT uuid FROM cdr_listing WHERE account = ? {where})"  # noqa: S608
        keys_params = [account, *params]
    sql = _CALLS_DUCKDB.format(where=where, keys=keys)
    return sql, [account, *params, account, *keys_params, account, account]


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
    if refetch:
        calls, params = f"cdr_listing AS l WHERE l.account = ? {_IN_RANGE}", [account, start, end]
    else:
        calls, params = _pending_calls(db, account, _IN_RANGE, [start, end])
    sql = f"SELECT l.uuid FROM {calls} ORDER BY l.call_time, l.uuid"  # noqa: S608
    return [uuid for (uuid,) in _rows(db, sql, params)]


def listed_count(db: Backend, start: date, end: date, *, account: str) -> int:
    """``account``'s listed calls with ``call_date`` in ``[start, end]``."""
    with db.transaction() as tx:
        sql = "SELECT count(*) FROM cdr_listing WHERE account = ? AND call_date BETWEEN ? AND ?"
        return int(tx.scalar(sql, [account, start, end]) or 0)


def day_counts(db: Backend, start: date, end: date, *, account: str) -> dict[date, dict[str, int]]:
    """Per local day of ``[start, end]`` that has listed calls of ``account``: how many
    are ``listed``, ``loaded`` (a ``cdrs`` row), ``rejected`` (a reject and no ``cdrs``
    row) and ``pending`` (as :func:`pending_uuids` counts them), in one query."""
    if db.is_server:
        sql, params = _DAY_COUNTS, [account, account, start, end]
    else:
        calls, params = _calls_duckdb(account, _IN_RANGE, [start, end])
        sql = f"""
            SELECT l.call_date, count(*), count(*) FILTER (WHERE l.loaded = 1),
                   count(*) FILTER (WHERE l.loaded = 0 AND l.rejected = 1),
                   count(*) FILTER (WHERE {_PENDING_DUCKDB})
            FROM {calls} WHERE l.listed = 1
            GROUP BY l.call_date ORDER BY l.call_date"""  # noqa: S608 - constant predicates
    return {
        day: {"listed": int(n), "loaded": int(ok), "rejected": int(bad), "pending": int(todo)}
        for day, n, ok, bad, todo in _rows(db, sql, params)
    }


#: :func:`day_counts` on PostgreSQL.
_DAY_COUNTS = f"""
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
            """  # noqa: S608 - a constant predicate


def _rows(db: Backend, sql: str, params: Sequence[Any]) -> list[Any]:
    """The rows of one query, in a transaction of its own."""
    with db.transaction() as tx:
        return list(tx.execute(sql, list(params)).fetchall())


def pending_dates(db: Backend, *, account: str) -> list[date]:
    """Distinct local call dates that have pending uuids of ``account``, ascending."""
    calls, params = _pending_calls(db, account)
    sql = f"SELECT DISTINCT l.call_date FROM {calls} ORDER BY l.call_date"  # noqa: S608
    return [day for (day,) in _rows(db, sql, params)]


def _pending_calls(
    db: Backend, account: str, where: str = "", params: Sequence[Any] = ()
) -> tuple[str, list[Any]]:
    """A FROM item ``l`` and a WHERE clause: ``account``'s pending calls (``where``: more
    conditions on the listing, taking ``params``), on either backend; and the parameters
    of the whole."""
    if db.is_server:
        return (
            f"cdr_listing AS l WHERE l.account = ? {where} AND {_PENDING}",
            [account, *params, account],
        )
    calls, all_params = _calls_duckdb(account, where, params)
    return f"{calls} WHERE {_PENDING_DUCKDB}", all_params


def load_progress(db: Backend, since: datetime, *, accounts: Sequence[str]) -> LoadProgress:
    """What the loads of ``accounts`` committed since ``since`` and what they still have
    pending, together, read in one transaction (``since``: an aware instant, e.g. when an
    interrupted sync started)."""
    loaded, pending, days = 0, 0, set[date]()
    with db.transaction() as tx:
        for account in accounts:
            loaded += int(tx.scalar(
                "SELECT count(*) FROM cdrs WHERE account = ? AND loaded_at >= ?",
                [account, utc(since, "since")],
            ))  # fmt: skip
            calls, params = _pending_calls(db, account)
            rows = tx.execute(
                f"SELECT l.call_date, count(*) FROM {calls} "  # noqa: S608
                "GROUP BY l.call_date ORDER BY l.call_date",
                params,
            ).fetchall()
            pending += sum(int(n) for _, n in rows)
            days.update(day for day, _ in rows)
    return LoadProgress(
        loaded_since=loaded, pending_calls=pending, pending_days=tuple(sorted(days))
    )
