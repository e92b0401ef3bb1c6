"""The inbox: a SQLite file where the receiver makes every event durable before its 200.

Why SQLite, in WAL mode with ``synchronous=FULL``: a commit is on disk (fsync'd) when it
returns, readers (the sensor) never block the writer nor wait for it, the unique key
``(uuid, event_type)`` stores a replayed event once, and the file is separate from the
warehouse, so a long load never makes a post wait. One fsync costs ~3-4 ms on the
project's machines (``benchmarks/webhook.py`` measures it), which would cap a writer that
commits each event alone near 250 posts/s; :class:`InboxWriter` therefore commits in
groups: one thread takes every post waiting, writes them in one transaction, and only
then releases their answers (0.2 ms an event at 20 a commit). An append-only fsync'd log
costs the same fsync and would need its own dedup and reader cursor.

Tables:

* ``events(seq, event_type, uuid, timestamp_us, received_at, encoding, payload,
  duplicates, account)``: ``account`` is the PBX account the post's path named (added to an
  inbox made before, as ``default``, when the receiver opens it); ``seq`` grows with
  commit order (``AUTOINCREMENT``), so a reader that has consumed up to ``seq`` never
  misses an event committed later; a duplicate only bumps ``duplicates`` and keeps its
  ``seq``.
* ``rejected_posts(id, received_at, status, reason, encoding, body)``: each post answered
  400 or 413, with the reason and the start of the body, for an operator.
* ``inbox_meta(key, value)``: ``inbox_id``, random, made with the file.

The writer deletes the rows received more than ``BULUTFON_WEBHOOK_RETENTION_DAYS`` ago
(30 by default) at start and every hour, so the file does not grow without end.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import queue
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bulutfon_pipeline.faults import crash_point
from bulutfon_pipeline.settings import DEFAULT_ACCOUNT
from bulutfon_pipeline.webhook.events import HANGUP, WebhookEvent

__all__ = [
    "Inbox",
    "InboxError",
    "InboxHangup",
    "InboxWriter",
    "RejectedPost",
    "StoreResult",
]

log = logging.getLogger(__name__)

#: The start of a rejected body that is kept (an operator needs a glimpse, not the post).
REJECTED_BODY_CHARS = 2000
#: The most posts one transaction commits: bounds the time a post waits behind others.
MAX_GROUP = 500
_BUSY_TIMEOUT_MS = 30_000
#: How often the writer deletes rows older than the retention (and once at start).
PRUNE_EVERY_S = 3600.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_type TEXT NOT NULL,
    uuid TEXT NOT NULL,
    timestamp_us INTEGER NOT NULL,
    received_at TEXT NOT NULL,
    encoding TEXT NOT NULL,
    payload TEXT NOT NULL,
    duplicates INTEGER NOT NULL DEFAULT 0,
    account TEXT NOT NULL DEFAULT 'default',
    UNIQUE (uuid, event_type)
);
-- The hourly prune deletes by age without reading the whole table.
CREATE INDEX IF NOT EXISTS events_received_at ON events (received_at);
CREATE TABLE IF NOT EXISTS inbox_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rejected_posts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at TEXT NOT NULL,
    status INTEGER NOT NULL,
    reason TEXT NOT NULL,
    encoding TEXT,
    body TEXT
);
"""


class InboxError(RuntimeError):
    """The inbox file cannot be opened or written (one line, naming the file)."""


@dataclass(frozen=True)
class StoreResult:
    """What storing one event did: ``new`` False for a duplicate; ``seq`` its place."""

    new: bool
    seq: int


@dataclass(frozen=True)
class InboxHangup:
    """A stored ``call_hangup``: the call the sensor loads."""

    seq: int
    uuid: str
    timestamp_us: int
    received_at: dt.datetime
    account: str = DEFAULT_ACCOUNT


@dataclass(frozen=True)
class RejectedPost:
    """A post the receiver refused as malformed (400) or too large (413)."""

    received_at: dt.datetime
    status: int
    reason: str
    encoding: str | None
    body: str | None


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


