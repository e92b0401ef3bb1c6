"""SQL of the marts that join the PBX's directory (issue 15): names and working hours.

The directory's tables keep one row per version of an entity (``schema.py``, "The PBX's
directory"); a fact joins the versions valid at its call's time (``cdrs.call_time``):
``valid_from <= call_time < valid_to`` (``valid_to`` NULL: still valid).

* **Names.** :func:`names_at` gives, per (account, number, instant), the names of the
  versions valid then. Two entities may share a number (an extension renumbered while
  another takes its old number, within the same second of a refresh): their names are
  joined, sorted, into one text (``'Ayşe / Mehmet'``), so a fact row is never counted
  twice. Sorted by bytes on both engines: DuckDB compares text byte by byte, PostgreSQL
  by the database's collation, so PostgreSQL's variant of these views adds ``COLLATE
  "C"`` (:data:`POSTGRES_BYTE_ORDER`).
* **Working hours.** :data:`CALL_HOURS` classifies each incoming call: the called number
  (``cdrs.callee``) matches a DID (``phone_numbers.number``) valid at the call's time on
  their last 10 digits (CDRs carry ``908508850000``, a DID list may say ``08508850000``
  or ``8508850000``). The call is *within working hours* when its local
  (Europe/Istanbul) wall-clock time falls on an ``open`` day of that DID's
  ``phone_number_hours`` version valid at the call's time, in ``[shift_start,
  shift_finish)`` (a missing start: from midnight; a missing finish: to midnight) and
  outside ``[lunch_break_start, lunch_break_finish)`` when both are set. No row for the
  day: closed. NULL when the number does not follow working hours (``working_hour`` not
  true); a call with no DID of the directory (a masked, missing or unknown callee) has
  no row. Several DIDs matching one call (the same number spelt twice): within hours
  when one of them says so.

No percent sign and no correlated subquery here either (``views.py``).
"""

from __future__ import annotations

__all__ = ["CALL_HOURS", "COLLATE", "POSTGRES_BYTE_ORDER", "names_at", "valid_at"]

#: The placeholder a view's SQL carries where a sorted name list needs byte order; see
#: :func:`names_at`. Replaced by nothing for DuckDB, :data:`POSTGRES_BYTE_ORDER` for
#: PostgreSQL.
COLLATE = "<collate>"
POSTGRES_BYTE_ORDER = ' COLLATE "C"'


def valid_at(alias: str, instant: str) -> str:
    """The condition that ``alias``'s directory version is valid at ``instant``."""
    return (
        f"{instant} >= {alias}.valid_from "
        f"AND ({alias}.valid_to IS NULL OR {instant} < {alias}.valid_to)"
    )


def names_at(cte: str, moments: str, table: str, name: str) -> str:
    """A CTE ``cte(account, number, moment, name)``: for each distinct row of ``moments``
    (a query with columns ``account``, ``number``, ``moment``), the ``name`` of every
    version of ``table`` with that ``number`` valid at ``moment``, sorted and joined by
    ``' / '``. Moments with no version have no row (join it with a LEFT JOIN)."""
    label = f"d.{name}{COLLATE}"
    return f"""{cte} AS (
    SELECT m.account, m.number, m.moment,
           CAST(string_agg(DISTINCT {label}, ' / ' ORDER BY {label}) AS VARCHAR) AS name
    FROM (SELECT DISTINCT account, number, moment FROM ({moments}) AS f) AS m
    JOIN {table} AS d
        ON d.account = m.account AND d.number = m.number AND {valid_at("d", "m.moment")}
    GROUP BY m.account, m.number, m.moment
)"""  # noqa: S608 (constant SQL: no value comes from outside)


#: CTEs ``incoming`` (every incoming call with its local wall-clock time) and
#: ``call_hours(account, uuid, number, in_working_hours)``: one row per incoming call to
#: a DID of the directory, ``number`` the DID as the directory spells it.
CALL_HOURS = f"""
incoming AS (
    SELECT account, uuid, call_time, call_date, callee, answered,
           timezone('Europe/Istanbul', call_time) AS local_time
    FROM cdrs
    WHERE direction = 'IN' AND callee IS NOT NULL AND position('x' IN callee) = 0
),
did_calls AS (
    SELECT
        i.account,
        i.uuid,
        p.number,
        CASE WHEN p.working_hour THEN coalesce(
            h.open
            AND CAST(i.local_time AS TIME) >= coalesce(h.shift_start, TIME '00:00:00')
            AND (h.shift_finish IS NULL OR CAST(i.local_time AS TIME) < h.shift_finish)
            AND NOT (h.lunch_break_start IS NOT NULL AND h.lunch_break_finish IS NOT NULL
                     AND CAST(i.local_time AS TIME) >= h.lunch_break_start
                     AND CAST(i.local_time AS TIME) < h.lunch_break_finish),
            false) END AS within
    FROM incoming AS i
    JOIN phone_numbers AS p
        ON p.account = i.account AND right(p.number, 10) = right(i.callee, 10)
        AND {valid_at("p", "i.call_time")}
    LEFT JOIN phone_number_hours AS h
        ON h.account = p.account AND h.did_id = p.did_id
        AND h.weekday = CAST(extract(isodow FROM i.local_time) AS INTEGER)
        AND {valid_at("h", "i.call_time")}
),
call_hours AS (
    SELECT account, uuid,
           CAST(string_agg(DISTINCT number{COLLATE}, ' / ' ORDER BY number{COLLATE})
               AS VARCHAR) AS number,
           bool_or(within) AS in_working_hours
    FROM did_calls
    GROUP BY account, uuid
)"""  # noqa: S608 (constant SQL)
