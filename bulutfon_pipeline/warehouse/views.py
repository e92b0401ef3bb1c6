"""Reporting marts: SQL views over the warehouse tables.

Every mart starts with ``account`` and groups (and joins) by it: one warehouse holds many
PBX accounts' rows (issue 14), and a mart's row is always one account's.

Each view is one :class:`ViewDefinition` in :data:`VIEWS`; add a mart by appending one
(the backend issues each one's :meth:`ViewDefinition.ddl`, ``CREATE OR REPLACE VIEW``, in
list order, so a view may build on an earlier one).

The marts are written once, in SQL that DuckDB and PostgreSQL both run with the same
rows and the same column types (``bulutfon_pipeline_tests/warehouse/test_marts_postgres.py``
compares them). What that takes, where the two differ:

* ``/`` divides integers as integers in PostgreSQL (``3 / 4 = 0``) and as floats in
  DuckDB: ratios cast their numerator to ``DOUBLE PRECISION`` first.
* ``avg`` of an integer is ``numeric`` in PostgreSQL and ``DOUBLE`` in DuckDB: averages
  cast their argument to ``DOUBLE PRECISION`` (exact for whole seconds: the sum of
  integers stays an integer in a double, so both divide the same two numbers).
* ``extract`` returns ``numeric`` in PostgreSQL and ``BIGINT`` in DuckDB: cast to
  ``BIGINT``.
* Percentiles use the standard ``percentile_cont(q) WITHIN GROUP (ORDER BY x)`` (DuckDB's
  ``quantile_cont`` is DuckDB's only), over a ``DOUBLE PRECISION`` argument.
* No ``GROUP BY ALL``, ``isodow()``, ``hour()``, ``dayname()`` (DuckDB's; weekday names
  are spelt out, so they are English whatever the server's locale) or ``date_diff``
  (DuckDB's; a difference in whole seconds is the difference of the floored epochs,
  which is what DuckDB's ``date_diff('second', ...)`` counts).
* ``timezone('Europe/Istanbul', t)`` of a ``timestamptz`` is the local wall-clock
  ``timestamp`` in both, whatever the session's time zone.
* No correlated subqueries: DuckDB turns them into joins, PostgreSQL runs them once per
  outer row (``missed_calls`` took 20 s for 9,000 calls that way); join instead.
* No percent sign anywhere in the SQL, comments included: psycopg reads one as a
  placeholder when the statement is sent with parameters (test ``position()`` instead
  of ``LIKE``).

* A ratio whose denominator may be 0 divides by ``nullif(d, 0)``: PostgreSQL raises on a
  division by zero, DuckDB gives NULL.
* Text sorts by bytes in DuckDB, by the database's collation in PostgreSQL: a sorted
  ``string_agg`` of names adds ``COLLATE "C"`` on PostgreSQL (``directory_sql.py``).

A view whose meaning cannot be written in common SQL may carry a PostgreSQL variant
(``postgres_select``); :meth:`ViewDefinition.ddl` picks the one for its dialect (the
directory's marts: their SQL with ``COLLATE "C"``). Changed columns need nothing more:
``schema_setup.ensure_views`` drops and recreates every mart when their SQL changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bulutfon_pipeline.warehouse.directory_sql import (
    COLLATE,
    POSTGRES_BYTE_ORDER,
    in_span,
    names_over_time,
    with_working_hours,
)

__all__ = ["DIALECTS", "VIEWS", "Dialect", "ViewDefinition", "view_names"]

#: The SQL dialects a view is written for (SQLAlchemy's dialect names).
Dialect = Literal["duckdb", "postgresql"]
DIALECTS: tuple[Dialect, ...] = ("duckdb", "postgresql")


@dataclass(frozen=True)
class ViewDefinition:
    """A named view; ``select`` is its defining query (no ``CREATE`` clause), in SQL that
    both DuckDB and PostgreSQL run, unless ``postgres_select`` gives PostgreSQL its own."""

    name: str
    description: str
    select: str
    postgres_select: str | None = None

    def select_for(self, dialect: Dialect = "duckdb") -> str:
        """The defining query for ``dialect``.

        Raises:
            ValueError: an unknown dialect.
        """
        if dialect == "duckdb":
            return self.select.strip()
        if dialect == "postgresql":
            return (self.postgres_select or self.select).strip()
        raise ValueError(f"unknown SQL dialect {dialect!r}; known: {', '.join(DIALECTS)}")

    def ddl(self, dialect: Dialect = "duckdb") -> str:
        """The ``CREATE OR REPLACE VIEW`` statement for ``dialect`` (DuckDB by default).

        Raises:
            ValueError: an unknown dialect.
        """
        return f"CREATE OR REPLACE VIEW {self.name} AS\n{self.select_for(dialect)}"


def _with_names(name: str, description: str, select: str) -> ViewDefinition:
    """A view whose ``select`` carries ``directory_sql.COLLATE`` (``COLLATE "C"`` there on
    PostgreSQL, nothing on DuckDB), so that its name lists sort by bytes on both."""
    pg_select = select.replace(COLLATE, POSTGRES_BYTE_ORDER)
    return ViewDefinition(name, description, select.replace(COLLATE, ""), pg_select)


DAILY_CALL_SUMMARY = ViewDefinition(
    name="daily_call_summary",
    description=(
        "Calls per account, local call_date and direction: volume, answered/missed, answer rate, "
        "ring time (all calls) and talk time (answered calls) averages and p90."
    ),
    select="""
