"""Recognise a recording's audio format (the API does not document its content type)."""

from __future__ import annotations

__all__ = ["MAGIC_BYTES_NEEDED", "detect_audio_format"]

#: How many leading bytes :func:`detect_audio_format` looks at.
MAGIC_BYTES_NEEDED = 12

_CONTENT_TYPES = {
    "audio/wav": "wav",
    "audio/wave": "wav",
    "audio/x-wav": "wav",
    "audio/vnd.wave": "wav",
    "audio/ogg": "ogg",
    "application/ogg": "ogg",
    "audio/opus": "ogg",
    "audio/vorbis": "ogg",
    "audio/mpeg": "mp3",
    "audio/mp3": "mp3",
    "audio/mpeg3": "mp3",
    "audio/x-mpeg-3": "mp3",
}


def detect_audio_format(head: bytes, content_type: str | None) -> str | None:
    """The file extension (``wav``, ``ogg``, ``mp3``) for a recording, or ``None``.

    Magic bytes win, because servers label audio ``application/octet-stream`` or even
    wrongly; the ``Content-Type`` is the fallback.

    Args:
        head: the first bytes of the body (at least :data:`MAGIC_BYTES_NEEDED`).
        content_type: the response's ``Content-Type`` header, if any.
    """
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"OggS":
        return "ogg"
    # An ID3v2 tag, or an MPEG audio frame: 11 sync bits set (0xFF then 0b111xxxxx).
    if head[:3] == b"ID3" or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "mp3"
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    return _CONTENT_TYPES.get(media_type)
