"""The PBX's directory one account serves (``/extensions``, ``/groups``, ``/dids``, see
``shared/bulutfon-api.md`` §5), consistent with the calls of :mod:`.generator`: its
extensions are ``EXTENSIONS`` (1001-1020), its ring groups 101 and 102 ring ``GROUPS``,
and incoming calls reach the DID ``DID``. A second DID gets no calls.

Built from fixed tables, not from the generator's random stream (the calls do not change).
Each account has its own :class:`Directory` (the names are rotated by its seed), and
:meth:`Directory.apply_month_changes` makes "the month's changes": one extension renamed,
one group's membership changed. :meth:`Directory.expected` is the ground truth a correct
load holds for the current state, built here and never through the loader's normalizer.
"""

from __future__ import annotations

import copy
import datetime as dt
import threading
from typing import Any

from bulutfon_pipeline.simulator.generator import DID, EXTENSIONS, GROUPS

__all__ = ["RENAMED_EXTENSION", "Directory", "weekday_hours"]

_NAMES = (
    "Ayşe Yılmaz", "Mehmet Kaya", "Fatma Demir", "Mustafa Şahin", "Emine Çelik",
    "Ahmet Yıldız", "Hatice Yıldırım", "Ali Öztürk", "Zeynep Aydın", "Hüseyin Özdemir",
    "Elif Arslan", "Hasan Doğan", "Merve Kılıç", "İbrahim Aslan", "Büşra Çetin",
    "Murat Kara", "Özge Koç", "Emre Kurt", "Gül Özkan", "Burak Şimşek",
)  # fmt: skip
_ASCII = str.maketrans("çğıöşüÇĞİÖŞÜ", "cgiosuCGIOSU")
#: The extension "the month's changes" rename (a second surname added).
RENAMED_EXTENSION = "1004"
_NEW_SURNAME = "Erdem"
#: The group whose members change: 1010 leaves 101, 1011 joins it.
_CHANGED_GROUP, _LEAVES, _JOINS = "101", "1010", "1011"
_GROUP_NAMES = {"101": "Satış", "102": "Destek"}
_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def weekday_hours(day: str) -> dict[str, Any]:
    """The working hours of the PBX's numbers on ``day`` (an English weekday): Monday to
    Friday 08:30-18:30 with lunch 12:30-13:30, Saturday 09:00-13:00, Sunday closed."""
    if day == "sunday":
        return {"open": False}
    if day == "saturday":
        return {"open": True, "shift_start": "09:00", "shift_finish": "13:00"}
    return {
        "open": True,
        "shift_start": "08:30",
        "shift_finish": "18:30",
        "lunch_break_start": "12:30",
        "lunch_break_finish": "13:30",
    }


def _as_sent(value: str, index: int) -> int | str:
    """A number as the API sends it: odd positions as JSON numbers, even as strings."""
    return int(value) if index % 2 else value


