"""Record-level building blocks: the :class:`Reject`, the bad-record error, field readers.

The bottom of the package: imports nothing from it, so every other module may use it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

STAGE = "normalize"

_MAX_PRICE = Decimal(10) ** 8  # DECIMAL(12,4): 8 integer digits
_PRICE_QUANTUM = Decimal("0.0001")


@dataclass(frozen=True)
class Reject:
    """A record that could not be loaded.

    Attributes:
        uuid: the call's uuid when the record has a usable one, else ``None``.
        stage: ``listing``, ``detail``, ``normalize`` or ``recording``.
        reason: short human text naming the field and the offending value.
        payload: JSON text of the offending record, if any.
    """

    uuid: str | None
    stage: str
    reason: str
    payload: str | None


class BadRecordError(Exception):
    """Internal: the current record cannot be normalised (message = reject reason)."""


def short(value: object, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters for a reject reason."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _dump(record: object) -> str | None:
    try:
        return json.dumps(record, ensure_ascii=False, default=str)
    except (TypeError, ValueError):  # circular structures and the like
        return short(record, 10_000)


def is_object(value: object) -> bool:
    """Whether ``value`` is a JSON object (a mapping)."""
    return type(value) is dict or isinstance(value, Mapping)


def as_text(value: object, field: str) -> str | None:
    """Text exactly as sent; a JSON number becomes its decimal text."""
    kind = type(value)
    if kind is str or value is None:
        return value  # type: ignore[return-value]
    if kind is int:
        return str(value)
    if kind is float:
        assert isinstance(value, float)
        if not math.isfinite(value):
            raise BadRecordError(f"{field}: not a finite number {short(value)}")
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, Decimal) and value.is_finite():
        return str(value)
    raise BadRecordError(f"{field}: expected text or number, got {short(value)}")


def as_uuid(record: Mapping[str, Any]) -> str:
    """The record's uuid: a non-empty string."""
    value = record.get("uuid")
    if type(value) is str and value.strip():
        return value
    if value is None:
        raise BadRecordError("uuid: missing")
    raise BadRecordError(f"uuid: not a non-empty string {short(value)}")


def as_price(value: object) -> Decimal | None:
    """``call_price`` as a DECIMAL(12,4) value, or ``None`` when absent."""
    if value is None:
        return None
    if type(value) is bool or not isinstance(value, (int, float, str, Decimal)):
        raise BadRecordError(f"call_price: not a number {short(value)}")
    try:
        # str() first so a float keeps its shortest decimal spelling (0.0182, not 0.01819...)
        amount = Decimal(value.strip() if isinstance(value, str) else str(value))
    except InvalidOperation:
        raise BadRecordError(f"call_price: unparseable {short(value)}") from None
    if not amount.is_finite():
        raise BadRecordError(f"call_price: not a finite number {short(value)}")
    amount = amount.quantize(_PRICE_QUANTUM, rounding=ROUND_HALF_UP)
    if abs(amount) >= _MAX_PRICE:
        raise BadRecordError(f"call_price: out of range for DECIMAL(12,4) {short(value)}")
    return amount


def as_missing_call(value: object) -> bool | None:
    """``missing_call`` as sent (a boolean, 0 or 1), or ``None`` when absent."""
    if value is None or isinstance(value, bool):
        return value
    if type(value) is int and value in (0, 1):
        return bool(value)
    raise BadRecordError(f"missing_call: not a boolean {short(value)}")


def dedupe_last(records: Sequence[object]) -> set[int]:
    """Ordinals of records that a later record with the same uuid supersedes."""
    last: dict[str, int] = {}
    superseded: set[int] = set()
    for ordinal, record in enumerate(records):
        if isinstance(record, Mapping):
            uuid = record.get("uuid")
            if type(uuid) is str and uuid:
                previous = last.get(uuid)
                if previous is not None:
                    superseded.add(previous)
                last[uuid] = ordinal
    return superseded


def reject_for(record: object, reason: str) -> Reject:
    """The ``normalize`` reject of ``record``, keeping its uuid when it has a usable one."""
    uuid = record.get("uuid") if isinstance(record, Mapping) else None
    return Reject(
        uuid=uuid if type(uuid) is str and uuid else None,
        stage=STAGE,
        reason=reason,
        payload=_dump(record),
    )
