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

__all__ = ["JSONDecodeError", "decode", "encode_text"]

#: What :func:`decode` raises; a ``ValueError``.
JSONDecodeError = msgspec.DecodeError

_DECODER = msgspec.json.Decoder()
_ENCODER = msgspec.json.Encoder()
_BOM = b"\xef\xbb\xbf"


def decode(body: bytes | str) -> Any:
    """The value of the JSON text ``body`` (a UTF-8 byte order mark is allowed).

    Raises:
        JSONDecodeError: ``body`` is not valid JSON (including ``NaN``, ``Infinity``,
            a number beyond a double's range and a lone surrogate).
    """
    if isinstance(body, str):
        try:
            body = body.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate
            raise JSONDecodeError(f"not UTF-8 text: {exc.reason}") from None
    if body.startswith(_BOM):
        body = body[len(_BOM) :]
    return _DECODER.decode(body)


def encode_text(value: Any) -> str:
    """``value`` as compact JSON text, non-ASCII characters as they are.

    Raises:
        TypeError: ``value`` holds something JSON cannot (a set, an object).
        msgspec.EncodeError: a float that is not finite.
    """
    return _ENCODER.encode(value).decode("utf-8")