SELECT
    account,
    call_date,
    direction,
    count(*) AS calls,
    count(*) FILTER (WHERE answered) AS answered,
    count(*) FILTER (WHERE NOT answered) AS missed,
    CAST(count(*) FILTER (WHERE answered) AS DOUBLE PRECISION) / count(*) AS answer_rate,
    avg(CAST(ring_seconds AS DOUBLE PRECISION)) AS avg_ring_seconds,
    percentile_cont(0.9) WITHIN GROUP (ORDER BY CAST(ring_seconds AS DOUBLE PRECISION))
        AS p90_ring_seconds,
    avg(CAST(talk_seconds AS DOUBLE PRECISION)) FILTER (WHERE answered) AS avg_talk_seconds,
    percentile_cont(0.9) WITHIN GROUP (ORDER BY CAST(talk_seconds AS DOUBLE PRECISION))
        FILTER (WHERE answered) AS p90_talk_seconds
FROM cdrs
GROUP BY account, call_date, direction
""",
)

RING_GROUP_PERFORMANCE = _with_names(
    name="ring_group_performance",
    description=(
        "Per account, ring group (the callee of the step that rang it) and destination phone, "
        "with the group's and the phone's names at the call's time: rings, answers, lost "
        "races and the share of rings answered."
    ),
    select=f"""
WITH {names_over_time("group_names", "ring_groups", "name")},
{names_over_time("phone_names", "extensions", "caller_name")}
SELECT
    o.account,
    coalesce(s.redirection_target, s.callee) AS ring_group,
    g.name AS ring_group_name,
    o.destination,
    p.name AS destination_name,
    count(*) AS rings,
    count(*) FILTER (WHERE o.outcome = 'ANSWERED') AS answers,
    count(*) FILTER (WHERE o.outcome = 'LOSE_RACE') AS lost_races,
    CAST(count(*) FILTER (WHERE o.outcome = 'ANSWERED') AS DOUBLE PRECISION) / count(*)
        AS answer_share
FROM originations AS o
JOIN call_flow_steps AS s
    ON s.account = o.account AND s.cdr_uuid = o.cdr_uuid AND s.step_index = o.step_index
LEFT JOIN cdrs AS c ON c.account = o.account AND c.uuid = o.cdr_uuid
LEFT JOIN group_names AS g
    ON g.account = o.account AND g.number = coalesce(s.redirection_target, s.callee)
    AND {in_span("g", "c.call_time")}
LEFT JOIN phone_names AS p
    ON p.account = o.account AND p.number = o.destination AND {in_span("p", "c.call_time")}
GROUP BY o.account, coalesce(s.redirection_target, s.callee), g.name, o.destination, p.name
""",  # noqa: S608 (constant SQL: no value comes from outside)
)

HOURLY_CALL_LOAD = ViewDefinition(
    name="hourly_call_load",
    description=(
        "Calls per account, local (Europe/Istanbul) weekday and hour of day: all calls, incoming, "
        "outgoing, answered, and incoming calls nobody answered."
    ),
    select="""
