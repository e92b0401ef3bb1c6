"""The v2 listing's filters, ``field[op]=value`` with op one of ``eq ne gt ge lt le cont``
(section 7 of bulutfon-api.md), as the simulator applies them.

Time fields (``call_time``, ``answer_time``, ``hangup_time``) compare as instants (a value
without an offset is Istanbul time); other fields compare the rendered item's value, as
numbers when the API sends a number, else as text (``cont``: a substring). Several
filters all apply. Stdlib only, besides the model.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable
from typing import Any

from bulutfon_pipeline.settings import LOCAL_TZ
from bulutfon_pipeline.simulator.model import Call

__all__ = ["OPERATORS", "Filter", "matches", "needs_item", "parse_filters"]

_KEY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\[([a-z]+)\]")
OPERATORS = frozenset({"eq", "ne", "gt", "ge", "lt", "le", "cont"})
_TIMES = frozenset({"call_time", "answer_time", "hangup_time"})
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
}

#: (field, op, value): the value an aware datetime for a time field, else the text sent.
Filter = tuple[str, str, Any]


def parse_filters(params: Iterable[tuple[str, str]]) -> list[Filter]:
    """The ``field[op]=value`` filters among the query ``params``; times parsed.

    Raises:
        ValueError: an unknown operator, or a time that is not ISO-8601.
    """
    filters: list[Filter] = []
    for key, value in params:
        match = _KEY.fullmatch(key)
        if match is None:
            continue
        name, op = match[1], match[2]
        if op not in OPERATORS:
            raise ValueError(f"unknown filter operator {op!r} (eq ne gt ge lt le cont)")
        if name in _TIMES and op != "cont":
            try:
                instant = dt.datetime.fromisoformat(value)
            except ValueError:
                raise ValueError(f"{key}: not an ISO-8601 time: {value!r}") from None
            filters.append(
                (name, op, instant if instant.tzinfo else instant.replace(tzinfo=LOCAL_TZ))
            )
        else:
            filters.append((name, op, value))
    return filters


def needs_item(f: Filter) -> bool:
    """Whether ``f`` compares the rendered item (a time comparison reads the model)."""
    name, op, _ = f
    return name not in _TIMES or op == "cont"


def matches(call: Call, item: dict[str, Any] | None, filters: list[Filter]) -> bool:
    """Whether ``call`` (rendered as ``item`` when :func:`needs_item`) passes every filter."""
    for name, op, wanted in filters:
        if not needs_item((name, op, wanted)):
            value = getattr(call, name)
            if value is None or not _COMPARE[op](value, wanted):
                return False
            continue
        assert item is not None
        sent = item.get(name)
        text = "" if sent is None else str(sent).lower() if isinstance(sent, bool) else str(sent)
        if op == "cont":
            if wanted not in text:
                return False
        elif isinstance(sent, int | float) and not isinstance(sent, bool):
            try:
                if not _COMPARE[op](sent, float(wanted)):
                    return False
            except ValueError:
                return False
        elif not _COMPARE[op](text, wanted):
            return False
    return True
