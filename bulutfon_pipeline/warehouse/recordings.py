"""``call_recordings``: which calls have a recording to fetch, what is stored, the purge.

The files themselves live under BULUTFON_DATA_DIR; ``bulutfon_pipeline.recordings`` fetches
and deletes them, and this module keeps their rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

import pyarrow as pa

from bulutfon_pipeline.normalize import Reject
from bulutfon_pipeline.warehouse import schema
from bulutfon_pipeline.warehouse._common import utc
from bulutfon_pipeline.warehouse.backend import Backend
from bulutfon_pipeline.warehouse.rejects import delete_superseded, write_rejects

__all__ = [
    "RecordingCandidate",
    "RecordingRow",
    "delete_recordings_before",
    "recording_candidates",
    "save_recordings",
]


@dataclass(frozen=True)
class RecordingRow:
    """One ``call_recordings`` row: a recording stored under BULUTFON_DATA_DIR.

    Attributes:
        path: the file, relative to BULUTFON_DATA_DIR (``recordings/YYYY/MM/DD/<uuid>.wav``).
    """

    cdr_uuid: str
    path: str
    content_type: str | None
    bytes: int
    sha256: str
    downloaded_at: datetime


@dataclass(frozen=True)
class RecordingCandidate:
    """A call of :meth:`Warehouse.recording_candidates`, with its stored row if any."""

    uuid: str
    call_date: date
    call_record: str | None
    has_recording: bool
    stored: RecordingRow | None


def recording_candidates(
    db: Backend, start: date, end: date, *, refetch: bool = False, account: str
) -> list[RecordingCandidate]:
    """``account``'s calls of local days ``start..end`` that have, or had, a recording.

    That is ``has_recording`` or ``call_record = 'REMOVED'``, each with its
    ``call_recordings`` row when one exists. Calls with a ``recording`` reject are left
    out unless ``refetch``.

    Returns:
        Candidates, oldest call first.
    """
    rejected = (
        ""
        if refetch
        else (
            "AND NOT EXISTS (SELECT 1 FROM load_rejects AS x "
            "WHERE x.account = c.account AND x.uuid = c.uuid AND x.stage = 'recording')"
        )
    )
    with db.transaction() as tx:
        rows = tx.execute(
            f"""
            SELECT c.uuid, c.call_date, c.call_record, c.has_recording,
                   r.path, r.content_type, r.bytes, r.sha256, r.downloaded_at
            FROM cdrs AS c
            LEFT JOIN call_recordings AS r ON r.account = c.account AND r.cdr_uuid = c.uuid
            WHERE c.account = ? AND c.call_date BETWEEN ? AND ?
              AND (c.has_recording OR c.call_record = 'REMOVED')
              {rejected}
            ORDER BY c.call_time, c.uuid
            """,  # noqa: S608 - a constant predicate
            [account, start, end],
        ).fetchall()
    return [
        RecordingCandidate(
            uuid=uuid,
            call_date=call_date,
            call_record=call_record,
            has_recording=bool(has_recording),
            stored=None
            if path is None
            else RecordingRow(uuid, path, content_type, int(size), sha, downloaded_at),
        )
        for (uuid, call_date, call_record, has_recording, path, content_type, size, sha,
             downloaded_at) in rows
    ]  # fmt: skip


def save_recordings(
    db: Backend, rows: Sequence[RecordingRow], rejects: Sequence[Reject], *, account: str
) -> None:
    """Upsert ``account``'s ``call_recordings`` rows and write its ``recording`` rejects,
    in one transaction.

    A saved recording drops an earlier ``recording`` reject of the same call.

    Raises:
        WarehouseError: the write failed and was rolled back.
    """
    batch = pa.table(
        {
            "account": pa.array([account] * len(rows), pa.string()),
            "cdr_uuid": pa.array([r.cdr_uuid for r in rows], pa.string()),
            "path": pa.array([r.path for r in rows], pa.string()),
            "content_type": pa.array([r.content_type for r in rows], pa.string()),
            "bytes": pa.array([r.bytes for r in rows], pa.int64()),
            "sha256": pa.array([r.sha256 for r in rows], pa.string()),
            "downloaded_at": pa.array(
                [utc(r.downloaded_at, "downloaded_at") for r in rows],
                pa.timestamp("us", "UTC"),
            ),
        }
    )
    with db.transaction() as tx:
        if rows:
            with tx.batches(recording_batch=batch):
                tx.upsert(schema.call_recordings, "recording_batch")
                delete_superseded(
                    tx, "SELECT cdr_uuid FROM recording_batch", ("recording",), account=account
                )
        write_rejects(tx, rejects, account=account)


def delete_recordings_before(db: Backend, before: date, *, account: str) -> list[str]:
    """Delete ``account``'s ``call_recordings`` rows of calls dated before ``before``, in one
    transaction; returns their paths (relative to BULUTFON_DATA_DIR), sorted."""
    with db.transaction() as tx:
        rows = tx.execute(
            """
            DELETE FROM call_recordings
            WHERE account = ?
              AND cdr_uuid IN (SELECT uuid FROM cdrs WHERE account = ? AND call_date < ?)
            RETURNING path
            """,
            [account, account, before],
        ).fetchall()
    return sorted(path for (path,) in rows)