class Inbox:
    """One connection to the inbox file (not shared between threads).

    Args:
        path: the SQLite file.
        create: make the folder, the file and the tables when missing (the receiver);
            False opens an existing inbox only (readers).

    Raises:
        InboxError: the file cannot be opened or created, or (``create=False``) is missing.
    """

    def __init__(self, path: Path, *, create: bool = False) -> None:
        self.path = path
        if not create and not path.exists():
            raise InboxError(f"no webhook inbox at {path} (has the receiver run?)")
        try:
            if create:
                path.parent.mkdir(parents=True, exist_ok=True)
            self._con = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=_BUSY_TIMEOUT_MS / 1e3
            )
            self._con.execute("PRAGMA journal_mode=WAL")
            # FULL: in WAL mode the log is fsync'd at every commit, so a committed event
            # survives a power cut too, not only a killed process.
            self._con.execute("PRAGMA synchronous=FULL")
            if create:
                self._con.executescript(_SCHEMA)
                self._con.execute(
                    "INSERT OR IGNORE INTO inbox_meta VALUES ('inbox_id', ?)", (uuid.uuid4().hex,)
                )
            columns = {row[1] for row in self._con.execute("PRAGMA table_info(events)")}
            self._has_account = "account" in columns
            if create and not self._has_account:  # an inbox made before accounts
                self._con.execute(
                    "ALTER TABLE events ADD COLUMN account TEXT NOT NULL DEFAULT 'default'"
                )
                self._has_account = True
        except (OSError, sqlite3.Error) as error:
            raise InboxError(f"cannot open the webhook inbox {path}: {error}") from None

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> Inbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writing (the receiver's writer thread) -----------------------------------------

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._con.execute("BEGIN IMMEDIATE")
        try:
            yield self._con
        except BaseException:
            self._con.execute("ROLLBACK")
            raise
        self._con.execute("COMMIT")

    def store(self, events: Sequence[WebhookEvent]) -> list[StoreResult]:
        """Store ``events`` in one transaction; a duplicate (same uuid and event type)
        only counts in its row's ``duplicates``. Returns once committed (fsync'd)."""
        results = []
        received_at = _now()
        with self._transaction() as con:
            for event in events:
                cursor = con.execute(
                    "INSERT OR IGNORE INTO events (event_type, uuid, timestamp_us, received_at,"
                    " encoding, payload, account) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        event.event_type,
                        event.uuid,
                        event.timestamp_us,
                        received_at,
                        event.encoding,
                        event.payload_json,
                        event.account,
                    ),
                )
                if cursor.rowcount == 1:
                    results.append(StoreResult(new=True, seq=int(cursor.lastrowid or 0)))
                    continue
                row = con.execute(
                    "UPDATE events SET duplicates = duplicates + 1"
                    " WHERE uuid = ? AND event_type = ? RETURNING seq",
                    (event.uuid, event.event_type),
                ).fetchone()
                results.append(StoreResult(new=False, seq=int(row[0])))
            crash_point("webhook_before_commit", sqlite3.OperationalError)
        return results

    def record_rejected(
        self, *, status: int, reason: str, encoding: str | None, body: bytes | None
    ) -> None:
        """Record a refused post with its reason and the start of its body."""
        text = (
            None
            if body is None
            else body[: REJECTED_BODY_CHARS * 4].decode("utf-8", "replace")[:REJECTED_BODY_CHARS]
        )
        with self._transaction() as con:
            con.execute(
                "INSERT INTO rejected_posts (received_at, status, reason, encoding, body)"
                " VALUES (?, ?, ?, ?, ?)",
                (_now(), status, reason, encoding, text),
            )

    def prune(self, before: dt.datetime) -> int:
        """Delete the events and refused posts received before ``before``; returns how
        many rows went. Their calls were long loaded by a run or by the listing scan,
        which lists every call within its lookback whatever the webhooks did."""
        cutoff = before.astimezone(dt.UTC).isoformat()
        with self._transaction() as con:
            events = con.execute("DELETE FROM events WHERE received_at < ?", (cutoff,)).rowcount
            refused = con.execute(
                "DELETE FROM rejected_posts WHERE received_at < ?", (cutoff,)
            ).rowcount
        return int(events) + int(refused)

    # --- reading (the sensor, the tests, an operator) -----------------------------------

    def hangups_after(self, seq: int, *, limit: int) -> list[InboxHangup]:
        """The stored hangups with ``seq`` above ``seq``, oldest first, at most ``limit``."""
        # An inbox the receiver has not reopened since accounts came: all 'default''s.
        account = "account" if self._has_account else "'default'"
        rows = self._con.execute(
            f"SELECT seq, uuid, timestamp_us, received_at, {account} FROM events"  # noqa: S608
            " WHERE seq > ? AND event_type = ? ORDER BY seq LIMIT ?",
            (seq, HANGUP, limit),
        ).fetchall()
        return [
            InboxHangup(int(s), str(u), int(t), dt.datetime.fromisoformat(r), str(a))
            for s, u, t, r, a in rows
        ]

    @property
    def inbox_id(self) -> str:
        """A random id the file got when it was created: tells a replaced inbox (whose
        ``seq`` restarts at 1) from the one a reader's cursor points into."""
        row = self._con.execute("SELECT value FROM inbox_meta WHERE key = 'inbox_id'").fetchone()
        return str(row[0])

    def last_seq(self) -> int:
        """The newest event's ``seq`` (0 when empty)."""
        row = self._con.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()
        return int(row[0])

    def rejected_count(self) -> int:
        """How many refused posts the inbox holds."""
        return int(self._con.execute("SELECT count(*) FROM rejected_posts").fetchone()[0])

    def events(self) -> list[dict[str, Any]]:
        """Every stored event as a dict (tests, operators), oldest first."""
        cursor = self._con.execute("SELECT * FROM events ORDER BY seq")
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def rejected(self) -> list[RejectedPost]:
        """Every refused post, oldest first."""
        rows = self._con.execute(
            "SELECT received_at, status, reason, encoding, body FROM rejected_posts ORDER BY id"
        ).fetchall()
        return [
            RejectedPost(dt.datetime.fromisoformat(r), int(s), str(why), e, b)
            for r, s, why, e, b in rows
        ]


