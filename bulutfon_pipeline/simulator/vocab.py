"""The two dialects' words for each canonical code (see docs/architecture.md).

The model speaks canonical (v1) codes; these tables give the seed dialect's Turkish text.
Every Turkish label here maps back to its code in the architecture's vocabulary table, so
both dialects load into identical canonical columns.
"""

from __future__ import annotations

HANGUP_CAUSE_SEED: dict[str, str] = {
    "NORMAL_CLEARING": "Normal",
    "ORIGINATOR_CANCEL": "Aramayı başlatan cevaplanmadan iptal ediyor.",
    "USER_BUSY": "Meşgul",
    "NO_ANSWER": "Cevap yok",
}

HANGUP_STATE_SEED: dict[str, str] = {
    "recv_bye": "İstemci tarafından sonlandırılan çağrı",
    "send_bye": "Sistem tarafından sonlandırılan çağrı",
    "recv_cancel": "Arayan tarafından iptal edildi",
    "send_refuse": "Reddedildi",
}

#: The seed has no REMOVED: a deleted recording is simply "Yok" (none).
CALL_RECORD_SEED: dict[str, str] = {"YES": "Var", "NO": "Yok", "REMOVED": "Yok"}

RESULT_SEED: dict[str, str] = {
    "ANSWERED": "Cevapladı",
    "LOSE_RACE": "Başkası açtı",
    "NO_ANSWER": "Cevaplanmadı",
}

#: Origination results other than these two are outcome OTHER.
OUTCOMES = frozenset({"ANSWERED", "LOSE_RACE"})

_REDIRECTED_SEED = {
    "REDIRECTED_TO_MENU": "Menüye Yönlendi - ({target})",
    "REDIRECTED_TO_GROUP": "Gruba Yönlendi - ({target})",
    "REDIRECTED_TO_EXTENSION": "Dahiliye Yönlendi - ({target})",
}
_CONNECTING_SEED = {
    "CONNECTING_TO_MENU": "Menüye bağlanılıyor",
    "CONNECTING_TO_GROUP": "Gruba bağlanılıyor",
    "CONNECTING_TO_EXTENSION": "Dahiliye bağlanılıyor",
}
#: A label outside the vocabulary table: normalizes to kind OTHER (used for outbound legs).
OTHER_SEED = "Dış hatta bağlanılıyor"


def redirection_seed(kind: str, target: str | None) -> str:
    """The seed's Turkish redirection text for a canonical kind and target."""
    if kind in _REDIRECTED_SEED:
        return _REDIRECTED_SEED[kind].format(target=target)
    if kind in _CONNECTING_SEED:
        return _CONNECTING_SEED[kind]
    return OTHER_SEED


def hangup_cause_text(code: str, dialect: str) -> str:
    return HANGUP_CAUSE_SEED[code] if dialect == "seed" else code


def hangup_state_text(code: str | None, dialect: str) -> str | None:
    if code is None:
        return None
    return HANGUP_STATE_SEED[code] if dialect == "seed" else code


def call_record_text(code: str, dialect: str) -> str:
    return CALL_RECORD_SEED[code] if dialect == "seed" else code


def result_text(code: str, dialect: str) -> str:
    return RESULT_SEED[code] if dialect == "seed" else code


def redirection_text(kind: str, target: str | None, dialect: str) -> str:
    return redirection_seed(kind, target) if dialect == "seed" else kind
