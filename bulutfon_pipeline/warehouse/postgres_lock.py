"""The PostgreSQL sync lock: a session-level advisory lock, so two syncs never write at
once (the file lock's role on DuckDB).

The lock (``pg_try_advisory_lock``) is keyed by the warehouse schema and the account
(:func:`lock_key`)
and lives on a connection of its own, so it is held whatever the sync's transactions
do, and the server releases it when that connection ends (the process died, or the block
ended). Driver-free: it runs over the connection ``Postgres.connect`` gives.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any, Protocol

from bulutfon_pipeline.warehouse.errors import WarehouseLockedError

__all__ = ["LOCK_POLL_S", "advisory_lock", "holder", "lock_key", "lock_keys"]

#: How often :func:`advisory_lock` asks again for a lock another session holds.
LOCK_POLL_S = 0.2


class _Cursor(Protocol):
    def fetchone(self) -> Any: ...


class _Connection(Protocol):
    def execute(self, query: Any, params: Sequence[Any] = ...) -> Any: ...

    def close(self) -> None: ...


def lock_key(schema_name: str, purpose: str = "sync", account: str | None = None) -> int:
    """The advisory-lock key of a warehouse schema (a signed 64-bit integer): of its
    syncs, or of another ``purpose`` (``listing scan``); with ``account``, of that
    account's only (two accounts' syncs and scans run at once, issue 14)."""
    label = schema_name if purpose == "sync" else f"{purpose}:{schema_name}"
    if account is not None:
        label = f"{label}/account:{account}"
    digest = hashlib.sha256(f"bulutfon_pipeline:{label}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def lock_keys(
    schema_name: str, purpose: str = "sync", account: str | Sequence[str] | None = None
) -> int | list[int]:
    """:func:`lock_key` of ``account``, or of each account of a sequence."""
    if account is None or isinstance(account, str):
        return lock_key(schema_name, purpose, account)
    return [lock_key(schema_name, purpose, one) for one in account]


def _try_lock(con: _Connection, key: int) -> bool:
    row = con.execute("SELECT pg_try_advisory_lock(%s)", [key]).fetchone()
    return bool(row and row[0])


def holder(con: _Connection, key: int) -> str:
    """Who holds the advisory lock ``key``: backend pid, application, client, since when
    (as far as this role may see ``pg_stat_activity``)."""
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    row = con.execute(
        """
        SELECT a.pid, a.application_name, a.client_addr, a.backend_start
        FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
          AND l.classid = %s::oid AND l.objid = %s::oid
        LIMIT 1
        """,
        [unsigned >> 32, unsigned & 0xFFFFFFFF],
    ).fetchone()
    if row is None:
        return "holder not visible"
    pid, application, address, started = row
    where = f" from {address}" if address else ""
    since = f", connected {started:%Y-%m-%d %H:%M:%S}Z" if started is not None else ""
    return f"pid {pid} {application or 'unnamed'}{where}{since}"


@contextmanager
def advisory_lock(
    connect: Callable[[], _Connection],
    *,
    key: int | Sequence[int],
    name: str,
    timeout_s: float,
    on_wait: Callable[[str], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    holder_kind: str = "sync",
) -> Iterator[None]:
    """Hold the advisory lock ``key`` (or every one of several keys: one per account)
    for the block, on one connection of its own.

    While another session holds one, asks again every :data:`LOCK_POLL_S`; ``on_wait``
    gets one line (who holds it) the first time. Several keys are taken in ascending
    order, so two sessions that want overlapping sets never wait for each other in a
    circle; the time to take them all is ``timeout_s``.

    Args:
        connect: a new autocommit connection (``Postgres.connect``).
        name: the warehouse, for messages (no password).
        holder_kind: what holds the lock, for messages ("another sync").

    Raises:
        WarehouseLockedError: still held by another session after ``timeout_s``.
        WarehouseError: the server could not be reached.
    """
    keys = [key] if isinstance(key, int) else sorted(set(key))
    con = connect()
    held: list[int] = []
    try:
        deadline = time.monotonic() + timeout_s
        waited = False
        for one in keys:
            while not _try_lock(con, one):
                if not waited and on_wait is not None:
                    on_wait(
                        f"waiting for another {holder_kind} to finish on {name} "
                        f"({holder(con, one)}); giving up after {timeout_s:g}s"
                    )
                waited = True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WarehouseLockedError(
                        f"warehouse {name} is locked by another {holder_kind} "
                        f"({holder(con, one)}); gave up after {timeout_s:g}s"
                    )
                sleep(min(LOCK_POLL_S, remaining))
            held.append(one)
        yield
    finally:
        with suppress(Exception):  # the connection may be gone; closing releases them
            for one in reversed(held):
                con.execute("SELECT pg_advisory_unlock(%s)", [one])
        con.close()