#: A job for the writer thread: (the events, or a refused post's fields; the callback
#: that receives the results or the error).
_Done = Callable[[list[StoreResult] | BaseException], None]


class InboxWriter:
    """The inbox's one writer: a thread that commits the waiting posts in groups.

    :meth:`submit` queues events and returns at once; ``done`` is called (on the writer
    thread) with their results once their transaction committed, or with the error that
    rolled it back. A group holds every post waiting when the thread is free, up to
    :data:`MAX_GROUP`, so under load the fsync per commit is shared by many posts and
    the latency of a post stays near one commit.
    """

    def __init__(self, path: Path, *, retention_days: float = 0.0) -> None:
        self.inbox = Inbox(path, create=True)
        self._retention = dt.timedelta(days=retention_days) if retention_days > 0 else None
        self._next_prune = 0.0
        self._queue: queue.SimpleQueue[tuple[Any, _Done] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="webhook-inbox", daemon=True)
        self._thread.start()

    def submit(self, event: WebhookEvent, done: _Done) -> None:
        self._queue.put((event, done))

    def submit_rejected(
        self, done: _Done, *, status: int, reason: str, encoding: str | None, body: bytes | None
    ) -> None:
        self._queue.put(((status, reason, encoding, body), done))

    def close(self) -> None:
        """Commit what is queued, stop the thread and close the file."""
        self._queue.put(None)
        self._thread.join()
        self.inbox.close()

    def _prune_when_due(self) -> None:
        if self._retention is None or time.monotonic() < self._next_prune:
            return
        self._next_prune = time.monotonic() + PRUNE_EVERY_S
        try:
            pruned = self.inbox.prune(dt.datetime.now(dt.UTC) - self._retention)
        except Exception as error:  # the next attempt is in an hour; posts go on
            log.error("could not prune the inbox: %s", error)
            return
        if pruned:
            log.info("pruned %d inbox rows older than %s", pruned, self._retention)

    def _run(self) -> None:
        while True:
            self._prune_when_due()
            try:
                first = self._queue.get(timeout=PRUNE_EVERY_S)
            except queue.Empty:
                continue
            if first is None:
                return
            group = [first]
            stop = False
            while len(group) < MAX_GROUP:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                group.append(item)
            self._write(group)
            if stop:
                return

    def _write(self, group: list[tuple[Any, _Done]]) -> None:
        events = [(job, done) for job, done in group if isinstance(job, WebhookEvent)]
        refused = [(job, done) for job, done in group if not isinstance(job, WebhookEvent)]
        for (status, reason, encoding, body), done in refused:
            try:
                self.inbox.record_rejected(
                    status=status, reason=reason, encoding=encoding, body=body
                )
            except Exception as error:  # an operator's record: log it, answer anyway
                log.error("could not record a refused post in the inbox: %s", error)
                done(error)
            else:
                done([])
        if not events:
            return
        try:
            results = self.inbox.store([event for event, _ in events])
        except Exception as error:  # disk full, I/O error: no 200 for any of them
            log.error("the inbox could not commit %d events: %s", len(events), error)
            for _, done in events:
                done(error)
            return
        for (_, done), result in zip(events, results, strict=True):
            done([result])