WITH local_calls AS (
    SELECT
        account,
        CAST(extract(isodow FROM timezone('Europe/Istanbul', call_time)) AS BIGINT)
            AS weekday,
        CAST(extract(hour FROM timezone('Europe/Istanbul', call_time)) AS BIGINT) AS hour,
        direction,
        answered
    FROM cdrs
)
SELECT
    account,
    weekday,
    CAST(CASE weekday
        WHEN 1 THEN 'Monday' WHEN 2 THEN 'Tuesday' WHEN 3 THEN 'Wednesday'
        WHEN 4 THEN 'Thursday' WHEN 5 THEN 'Friday' WHEN 6 THEN 'Saturday'
        WHEN 7 THEN 'Sunday'
    END AS VARCHAR) AS weekday_name,
    hour,
    count(*) AS calls,
    count(*) FILTER (WHERE direction = 'IN') AS incoming,
    count(*) FILTER (WHERE direction = 'OUT') AS outgoing,
    count(*) FILTER (WHERE answered) AS answered,
    count(*) FILTER (WHERE direction = 'IN' AND NOT answered) AS missed_incoming
FROM local_calls
GROUP BY account, weekday, hour
""",
)

EXTENSION_ACTIVITY = _with_names(
    name="extension_activity",
    description=(
        "Per account, extension and its name at the call's time: how often it rang (a ring "
        "group's origination, or a flow step connecting to the extension), the calls it "
        "answered and their talk time, missed rings (nobody picked up), lost races, and its "
        "outgoing calls (v1 only)."
    ),
    select=f"""
WITH activity AS (
    -- rings: a ring group's originations, and flow steps connecting to an extension
    SELECT o.account, o.destination AS extension, c.call_time AS moment, o.cdr_uuid,
           o.answer_time, o.hangup_time, o.outcome = 'ANSWERED' AS answered,
           o.outcome = 'LOSE_RACE' AS lost_race, false AS outgoing, 0 AS outgoing_talk
    FROM originations AS o
    LEFT JOIN cdrs AS c ON c.account = o.account AND c.uuid = o.cdr_uuid
    WHERE o.destination IS NOT NULL
    UNION ALL
    SELECT s.account, s.callee, c.call_time, s.cdr_uuid, s.answer_time, s.hangup_time,
           s.answer_time IS NOT NULL, false, false, 0
    FROM call_flow_steps AS s
    LEFT JOIN cdrs AS c ON c.account = s.account AND c.uuid = s.cdr_uuid
    WHERE s.redirection_kind = 'CONNECTING_TO_EXTENSION' AND s.callee IS NOT NULL
    UNION ALL
    -- the extension's outgoing calls
    SELECT account, extension, call_time, uuid, NULL, NULL, false, false, true, talk_seconds
    FROM cdrs
    WHERE direction = 'OUT' AND extension IS NOT NULL
),
{names_over_time("names", "extensions", "caller_name")}
SELECT
    a.account,
    a.extension,
    n.name AS extension_name,
    count(*) FILTER (WHERE NOT a.outgoing) AS rings,
    count(DISTINCT a.cdr_uuid) FILTER (WHERE a.answered) AS answered_calls,
    -- whole seconds from answer to hang-up: the second boundaries crossed
    coalesce(CAST(sum(floor(extract(epoch FROM a.hangup_time))
                      - floor(extract(epoch FROM a.answer_time))) FILTER (WHERE a.answered)
                  AS BIGINT), 0) AS talk_seconds,
    count(*) FILTER (WHERE NOT a.outgoing AND NOT a.answered AND NOT a.lost_race)
        AS missed_rings,
    count(*) FILTER (WHERE a.lost_race) AS lost_races,
    count(*) FILTER (WHERE a.outgoing) AS outgoing_calls,
    coalesce(CAST(sum(a.outgoing_talk) FILTER (WHERE a.outgoing) AS BIGINT), 0)
        AS outgoing_talk_seconds
FROM activity AS a
LEFT JOIN names AS n
    ON n.account = a.account AND n.number = a.extension AND {in_span("n", "a.moment")}
GROUP BY a.account, a.extension, n.name
""",  # noqa: S608 (constant SQL: no value comes from outside)
)

# The columns of missed_calls' rows, which identify one (directory_sql.with_working_hours).
_MISSED = (
    "account", "uuid", "call_time", "call_date", "local_call_time", "caller", "callee",
    "ring_seconds", "hangup_cause_code", "caller_masked", "caller_missed_calls",
)  # fmt: skip

MISSED_CALLS = _with_names(
    name="missed_calls",
    description=(
        "Incoming calls nobody answered, one row each, with the caller for call-backs: "
        "how often that caller was missed, when the caller was next reached (a later "
        "answered call from or to the number, in the same account), whether a "
        "call-back is still due, and whether the call came within the called number's "
        "working hours (the DID whose last 10 digits are the callee's; NULL when the "
        "number is unknown, masked or does not follow working hours)."
    ),
    select=f"""
