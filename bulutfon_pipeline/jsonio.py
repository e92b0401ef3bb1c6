"""Strict, fast JSON for the API bodies and the stored payloads (msgspec).

Python's ``json`` accepts ``NaN``/``Infinity``, numbers that overflow a double (as
``inf``) and lone UTF-16 surrogates (``"\\ud800"``). None of them is valid JSON text
(RFC 8259), and DuckDB's JSON type or its UTF-8 strings refuse each of them, which
failed a whole batch instead of rejecting one call. msgspec refuses all of them, keeps
integers of any size exact, and decodes about 2.7x faster than ``json`` (the call
details were 12 % of the load's CPU; ``benchmarks/ANALYSIS.md``).
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["JSONDecodeError", "JSONObject", "decode", "decode_keeping_text", "encode_text"]

#: What :func:`decode` raises; a ``ValueError``.
JSONDecodeError = msgspec.DecodeError

_DECODER = msgspec.json.Decoder()
_MEMBERS = msgspec.json.Decoder(dict[str, msgspec.Raw])
_ENCODER = msgspec.json.Encoder()
_BOM = b"\xef\xbb\xbf"


class JSONObject(dict[str, Any]):
    """A decoded JSON object that keeps its exact JSON text (``text``), so the loader
    stores a call's detail as received instead of encoding it again (that encoding was
    5 % of a load's CPU)."""

    __slots__ = ("text",)

    def __init__(self, value: dict[str, Any], text: str) -> None:
        super().__init__(value)
        self.text = text


def decode(body: bytes | str) -> Any:
    """The value of the JSON text ``body`` (a UTF-8 byte order mark is allowed).

    Raises:
        JSONDecodeError: ``body`` is not valid JSON (including ``NaN``, ``Infinity``,
            a number beyond a double's range and a lone surrogate).
    """
    return _DECODER.decode(_bytes(body))


def decode_keeping_text(body: bytes | str, key: str) -> Any:
    """:func:`decode`, except that the top-level member ``key``, when it is an object,
    comes back as a :class:`JSONObject` holding its exact text.

    Raises:
        JSONDecodeError: as :func:`decode`.
    """
    body = _bytes(body)
    try:
        members = _MEMBERS.decode(body)
    except msgspec.ValidationError:  # valid JSON, but not an object
        return _DECODER.decode(body)
    out: dict[str, Any] = {}
    for name, raw in members.items():
        value = _DECODER.decode(raw)
        if name == key and type(value) is dict:
            value = JSONObject(value, bytes(raw).decode("utf-8"))
        out[name] = value
    return out


def _bytes(body: bytes | str) -> bytes:
    """``body`` as UTF-8 bytes without a byte order mark."""
    if isinstance(body, str):
        try:
            body = body.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate
            raise JSONDecodeError(f"not UTF-8 text: {exc.reason}") from None
    return body[len(_BOM) :] if body.startswith(_BOM) else body


def encode_text(value: Any) -> str:
    """``value`` as compact JSON text, non-ASCII characters as they are.

    msgspec writes a set or tuple as an array and a non-finite float as ``null``; the
    pipeline only encodes what :func:`decode` produced, which holds neither.

    Raises:
        TypeError: ``value`` holds an object JSON has no form for.
    """
    return _ENCODER.encode(value).decode("utf-8")
