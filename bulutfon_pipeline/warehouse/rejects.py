"""``load_rejects``: records that could not be loaded, with the stage and the reason.

A uuid keeps one reject per stage; the stages are ``schema.REJECT_STAGES``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import pyarrow as pa

from bulutfon_pipeline.normalize import Reject
from bulutfon_pipeline.warehouse import schema
from bulutfon_pipeline.warehouse.backend import Backend, Transaction

__all__ = ["DETAIL_STAGES", "add_rejects", "delete_superseded", "write_rejects", "write_rejects_of"]

#: Stages whose rejects a successful detail load of the same uuid supersedes.
DETAIL_STAGES = ("detail", "normalize")


def add_rejects(db: Backend, rejects: Sequence[Reject], *, account: str) -> None:
    """Record ``account``'s rejects (any stage) in their own transaction. Idempotent."""
    with db.transaction() as tx:
        write_rejects(tx, rejects, account=account)


def write_rejects(tx: Transaction, rejects: Sequence[Reject], *, account: str) -> int:
    """Write ``account``'s rejects idempotently, in the caller's transaction.

    A uuid keeps one reject per stage: an identical one already stored is left as is
    (its ``rejected_at`` too), a different one replaces it. Rejects without a uuid are
    kept once per identical (stage, reason, payload).

    Returns:
        How many were given (after dedupe).

    Raises:
        ValueError: a reject's stage is not one of ``schema.REJECT_STAGES``.
    """
    return write_rejects_of(tx, {account: rejects})


def write_rejects_of(tx: Transaction, rejects: Mapping[str, Sequence[Reject]]) -> int:
    """:func:`write_rejects` for several accounts at once (account -> its rejects), in
    one statement of each kind; how many were given in all (after each one's dedupe)."""
    unique: dict[tuple[str, str | None, str, str | None, str | None], Reject] = {}
    for account, theirs in rejects.items():
        for reject in theirs:
            if reject.stage not in schema.REJECT_STAGES:
                raise ValueError(f"unknown reject stage {reject.stage!r}")
            key = (
                (account, reject.uuid, reject.stage, None, None)
                if reject.uuid is not None
                else (account, None, reject.stage, reject.reason, reject.payload)
            )
            unique[key] = reject
    if not unique:
        return 0
    batch = pa.table(
        {
            "account": pa.array([key[0] for key in unique], pa.string()),
            "uuid": pa.array([r.uuid for r in unique.values()], pa.string()),
            "stage": pa.array([r.stage for r in unique.values()], pa.string()),
            "reason": pa.array([r.reason for r in unique.values()], pa.string()),
            "payload": pa.array([r.payload for r in unique.values()], pa.string()),
        }
    )
    with tx.batches(reject_batch=batch):
        tx.execute(
            """
            DELETE FROM load_rejects AS r
            USING reject_batch AS b
            WHERE r.account = b.account AND r.uuid = b.uuid AND r.stage = b.stage
              AND (r.reason IS DISTINCT FROM b.reason OR r.payload IS DISTINCT FROM b.payload)
            """
        )
        tx.execute(
            """
            INSERT INTO load_rejects (account, uuid, stage, reason, payload, rejected_at)
            SELECT b.account, b.uuid, b.stage, b.reason, b.payload, ? FROM reject_batch AS b
            WHERE NOT EXISTS (
                SELECT 1 FROM load_rejects AS r
                WHERE r.account = b.account AND r.uuid IS NOT DISTINCT FROM b.uuid
                  AND r.stage = b.stage
                  AND r.reason = b.reason AND r.payload IS NOT DISTINCT FROM b.payload
            )
            """,
            [datetime.now(UTC)],
        )
    return len(unique)


def delete_superseded(
    tx: Transaction,
    uuids_sql: str,
    stages: Sequence[str],
    params: Sequence[object] = (),
    *,
    account: str,
) -> None:
    """Delete ``account``'s ``stages`` rejects of the calls whose uuids the query
    ``uuids_sql`` (over a registered batch, or ``backend.KEYS_SQL`` with its ``params``)
    returns: those calls have loaded since."""
    marks = ", ".join("?" for _ in stages)
    tx.execute(
        f"DELETE FROM load_rejects WHERE account = ? AND stage IN ({marks}) "  # noqa: S608
        f"AND uuid IN ({uuids_sql})",
        [account, *stages, *params],
    )