WITH missed AS (
    SELECT
        m.account,
        m.uuid,
        m.call_time,
        m.call_date,
        timezone('Europe/Istanbul', m.call_time) AS local_call_time,
        m.caller,
        m.callee,
        m.ring_seconds,
        m.hangup_cause_code,
        -- contains an x (no LIKE pattern: a percent sign is a placeholder to psycopg)
        coalesce(position('x' IN m.caller) > 0, true) AS caller_masked,
        count(*) OVER (PARTITION BY m.account, m.caller) AS caller_missed_calls
    FROM cdrs AS m
    WHERE m.direction = 'IN' AND NOT m.answered
),
{with_working_hours("missed_hours", "missed", _MISSED)},
-- answered calls with a number: calls from it (IN) and calls to it (OUT)
contacts AS (
    SELECT account, caller AS number, call_time
    FROM cdrs WHERE answered AND direction = 'IN'
    UNION ALL
    SELECT account, callee, call_time FROM cdrs WHERE answered AND direction = 'OUT'
),
-- the first later contact per (caller, time): an equi-join on the number, because
-- PostgreSQL runs a correlated subquery once per missed call (DuckDB decorrelates it)
reached AS (
    SELECT m.account, m.caller, m.call_time, min(k.call_time) AS reached_at
    FROM (SELECT DISTINCT account, caller, call_time FROM missed WHERE NOT caller_masked) AS m
    JOIN contacts AS k
        ON k.account = m.account AND k.number = m.caller AND k.call_time > m.call_time
    GROUP BY m.account, m.caller, m.call_time
)
SELECT
    {", ".join(f"m.{column}" for column in _MISSED)},
    r.reached_at,
    NOT m.caller_masked AND r.reached_at IS NULL AS needs_call_back,
    m.in_working_hours
FROM missed_hours AS m
LEFT JOIN reached AS r
    ON r.account = m.account AND r.caller = m.caller AND r.call_time = m.call_time
""",  # noqa: S608 (constant SQL: no value comes from outside)
)

_INCOMING = ("account", "uuid", "call_time", "call_date", "callee", "answered")

WORKING_HOURS_SERVICE_LEVEL = _with_names(
    name="working_hours_service_level",
    description=(
        "Per account, called number (the DID of the directory, matched on the last 10 "
        "digits) and local call_date: incoming calls, and those within and outside the "
        "number's working hours with how many of each were answered and the answer rate "
        "of each (NULL without calls)."
    ),
    select=f"""
WITH incoming AS (
    SELECT account, uuid, call_time, call_date, callee, answered
    FROM cdrs
    WHERE direction = 'IN'
),
{with_working_hours("incoming_hours", "incoming", _INCOMING)}
SELECT
    account,
    did_number AS number,
    call_date,
    count(*) AS calls,
    count(*) FILTER (WHERE in_working_hours) AS calls_in_hours,
    count(*) FILTER (WHERE in_working_hours AND answered) AS answered_in_hours,
    CAST(count(*) FILTER (WHERE in_working_hours AND answered) AS DOUBLE PRECISION)
        / nullif(count(*) FILTER (WHERE in_working_hours), 0) AS answer_rate_in_hours,
    count(*) FILTER (WHERE NOT in_working_hours) AS calls_out_of_hours,
    count(*) FILTER (WHERE NOT in_working_hours AND answered) AS answered_out_of_hours,
    CAST(count(*) FILTER (WHERE NOT in_working_hours AND answered) AS DOUBLE PRECISION)
        / nullif(count(*) FILTER (WHERE NOT in_working_hours), 0) AS answer_rate_out_of_hours
FROM incoming_hours
WHERE did_number IS NOT NULL
GROUP BY account, did_number, call_date
""",  # noqa: S608 (constant SQL: no value comes from outside)
)

#: Every mart, in creation order.
VIEWS: list[ViewDefinition] = [
    DAILY_CALL_SUMMARY,
    RING_GROUP_PERFORMANCE,
    HOURLY_CALL_LOAD,
    EXTENSION_ACTIVITY,
    MISSED_CALLS,
    WORKING_HOURS_SERVICE_LEVEL,
]


def view_names() -> list[str]:
    """Names of all views, in creation order."""
    return [view.name for view in VIEWS]
