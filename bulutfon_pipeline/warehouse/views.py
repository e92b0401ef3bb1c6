"""Reporting marts: SQL views over the warehouse tables.

Each view is one :class:`ViewDefinition` in :data:`VIEWS`; add a mart by appending one
(``create_views`` issues ``CREATE OR REPLACE VIEW`` for all, in list order, so a view may
build on an earlier one).
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

__all__ = ["VIEWS", "ViewDefinition", "create_views", "view_names"]


@dataclass(frozen=True)
class ViewDefinition:
    """A named view; ``select`` is its defining query (no ``CREATE`` clause)."""

    name: str
    description: str
    select: str

    def ddl(self) -> str:
        """The ``CREATE OR REPLACE VIEW`` statement."""
        return f"CREATE OR REPLACE VIEW {self.name} AS\n{self.select.strip()}"


DAILY_CALL_SUMMARY = ViewDefinition(
    name="daily_call_summary",
    description=(
        "Calls per local call_date and direction: volume, answered/missed, answer rate, "
        "ring time (all calls) and talk time (answered calls) averages and p90."
    ),
    select="""
SELECT
    call_date,
    direction,
    count(*) AS calls,
    count(*) FILTER (WHERE answered) AS answered,
    count(*) FILTER (WHERE NOT answered) AS missed,
    count(*) FILTER (WHERE answered) / count(*) AS answer_rate,
    avg(ring_seconds) AS avg_ring_seconds,
    quantile_cont(ring_seconds, 0.9) AS p90_ring_seconds,
    avg(talk_seconds) FILTER (WHERE answered) AS avg_talk_seconds,
    quantile_cont(talk_seconds, 0.9) FILTER (WHERE answered) AS p90_talk_seconds
FROM cdrs
GROUP BY call_date, direction
""",
)

RING_GROUP_PERFORMANCE = ViewDefinition(
    name="ring_group_performance",
    description=(
        "Per ring group (the callee of the step that rang it) and destination phone: "
        "rings, answers, lost races and the share of rings answered."
    ),
    select="""
SELECT
    coalesce(s.redirection_target, s.callee) AS ring_group,
    o.destination,
    count(*) AS rings,
    count(*) FILTER (WHERE o.outcome = 'ANSWERED') AS answers,
    count(*) FILTER (WHERE o.outcome = 'LOSE_RACE') AS lost_races,
    count(*) FILTER (WHERE o.outcome = 'ANSWERED') / count(*) AS answer_share
FROM originations AS o
JOIN call_flow_steps AS s
    ON s.cdr_uuid = o.cdr_uuid AND s.step_index = o.step_index
GROUP BY ALL
""",
)

#: Every mart, in creation order.
VIEWS: list[ViewDefinition] = [DAILY_CALL_SUMMARY, RING_GROUP_PERFORMANCE]


def view_names() -> list[str]:
    """Names of all views, in creation order."""
    return [view.name for view in VIEWS]


def create_views(con: duckdb.DuckDBPyConnection) -> None:
    """Create or replace every view of :data:`VIEWS` on ``con``."""
    for view in VIEWS:
        con.execute(view.ddl())
