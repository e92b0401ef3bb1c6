"""SQL of the marts that join the PBX's directory (issue 15): names and working hours.

The directory's tables keep one row per version of an entity (``schema.py``, "The PBX's
directory"); a fact joins the versions valid at its call's time (``cdrs.call_time``):
``valid_from <= call_time < valid_to`` (``valid_to`` NULL: still valid).

* **Names.** :func:`names_over_time` gives each number's names over time; a fact joins
  the span its call's time falls in (:func:`in_span`). Two entities may share a number
  (an extension renumbered while another takes its old number, within the same second of
  a refresh): their names are joined, sorted, into one text (``'Ayşe / Mehmet'``), so a
  fact row is never counted twice. Sorted by bytes on both engines: DuckDB compares text
  byte by byte, PostgreSQL by the database's collation, so PostgreSQL's variant of these
  views adds ``COLLATE "C"`` (:data:`POSTGRES_BYTE_ORDER`).
* **Working hours.** :func:`with_working_hours` classifies each call: the called number
  (``cdrs.callee``) matches a DID (``phone_numbers.number``) valid at the call's time on
  their last 10 digits (CDRs carry ``908508850000``, a DID list may say ``08508850000``
  or ``8508850000``). The call is *within working hours* when its local
  (Europe/Istanbul) wall-clock time falls on an ``open`` day of that DID's
  ``phone_number_hours`` version valid at the call's time, in ``[shift_start,
  shift_finish)`` (a missing start: from midnight; a missing finish: to midnight) and
  outside ``[lunch_break_start, lunch_break_finish)`` when both are set. No row for the
  day: closed. NULL when the number does not follow working hours (``working_hour`` not
  true) and when the call has no DID of the directory (a masked, missing or unknown
  callee, or a DID that had left the directory by then). Several DIDs matching one call
  (the same number spelt twice): within hours when one of them says so.

No percent sign and no correlated subquery here either (``views.py``).
"""

from __future__ import annotations

__all__ = [
    "COLLATE",
    "POSTGRES_BYTE_ORDER",
    "in_span",
    "names_over_time",
    "valid_at",
    "with_working_hours",
]

#: The placeholder a view's SQL carries where a sorted name list needs byte order; see
#: :func:`names_over_time`. Replaced by nothing for DuckDB, :data:`POSTGRES_BYTE_ORDER` for
#: PostgreSQL.
COLLATE = "<collate>"
POSTGRES_BYTE_ORDER = ' COLLATE "C"'


def valid_at(alias: str, instant: str) -> str:
    """The condition that ``alias``'s directory version is valid at ``instant``."""
    return (
        f"{instant} >= {alias}.valid_from "
        f"AND ({alias}.valid_to IS NULL OR {instant} < {alias}.valid_to)"
    )


def _columns(alias: str, columns: tuple[str, ...]) -> str:
    return ", ".join(f"{alias}.{column}" for column in columns)


def in_span(alias: str, instant: str) -> str:
    """The condition that ``instant`` falls in ``alias``'s span of :func:`names_over_time`."""
    return (
        f"{instant} >= {alias}.span_from "
        f"AND ({alias}.span_to IS NULL OR {instant} < {alias}.span_to)"
    )


def names_over_time(cte: str, table: str, name: str) -> str:
    """CTEs ending in ``cte(account, number, span_from, span_to, name)``: each number of
    ``table`` cut into the spans between its versions' bounds (``span_to`` NULL: still
    open), with the ``name`` of every version valid over the span, distinct, sorted and
    joined by ``' / '``. Spans with no version valid have no row.

    A fact joins the one span its call's time falls in (:func:`in_span`), so a fact row is
    never repeated, whatever versions overlap. The names are computed once per span, not
    per fact: joined back to the facts by key, an aggregate per fact ran as a nested loop
    on PostgreSQL (22 s for 3,000 rings); materialized, a nested loop over it rescans a
    small stored table at worst.
    """
    return f"""{cte}_bounds AS (
    SELECT account, number, valid_from AS bound FROM {table}
    UNION
    SELECT account, number, valid_to FROM {table} WHERE valid_to IS NOT NULL
),
{cte}_spans AS (
    SELECT account, number, bound AS span_from,
           lead(bound) OVER (PARTITION BY account, number ORDER BY bound) AS span_to
    FROM {cte}_bounds
),
{cte} AS MATERIALIZED (
    SELECT v.account, v.number, v.span_from, v.span_to,
           CAST(string_agg(v.name, ' / ' ORDER BY v.name{COLLATE}) AS VARCHAR) AS name
    FROM (
        SELECT DISTINCT s.account, s.number, s.span_from, s.span_to, d.{name} AS name
        FROM {cte}_spans AS s
        JOIN {table} AS d
            ON d.account = s.account AND d.number = s.number AND d.valid_from <= s.span_from
            AND (d.valid_to IS NULL OR s.span_to <= d.valid_to)
    ) AS v
    GROUP BY v.account, v.number, v.span_from, v.span_to
)"""  # noqa: S608 (constant SQL: no value comes from outside)


def with_working_hours(cte: str, source: str, columns: tuple[str, ...]) -> str:
    """CTEs ending in ``cte``: the rows of ``source`` (a CTE of calls whose ``columns``
    include ``account``, ``call_time`` and ``callee`` and identify a row) with
    ``did_number``, the DID (as the directory spells it) the callee matched, and
    ``in_working_hours`` (module docstring); both NULL when no DID matched. Aggregated over
    the calls' own columns: several DIDs may match one call."""
    cols_f, cols_v = _columns("f", columns), _columns("v", columns)
    local = "CAST(timezone('Europe/Istanbul', f.call_time) AS TIME)"
    return f"""{cte}_dids AS (
    SELECT {cols_f}, p.number AS did_number,
           bool_or(CASE WHEN p.working_hour THEN coalesce(
               h.open
               AND {local} >= coalesce(h.shift_start, TIME '00:00:00')
               AND (h.shift_finish IS NULL OR {local} < h.shift_finish)
               AND NOT (h.lunch_break_start IS NOT NULL AND h.lunch_break_finish IS NOT NULL
                        AND {local} >= h.lunch_break_start
                        AND {local} < h.lunch_break_finish),
               false) END) AS within
    FROM {source} AS f
    LEFT JOIN phone_numbers AS p
        ON p.account = f.account AND position('x' IN f.callee) = 0
        AND right(p.number, 10) = right(f.callee, 10) AND {valid_at("p", "f.call_time")}
    LEFT JOIN phone_number_hours AS h
        ON h.account = p.account AND h.did_id = p.did_id
        AND h.weekday = CAST(extract(isodow FROM timezone('Europe/Istanbul', f.call_time))
                             AS INTEGER)
        AND {valid_at("h", "f.call_time")}
    GROUP BY {cols_f}, p.number
),
{cte} AS (
    SELECT {cols_v},
           CAST(string_agg(v.did_number, ' / ' ORDER BY v.did_number{COLLATE}) AS VARCHAR)
               AS did_number,
           bool_or(v.within) AS in_working_hours
    FROM {cte}_dids AS v
    GROUP BY {cols_v}
)"""  # noqa: S608 (constant SQL: no value comes from outside)