class Directory:
    """One account's directory: extensions, ring groups and DIDs (thread-safe)."""

    def __init__(self, seed: int = 42) -> None:
        self._lock = threading.Lock()
        shift = seed % len(_NAMES)
        names = _NAMES[shift:] + _NAMES[:shift]
        self.extensions: list[dict[str, Any]] = [
            self._extension(i, number, names[i]) for i, number in enumerate(EXTENSIONS)
        ]
        self._ext_by_number = {str(e["number"]): e for e in self.extensions}
        self.members: dict[str, list[str]] = {g: list(m) for g, m in GROUPS.items()}
        self.groups: list[dict[str, Any]] = [
            {"id": 11 + i, "number": _as_sent(number, i + 1), "name": _GROUP_NAMES[number],
             "timeout": 30, "delay_time": 5 * i, "ring_duration": 20 + 5 * i}
            for i, number in enumerate(GROUPS)
        ]  # fmt: skip
        hours = {day: weekday_hours(day) for day in _DAYS}
        self.dids: list[dict[str, Any]] = [
            {"id": 7, "number": DID, "state": "CONFIRMED", "destination_type": "Auto attendant",
             "destination_id": 1, "destination_number": None, "working_hour": True,
             "working_hours": hours},
            {"id": 8, "number": int(DID) + 1, "state": "CONFIRMED",
             "destination_type": "Extension", "destination_id": self.extensions[0]["id"],
             "destination_number": "1001", "working_hour": False,
             "working_hours": {day: {"open": True, "shift_start": "00:00",
                                     "shift_finish": "23:59"} for day in _DAYS}},
        ]  # fmt: skip
        self.changed = False

    @staticmethod
    def _extension(i: int, number: str, name: str) -> dict[str, Any]:
        first = name.split()[0].lower().translate(_ASCII)
        detail: dict[str, Any] = {
            "id": 5101 + i,
            "number": _as_sent(number, i),
            "registered": i % 3 != 2,
            "caller_name": name,
            "email": f"{first}.{number}@ornek.com.tr",
            "did": DID if i % 2 == 0 else int(DID),
            "voice_mail": i % 4 == 0,
            "redirection_type": "NONE",
            "destination_type": None,
            "destination_number": None,
            "external_number": None,
            "acl": ["domestic", "gsm"] if i % 5 else ["domestic", "gsm", "international"],
        }
        if number == "1002":  # forwards to 1003 when unreachable
            detail.update(redirection_type="UNREACHABLE", destination_type="EXTENSION",
                          destination_number=1003)  # fmt: skip
        if number == "1020":  # forwards every call to a mobile
            detail.update(redirection_type="ALWAYS", destination_type="EXTERNAL",
                          external_number="905321112233")  # fmt: skip
        return detail

    # -- the API's bodies ----------------------------------------------------------------
    def listing(self, kind: str) -> dict[str, Any]:
        """The list body of ``kind`` (``extensions``, ``groups`` or ``dids``)."""
        with self._lock:
            if kind == "extensions":
                keep = ("id", "number", "registered", "caller_name", "email")
                items = [{k: e[k] for k in keep} for e in self.extensions]
            elif kind == "groups":
                items = copy.deepcopy(self.groups)
            else:
                items = [{k: v for k, v in d.items() if k != "working_hours"} for d in self.dids]
            return {kind: items}

    def detail(self, kind: str, item_id: str) -> dict[str, Any] | None:
        """The detail body of ``kind``'s item ``item_id``, or None (no such item)."""
        with self._lock:
            if kind == "extensions":
                found = [e for e in self.extensions if str(e["id"]) == item_id]
                return {"extension": copy.deepcopy(found[0])} if found else None
            if kind == "groups":
                for group in self.groups:
                    if str(group["id"]) == item_id:
                        members = [self._member(n) for n in self.members[str(group["number"])]]
                        return {"group": {**copy.deepcopy(group), "extensions": members}}
                return None
            found = [d for d in self.dids if str(d["id"]) == item_id]
            return {"did": copy.deepcopy(found[0])} if found else None

    def _member(self, number: str) -> dict[str, Any]:
        ext = self._ext_by_number[number]
        return {k: ext[k] for k in ("id", "number", "caller_name", "email")}

    # -- changes -------------------------------------------------------------------------
    def apply_month_changes(self) -> dict[str, Any]:
        """Rename extension ``RENAMED_EXTENSION`` (a second surname) and, in group 101,
        replace member 1010 by 1011. Idempotent: a second call changes nothing."""
        with self._lock:
            if not self.changed:
                ext = self._ext_by_number[RENAMED_EXTENSION]
                ext["caller_name"] = f"{ext['caller_name']} {_NEW_SURNAME}"
                members = self.members[_CHANGED_GROUP]
                members.remove(_LEAVES)
                members.append(_JOINS)
                self.changed = True
            return {
                "renamed": {
                    RENAMED_EXTENSION: self._ext_by_number[RENAMED_EXTENSION]["caller_name"]
                },
                "members": {_CHANGED_GROUP: list(self.members[_CHANGED_GROUP])},
            }

    # -- ground truth --------------------------------------------------------------------
    def expected(self) -> dict[str, list[dict[str, Any]]]:
        """The current version of every entity as a correct load stores it (text ids and
        numbers, ``acl`` joined by commas, ISO weekdays, :class:`datetime.time` times), without the
        validity columns."""
        with self._lock:
            out: dict[str, list[dict[str, Any]]] = {
                "extensions": [], "ring_groups": [], "ring_group_members": [],
                "phone_numbers": [], "phone_number_hours": [],
            }  # fmt: skip
            for e in self.extensions:
                row = {"extension_id": str(e["id"])}
                for key in ("number", "caller_name", "email", "did", "voice_mail",
                            "redirection_type", "destination_type", "destination_number",
                            "external_number"):  # fmt: skip
                    value = e[key]
                    row[key] = (
                        str(value) if isinstance(value, int) and key != "voice_mail" else value
                    )
                row["acl"] = ",".join(e["acl"])
                out["extensions"].append(row)
            for g in self.groups:
                gid = str(g["id"])
                sizes = {k: g[k] for k in ("name", "timeout", "delay_time", "ring_duration")}
                out["ring_groups"].append({"group_id": gid, "number": str(g["number"]), **sizes})
                for number in self.members[str(g["number"])]:
                    ext_id = str(self._ext_by_number[number]["id"])
                    out["ring_group_members"].append(
                        {"group_id": gid, "extension_id": ext_id, "extension_number": number}
                    )
            for d in self.dids:
                did_id = str(d["id"])
                out["phone_numbers"].append({
                    "did_id": did_id, "number": str(d["number"]), "state": d["state"],
                    "destination_type": d["destination_type"],
                    "destination_id": str(d["destination_id"]),
                    "destination_number": d["destination_number"],
                    "working_hour": d["working_hour"],
                })  # fmt: skip
                for weekday, day in enumerate(_DAYS, start=1):
                    hours = d["working_hours"][day]
                    out["phone_number_hours"].append({
                        "did_id": did_id, "weekday": weekday, "open": hours["open"],
                        **{k: _time(hours.get(k)) for k in ("shift_start", "shift_finish",
                           "lunch_break_start", "lunch_break_finish")},
                    })  # fmt: skip
            return out


def _time(value: str | None) -> dt.time | None:
    return None if value is None else dt.time.fromisoformat(value)
