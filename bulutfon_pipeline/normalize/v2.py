"""The v2 API's shapes -> the v1 shape the normaliser reads (pure, no I/O).

The v2 reference is not public (section 7 of ``bulutfon-api.md``): its listing items and
details are taken to be v1's (ISO-8601 times with an offset, English codes) except for
the names in a field map, by default ``caller_extension`` for v1's ``extension``, and
``call_record``, which is ``"NO"`` or the recording's URL (see
:func:`~bulutfon_pipeline.normalize.vocabulary.has_recording`). The client renames each
v2 object's fields as it receives it; :mod:`bulutfon_pipeline.replay` does the same to
the stored v2 payloads, which keep the API's own text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from bulutfon_pipeline.jsonio import JSONObject
from bulutfon_pipeline.settings import DEFAULT_V2_FIELD_MAP

__all__ = ["DEFAULT_FIELD_MAP", "parse_field_map", "rename_v2_fields"]


def parse_field_map(text: str) -> tuple[tuple[str, str], ...]:
    """``"a=b,c=d"`` -> ``(("a", "b"), ("c", "d"))`` (malformed entries are skipped)."""
    pairs = []
    for entry in text.split(","):
        v2_name, _, v1_name = entry.partition("=")
        if v2_name.strip() and v1_name.strip():
            pairs.append((v2_name.strip(), v1_name.strip()))
    return tuple(pairs)


#: The default v2 -> v1 field names (``BULUTFON_V2_FIELD_MAP``).
DEFAULT_FIELD_MAP = parse_field_map(DEFAULT_V2_FIELD_MAP)


def rename_v2_fields(obj: Any, field_map: Iterable[tuple[str, str]] = DEFAULT_FIELD_MAP) -> Any:
    """``obj`` with each v2 field named by its v1 name; anything else comes back as is.

    A field is renamed only when the v1 name is absent, so a v1 object passes unchanged
    (the same object). A :class:`~bulutfon_pipeline.jsonio.JSONObject` keeps its
    ``text``: the payload is stored as the API sent it.
    """
    if not isinstance(obj, Mapping):
        return obj
    renames = [(a, b) for a, b in field_map if a in obj and b not in obj]
    if not renames:
        return obj
    renamed = dict(obj)
    for v2_name, v1_name in renames:
        renamed[v1_name] = renamed.pop(v2_name)
    if isinstance(obj, JSONObject):
        return JSONObject(renamed, obj.text)
    return renamed
