"""The PBX's directory, raw API items -> the rows of the directory tables (pure).

Ids and numbers become text (the API sends numbers or strings), ``acl`` is joined by
commas as received, ``destination_type`` is kept as received, weekdays become ISO numbers
(1 Monday .. 7 Sunday) and ``HH:MM`` times :class:`datetime.time` values (local
Europe/Istanbul wall-clock). An item that cannot be read becomes one ``directory``
:class:`Reject` (reason naming the field) and no row; its id, when it has one, is in
:attr:`NormalizedDirectory.unreadable`, so that the load leaves its version alone rather
than closing it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bulutfon_pipeline.normalize.records import (
    BadRecordError,
    Reject,
    _dump,
    as_text,
    is_object,
    short,
)

__all__ = ["STAGE", "WEEKDAYS", "NormalizedDirectory", "normalize_directory"]

#: The reject stage of directory items.
STAGE = "directory"
#: The API's weekday keys, in ISO order (index + 1 is the ISO weekday).
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_TIMES = ("shift_start", "shift_finish", "lunch_break_start", "lunch_break_finish")

Row = dict[str, Any]


@dataclass
class NormalizedDirectory:
    """The rows of one directory fetch, per table (no ``account`` or validity columns).

    ``unreadable``: table -> the ids of the items rejected (their versions stay as they
    are). ``phone_number_hours`` holds seven rows per ``phone_numbers`` row.
    """

    tables: dict[str, list[Row]] = field(
        default_factory=lambda: {
            name: []
            for name in (
                "extensions",
                "ring_groups",
                "ring_group_members",
                "phone_numbers",
                "phone_number_hours",
            )
        }
    )
    unreadable: dict[str, set[str]] = field(default_factory=dict)
    rejects: list[Reject] = field(default_factory=list)


def _id(item: Mapping[str, Any], what: str) -> str:
    value = item.get("id")
    if value is None or type(value) is bool:
        raise BadRecordError(f"{what}: id missing or not a number {short(value)}")
    text = as_text(value, f"{what} id")
    if not text:
        raise BadRecordError(f"{what}: empty id")
    return text


def _bool(value: object, name: str) -> bool | None:
    if value is None or type(value) is bool:
        return value
    raise BadRecordError(f"{name}: not a boolean {short(value)}")


def _int(value: object, name: str) -> int | None:
    if value is None or type(value) is int:
        return value
    if type(value) is str and value.strip().isdigit():
        return int(value)
    raise BadRecordError(f"{name}: not a whole number {short(value)}")


def _time(value: object, name: str) -> dt.time | None:
    if value is None or value == "":
        return None
    if type(value) is str:
        try:
            return dt.time.fromisoformat(value.strip())
        except ValueError:
            pass
    raise BadRecordError(f"{name}: not an HH:MM time {short(value)}")


def _extension(item: Mapping[str, Any], ext_id: str) -> Row:
    acl = item.get("acl")
    if acl is not None and not (isinstance(acl, list) and all(type(a) is str for a in acl)):
        raise BadRecordError(f"acl: not a list of texts {short(acl)}")
    row: Row = {"extension_id": ext_id}
    for name in ("number", "caller_name", "email", "did", "redirection_type",
                 "destination_type", "destination_number", "external_number"):  # fmt: skip
        row[name] = as_text(item.get(name), name)
    row["voice_mail"] = _bool(item.get("voice_mail"), "voice_mail")
    row["acl"] = None if acl is None else ",".join(acl)
    return row


def _group(item: Mapping[str, Any], group_id: str) -> tuple[Row, list[Row]]:
    row: Row = {"group_id": group_id, "number": as_text(item.get("number"), "number"),
                "name": as_text(item.get("name"), "name")}  # fmt: skip
    for name in ("timeout", "delay_time", "ring_duration"):
        row[name] = _int(item.get(name), name)
    members = item.get("extensions")
    if not isinstance(members, list):
        raise BadRecordError(f"extensions: the group's members are not a list {short(members)}")
    rows: dict[str, Row] = {}
    for member in members:
        if not is_object(member):
            raise BadRecordError(f"extensions: a member is not an object {short(member)}")
        member_id = _id(member, "member")
        number = as_text(member.get("number"), "member number")
        rows[member_id] = {"group_id": group_id, "extension_id": member_id,
                           "extension_number": number}  # fmt: skip
    return row, list(rows.values())


def _did(item: Mapping[str, Any], did_id: str) -> tuple[Row, list[Row]]:
    row: Row = {"did_id": did_id}
    for name in ("number", "state", "destination_type", "destination_id",
                 "destination_number"):  # fmt: skip
        row[name] = as_text(item.get(name), name)
    row["working_hour"] = _bool(item.get("working_hour"), "working_hour")
    hours = item.get("working_hours")
    if not isinstance(hours, Mapping):
        raise BadRecordError(f"working_hours: not an object {short(hours)}")
    rows = []
    for weekday, day in enumerate(WEEKDAYS, start=1):
        spec = hours.get(day)
        if not isinstance(spec, Mapping):
            raise BadRecordError(f"working_hours.{day}: missing or not an object {short(spec)}")
        is_open = _bool(spec.get("open"), f"working_hours.{day}.open")
        if is_open is None:
            raise BadRecordError(f"working_hours.{day}.open: missing")
        times = {name: _time(spec.get(name), f"working_hours.{day}.{name}") for name in _TIMES}
        if is_open and (times["shift_start"] is None or times["shift_finish"] is None):
            raise BadRecordError(f"working_hours.{day}: open without shift_start/shift_finish")
        rows.append({"did_id": did_id, "weekday": weekday, "open": is_open, **times})
    return row, rows


def _each(
    items: Sequence[Any],
    what: str,
    table: str,
    out: NormalizedDirectory,
    read: Callable[[Mapping[str, Any], str], None],
) -> None:
    seen: set[str] = set()
    for item in items:
        item_id = None
        try:
            if not is_object(item):
                raise BadRecordError(f"{what}: not an object {short(item)}")
            item_id = _id(item, what)
            if item_id in seen:
                raise BadRecordError("listed twice")
            seen.add(item_id)
            read(item, item_id)
        except BadRecordError as bad:
            reason = str(bad) if item_id is None else f"{what} {item_id}: {bad}"
            out.rejects.append(Reject(None, STAGE, reason, _dump(item)))
            if item_id is not None:
                out.unreadable.setdefault(table, set()).add(item_id)


def normalize_directory(items: Mapping[str, Sequence[Any]]) -> NormalizedDirectory:
    """The rows of a directory fetch (``DirectoryFetch.items``: ``extensions``,
    ``groups`` and ``dids``, each item merged with its detail).

    Bad data never raises: an unreadable item becomes a reject (and its group's members
    or its number's hours stay as they were too).
    """
    out = NormalizedDirectory()
    tables = out.tables

    def extension(item: Mapping[str, Any], ext_id: str) -> None:
        tables["extensions"].append(_extension(item, ext_id))

    def group(item: Mapping[str, Any], group_id: str) -> None:
        row, members = _group(item, group_id)
        tables["ring_groups"].append(row)
        tables["ring_group_members"].extend(members)

    def did(item: Mapping[str, Any], did_id: str) -> None:
        row, hours = _did(item, did_id)
        tables["phone_numbers"].append(row)
        tables["phone_number_hours"].extend(hours)

    _each(items.get("extensions", ()), "extension", "extensions", out, extension)
    _each(items.get("groups", ()), "group", "ring_groups", out, group)
    _each(items.get("dids", ()), "did", "phone_numbers", out, did)
    return out
