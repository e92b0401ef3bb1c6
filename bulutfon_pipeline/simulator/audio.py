"""Small, real audio files for call recordings: a WAV (stdlib ``wave``) and an MP3 made of
valid MPEG-1 Layer III frames of silence. Clients must sniff the format: some responses
say ``application/octet-stream``."""

from __future__ import annotations

import functools
import io
import math
import struct
import wave

__all__ = ["MP3_MAGIC", "WAV_MAGIC", "make_mp3", "make_wav", "recording_for"]

WAV_MAGIC = b"RIFF"
#: Frame sync + MPEG-1 + Layer III + no CRC.
MP3_MAGIC = b"\xff\xfb"

_SAMPLE_RATE = 8000  # telephone quality
_TONES = 16


@functools.lru_cache(maxsize=_TONES)
def make_wav(tone: int = 0, seconds: float = 0.25) -> bytes:
    """A mono 16-bit 8 kHz WAV holding a short sine tone (frequency depends on ``tone``)."""
    freq = 300 + 50 * tone
    n = int(_SAMPLE_RATE * seconds)
    samples = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * freq * i / _SAMPLE_RATE)))
        for i in range(n)
    )
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(_SAMPLE_RATE)
        w.writeframes(samples)
    return buf.getvalue()


@functools.lru_cache(maxsize=_TONES)
def make_mp3(tone: int = 0) -> bytes:
    """MPEG-1 Layer III, 32 kbit/s, 32 kHz, mono: frames of 144 bytes whose side info and
    main data are zero, which decoders play as silence. ``tone`` varies the frame count so
    recordings differ in length."""
    # byte 3: bitrate index 0001 (32 kbit/s), sample rate 10 (32 kHz), no padding
    # byte 4: channel mode 11 (mono), no copyright, original, no emphasis
    header = MP3_MAGIC + bytes([0b0001_1000, 0b1100_0100])
    frame = header + bytes(144 - len(header))
    return frame * (10 + tone)


def recording_for(call_uuid: str, fmt: str, octet_stream: bool) -> tuple[bytes, str]:
    """(bytes, Content-Type) of the recording of ``call_uuid`` in format ``wav``/``mp3``."""
    try:
        tone = int(call_uuid[:8], 16) % _TONES
    except ValueError:
        tone = sum(call_uuid.encode()) % _TONES
    if fmt == "mp3":
        body, content_type = make_mp3(tone), "audio/mpeg"
    else:
        body, content_type = make_wav(tone), "audio/wav"
    return body, "application/octet-stream" if octet_stream else content_type
