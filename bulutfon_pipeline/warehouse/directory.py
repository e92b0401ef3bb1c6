"""The PBX's directory tables: merging one observation of an account's directory into
their versions (slowly changing, see the block comment in ``schema.py``), in one
transaction, on either backend.

For each entity (an extension, a ring group, a group's member, a number with its seven
``phone_number_hours`` rows), compared with its version in force:

* unchanged: nothing is written;
* changed: the version in force is closed (``valid_to`` = the observation instant) and a
  new one opened (``valid_from`` = the same instant);
* gone from the API: its version is closed, none opened;
* never seen: a version is opened, valid from ``DIRECTORY_BEGINNING`` when the account
  has no directory rows yet (its first load), else from the observation instant.

An entity the fetch could not read (``unreadable``: rejected, or its detail 404) keeps its
version as it is, and so do a group's members when the group is unreadable. Should the
observation instant not be after a changed version's ``valid_from`` (a clock that went
back, two changes in one second), the version is rewritten in place instead: a version
never lasts zero or less time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from bulutfon_pipeline.normalize import Reject
from bulutfon_pipeline.warehouse import schema
from bulutfon_pipeline.warehouse.backend import Backend, Transaction
from bulutfon_pipeline.warehouse.rejects import write_rejects_of

__all__ = ["DirectoryMergeResult", "DirectoryObservation", "merge_directories", "merge_directory"]

Row = Mapping[str, Any]
_BEGINNING = dt.datetime.fromisoformat(schema.DIRECTORY_BEGINNING)
#: table -> (its entity's key columns, the table whose unreadable ids protect it, the
#: key column holding that id). ``phone_number_hours`` goes with ``phone_numbers``.
_ENTITIES: dict[str, tuple[tuple[str, ...], str, str]] = {
    "extensions": (("extension_id",), "extensions", "extension_id"),
    "ring_groups": (("group_id",), "ring_groups", "group_id"),
    "ring_group_members": (("group_id", "extension_id"), "ring_groups", "group_id"),
    "phone_numbers": (("did_id",), "phone_numbers", "did_id"),
}
_HOURS = schema.phone_number_hours
_HOUR_VALUES = [c.name for c in _HOURS.c if c.name not in ("account", "did_id", "valid_from",
                                                          "valid_to")]  # fmt: skip


@dataclass
class DirectoryMergeResult:
    """What a merge wrote: per table (``extensions``, ``ring_groups``,
    ``ring_group_members``, ``phone_numbers``), the versions opened and closed and the
    entities left unchanged; ``first_load``: the account had no directory rows before."""

    opened: dict[str, int] = field(default_factory=dict)
    closed: dict[str, int] = field(default_factory=dict)
    unchanged: dict[str, int] = field(default_factory=dict)
    rejected: int = 0
    first_load: bool = False

    @property
    def writes(self) -> int:
        """Versions opened plus versions closed (0: the directory had not changed)."""
        return sum(self.opened.values()) + sum(self.closed.values())


def _values(table: sa.Table) -> list[str]:
    """The columns of ``table`` after the account, key and validity columns."""
    return [c.name for c in table.c if not c.primary_key and c.name != "valid_to"]


def _in(accounts: Sequence[str]) -> str:
    return "account IN (" + ", ".join("?" for _ in accounts) + ")"


def _open_versions(
    tx: Transaction, table: sa.Table, key: Sequence[str], accounts: Sequence[str]
) -> dict[str, dict[tuple[str, ...], tuple[dt.datetime, tuple[Any, ...]]]]:
    """account -> entity -> (its version in force's ``valid_from``, its values)."""
    columns = ["account", *key, "valid_from", *_values(table)]
    rows = tx.execute(
        f"SELECT {', '.join(columns)} FROM {table.name} "  # noqa: S608 (our identifiers)
        f"WHERE {_in(accounts)} AND valid_to IS NULL",
        list(accounts),
    ).fetchall()
    n = len(key) + 1
    versions: dict[str, dict[tuple[str, ...], tuple[dt.datetime, tuple[Any, ...]]]] = {}
    for r in rows:
        versions.setdefault(r[0], {})[tuple(r[1:n])] = (r[n], tuple(r[n + 1 :]))
    return versions


def _open_hours(
    tx: Transaction, accounts: Sequence[str]
) -> dict[str, dict[str, tuple[tuple[Any, ...], ...]]]:
    """account -> number -> its hours in force, by weekday."""
    rows = tx.execute(
        f"SELECT account, did_id, {', '.join(_HOUR_VALUES)} FROM phone_number_hours "  # noqa: S608
        f"WHERE {_in(accounts)} AND valid_to IS NULL ORDER BY account, did_id, weekday",
        list(accounts),
    ).fetchall()
    hours: dict[str, dict[str, list[tuple[Any, ...]]]] = {}
    for row in rows:
        hours.setdefault(row[0], {}).setdefault(row[1], []).append(tuple(row[2:]))
    return {a: {did: tuple(days) for did, days in dids.items()} for a, dids in hours.items()}


def _with_rows(tx: Transaction, accounts: Sequence[str]) -> set[str]:
    """Which of ``accounts`` have directory rows (any version)."""
    union = " UNION ".join(
        f"SELECT DISTINCT account FROM {t.name} WHERE {_in(accounts)}"  # noqa: S608
        for t in schema.DIRECTORY_TABLES
    )
    params = [a for _ in schema.DIRECTORY_TABLES for a in accounts]
    return {row[0] for row in tx.execute(union, params).fetchall()}


def _where(key: Sequence[str]) -> str:
    return " AND ".join(f"{name} = ?" for name in ("account", *key))


#: Rows per ``INSERT ... VALUES`` of new versions (one statement, not one per row: a
#: DuckDB ``executemany`` runs the statement once per row).
_INSERT_ROWS = 200


def _insert(tx: Transaction, table: sa.Table, rows: list[list[Any]]) -> None:
    names = [c.name for c in table.c]
    one = "(" + ", ".join("?" for _ in names) + ")"
    for first in range(0, len(rows), _INSERT_ROWS):
        chunk = rows[first : first + _INSERT_ROWS]
        values = ", ".join(one for _ in chunk)
        sql = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES {values}"  # noqa: S608
        tx.execute(sql, [value for row in chunk for value in row])


def _row(table: sa.Table, account: str, values: Row, start: dt.datetime) -> list[Any]:
    """A new version of ``values``, in ``table``'s column order, open from ``start``."""
    fixed = {"account": account, "valid_from": start, "valid_to": None}
    return [fixed[c.name] if c.name in fixed else values[c.name] for c in table.c]


def _close(
    tx: Transaction,
    name: str,
    key: Sequence[str],
    ident: tuple[str, ...],
    since: dt.datetime,
    *,
    account: str,
    at: dt.datetime,
) -> bool:
    """Close the version in force of ``ident`` (valid since ``since``) at ``at``, with its
    hours for a number; one that began at or after ``at`` is deleted instead (see the
    module doc). Whether a version was closed."""
    deleting = since >= at
    verb = "DELETE FROM {t}" if deleting else "UPDATE {t} SET valid_to = ?"
    for t in (name, "phone_number_hours") if name == "phone_numbers" else (name,):
        tx.execute(
            f"{verb.format(t=t)} WHERE {_where(key)} AND valid_to IS NULL",
            [*([] if deleting else [at]), account, *ident],
        )
    return not deleting


@dataclass(frozen=True)
class DirectoryObservation:
    """One observation of an account's directory, to merge (:func:`merge_directories`).

    Attributes:
        tables: table -> rows (``NormalizedDirectory.tables``).
        observed_at: when the API answered (aware); closes and opens the versions.
        unreadable: table -> ids whose versions stay as they are.
        rejects: the bad items, recorded in ``load_rejects``.
    """

    account: str
    tables: Mapping[str, Sequence[Row]]
    observed_at: dt.datetime
    unreadable: Mapping[str, set[str]] = field(default_factory=dict)
    rejects: Sequence[Reject] = ()


@dataclass
class _Observation:
    """What the merge of an account's every table needs: where, when, from when new
    entities are valid, the numbers' hours (open and observed), and the new versions of
    the whole merge, by table (inserted after every close)."""

    tx: Transaction
    account: str
    at: dt.datetime
    start_new: dt.datetime
    hours_now: dict[str, tuple[tuple[Any, ...], ...]]
    hours_new: dict[str, list[Row]]
    inserts: dict[str, list[list[Any]]]

    def days(self, did_id: str) -> tuple[tuple[Any, ...], ...]:
        """A number's observed hours, as :func:`_open_hours` reads the stored ones."""
        rows = sorted(self.hours_new.get(did_id, []), key=lambda h: h["weekday"])
        return tuple(tuple(h[v] for v in _HOUR_VALUES) for h in rows)

    def same(self, name: str, ident: tuple[str, ...], stored: tuple[Any, ...], row: Row) -> bool:
        table = schema.metadata.tables[name]
        if stored != tuple(row[v] for v in _values(table)):
            return False
        return name != "phone_numbers" or self.hours_now.get(ident[0]) == self.days(ident[0])


def _merge_table(
    obs: _Observation,
    name: str,
    rows: Sequence[Row],
    kept: set[str],
    current: dict[tuple[str, ...], tuple[dt.datetime, tuple[Any, ...]]],
) -> tuple[int, int, int]:
    """Merge one table's observed rows into its ``current`` versions (closes now, new
    versions into ``obs.inserts``); (opened, closed, unchanged)."""
    key, _, protect_col = _ENTITIES[name]
    table = schema.metadata.tables[name]
    tx, account, at = obs.tx, obs.account, obs.at
    seen: set[tuple[str, ...]] = set()
    opened = obs.inserts.setdefault(name, [])
    hour_rows = obs.inserts.setdefault(_HOURS.name, [])
    before = len(opened)
    closed = unchanged = 0
    for row in rows:
        ident = tuple(row[k] for k in key)
        if ident in seen:
            continue
        seen.add(ident)
        found = current.get(ident)
        since = obs.start_new
        if found is not None:
            if obs.same(name, ident, found[1], row):
                unchanged += 1
                continue
            closed += _close(tx, name, key, ident, found[0], account=account, at=at)
            since = max(at, found[0])
        opened.append(_row(table, account, row, since))
        if name == "phone_numbers":
            hours = obs.hours_new.get(ident[0], [])
            hour_rows.extend(_row(_HOURS, account, h, since) for h in hours)
    for ident, (since, _) in current.items():
        if ident not in seen and ident[key.index(protect_col)] not in kept:
            closed += _close(tx, name, key, ident, since, account=account, at=at)
    return len(opened) - before, closed, unchanged


def merge_directory(
    db: Backend,
    tables: Mapping[str, Sequence[Row]],
    *,
    account: str,
    observed_at: dt.datetime,
    unreadable: Mapping[str, set[str]] | None = None,
    rejects: Sequence[Reject] = (),
) -> DirectoryMergeResult:
    """Merge one observation of ``account``'s directory (``NormalizedDirectory.tables``)
    into its versions, and record ``rejects``, in one transaction (see the module doc).

    Args:
        observed_at: when the API answered (aware); closes and opens the versions.
        unreadable: table -> ids whose versions stay as they are.

    Returns:
        The versions opened and closed and the entities unchanged, per table.

    Raises:
        WarehouseError: the database failed (nothing is written).
    """
    observation = DirectoryObservation(account, tables, observed_at, unreadable or {}, rejects)
    return merge_directories(db, [observation])[0]


def merge_directories(
    db: Backend, observations: Sequence[DirectoryObservation]
) -> list[DirectoryMergeResult]:
    """Merge several accounts' observations, one per account, in one transaction: each
    as :func:`merge_directory` would, with one query per table for them all, not one per
    account (``Warehouse.merge_directory`` hands them over while accounts take turns).

    Returns:
        Each observation's result, in their order.

    Raises:
        ValueError: two observations of one account.
        WarehouseError: the database failed (nothing is written, for any of them).
    """
    accounts = [o.account for o in observations]
    if len(set(accounts)) != len(accounts):
        raise ValueError(f"one observation per account, not {sorted(accounts)}")
    if not observations:
        return []
    results = []
    with db.transaction() as tx:
        loaded = _with_rows(tx, accounts)
        hours_now = _open_hours(tx, accounts)
        current = {
            name: _open_versions(tx, schema.metadata.tables[name], key, accounts)
            for name, (key, _, _) in _ENTITIES.items()
        }
        inserts: dict[str, list[list[Any]]] = {}
        for o in observations:
            result = DirectoryMergeResult(rejected=len(o.rejects))
            result.first_load = o.account not in loaded
            hours_new: dict[str, list[Row]] = {}
            for hour in o.tables.get("phone_number_hours", ()):
                hours_new.setdefault(hour["did_id"], []).append(hour)
            obs = _Observation(
                tx,
                o.account,
                o.observed_at,
                _BEGINNING if result.first_load else o.observed_at,
                hours_now.get(o.account, {}),
                hours_new,
                inserts,
            )
            for name, (_, protector, _) in _ENTITIES.items():
                kept = set(o.unreadable.get(protector, set()))
                mine = current[name].get(o.account, {})
                counts = _merge_table(obs, name, o.tables.get(name, ()), kept, mine)
                result.opened[name], result.closed[name], result.unchanged[name] = counts
            results.append(result)
        for name, rows in inserts.items():  # after every close: none closes a new version
            _insert(tx, schema.metadata.tables[name], rows)
        write_rejects_of(tx, {o.account: o.rejects for o in observations})
    return results
