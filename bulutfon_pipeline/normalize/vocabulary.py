"""The canonical vocabulary (``docs/architecture.md``): seed labels and v1 codes -> codes.

Every mapping here is a plain function of one value, applied once per distinct value of a
column through :func:`map_distinct`. Imports nothing from the package.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable
from typing import Any

_RECORDING_PRESENT = frozenset({"Var", "YES"})
_HANGUP_CAUSE_TR = {
    "Normal": "NORMAL_CLEARING",
    "Aramayı başlatan cevaplanmadan iptal ediyor.": "ORIGINATOR_CANCEL",
    "Meşgul": "USER_BUSY",
    "Cevap yok": "NO_ANSWER",
}
#: v1 sends Q.850 / FreeSWITCH cause names (upper snake case); they pass through.
_Q850_NAME_RE = re.compile(r"[A-Z][A-Z0-9_]*")
_HANGUP_STATE_TR = {
    "İstemci tarafından sonlandırılan çağrı": "recv_bye",
    "Sistem tarafından sonlandırılan çağrı": "send_bye",
    "Arayan tarafından iptal edildi": "recv_cancel",
    "Reddedildi": "send_refuse",
}
_HANGUP_STATE_CODES = frozenset(
    {"send_bye", "recv_bye", "send_cancel", "recv_cancel", "send_refuse", "recv_refuse"}
)
_REDIRECTED_TR_RE = re.compile(r"(Menüye|Gruba|Dahiliye) Yönlendi - \((.*)\)", re.DOTALL)
_TARGET_KIND_TR = {"Menüye": "MENU", "Gruba": "GROUP", "Dahiliye": "EXTENSION"}
_CONNECTING_TR = {
    "Menüye bağlanılıyor": "CONNECTING_TO_MENU",
    "Gruba bağlanılıyor": "CONNECTING_TO_GROUP",
    "Dahiliye bağlanılıyor": "CONNECTING_TO_EXTENSION",
}
_REDIRECTION_CODES = frozenset(
    f"{verb}_TO_{target}"
    for verb in ("REDIRECTED", "CONNECTING")
    for target in ("MENU", "GROUP", "EXTENSION")
) | {"OTHER"}
_OUTCOME = {
    "Cevapladı": "ANSWERED",
    "Başkası açtı": "LOSE_RACE",
    "ANSWERED": "ANSWERED",
    "LOSE_RACE": "LOSE_RACE",
}


def map_distinct(values: list[Any], func: Callable[[Any], Any]) -> list[Any]:
    """``[func(v) for v in values]``, calling ``func`` once per distinct value."""
    table: dict[Hashable, Any] = {v: func(v) for v in set(values)}
    return [table[v] for v in values]


def has_recording(value: str | None) -> bool:
    """``call_record`` as sent -> whether the call has a recording (``Var``, ``YES``, or
    on v2 the recording's URL)."""
    if value is None:
        return False
    value = value.strip()
    return value in _RECORDING_PRESENT or value.startswith(("https://", "http://"))


def hangup_cause_code(value: str | None) -> str | None:
    """``hangup_cause`` as sent -> its Q.850 name, or ``None`` when there is none."""
    if value is None:
        return None
    label = value.strip()
    if label in _HANGUP_CAUSE_TR:
        return _HANGUP_CAUSE_TR[label]
    return value if _Q850_NAME_RE.fullmatch(value) else None


def hangup_state_code(value: str | None) -> str | None:
    """``hangup_state`` as sent -> its code (``recv_bye``…), or ``None``."""
    if value is None:
        return None
    if value in _HANGUP_STATE_CODES:
        return value
    return _HANGUP_STATE_TR.get(value.strip())


def redirection_kind(key: tuple[str | None, str | None]) -> tuple[str, str | None]:
    """(redirection as sent, redirection_target as sent) -> (kind, target)."""
    value, sent_target = key
    if value is None:
        return "OTHER", None
    if value in _REDIRECTION_CODES:
        return value, sent_target
    label = value.strip()
    match = _REDIRECTED_TR_RE.fullmatch(label)
    if match:
        return f"REDIRECTED_TO_{_TARGET_KIND_TR[match[1]]}", match[2].strip() or None
    return _CONNECTING_TR.get(label, "OTHER"), None


def outcome_code(result: str | None) -> str:
    """Origination ``result`` as sent -> ``ANSWERED``, ``LOSE_RACE`` or ``OTHER``."""
    return "OTHER" if result is None else _OUTCOME.get(result.strip(), "OTHER")
