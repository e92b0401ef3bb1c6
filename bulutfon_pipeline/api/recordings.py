"""Recordings: one download attempt, and the audio format (the API documents neither).

:class:`RecordingAttempt` is everything a download does except the I/O: it streams a 200's
body into a temp file next to its destination (never held in memory), hashes it,
detects the format from magic bytes or ``Content-Type``, and renames it atomically into
place; any other answer becomes an :class:`~bulutfon_pipeline.api.retry.Outcome` for the
retry loop. Each client flavour feeds it a response and its chunks.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import httpx

from bulutfon_pipeline.api.core import AttemptOutcome, evaluate
from bulutfon_pipeline.api.errors import InvalidResponseError
from bulutfon_pipeline.api.errors import body_excerpt as make_excerpt
from bulutfon_pipeline.api.models import RecordingFile
from bulutfon_pipeline.api.redact import redact
from bulutfon_pipeline.api.retry import Outcome

__all__ = ["AUDIO_ACCEPT", "MAGIC_BYTES_NEEDED", "RecordingAttempt", "detect_audio_format"]

#: The ``Accept`` header of a recording request.
AUDIO_ACCEPT = {"Accept": "audio/*, application/octet-stream;q=0.9, */*;q=0.5"}

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


class _TempAudio:
    """A recording being streamed into a temp file next to its destination."""

    def __init__(self, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        self.dest = dest
        self.tmp = Path(tmp)
        self.file = os.fdopen(fd, "wb")
        self.sha = hashlib.sha256()
        self.size = 0
        self.head = b""

    def write(self, chunk: bytes) -> None:
        if len(self.head) < MAGIC_BYTES_NEEDED:
            self.head += chunk[: MAGIC_BYTES_NEEDED - len(self.head)]
        self.file.write(chunk)
        self.sha.update(chunk)
        self.size += len(chunk)

    def finish(self, content_type: str | None, url: str) -> Outcome:
        """fsync, detect the format, rename to ``<dest>.<ext>``."""
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        ext = detect_audio_format(self.head, content_type) if self.size else None
        if ext is None:
            invalid = InvalidResponseError(
                f"GET {redact(url)} answered 200 with {self.size} bytes of "
                f"unrecognised content ({content_type or 'no Content-Type'})",
                status=200,
                body_excerpt=make_excerpt(self.head) if content_type else "",
                url=url,
            )
            return Outcome(status=200, url=url, invalid=invalid)
        final = Path(f"{self.dest}.{ext}")
        os.replace(self.tmp, final)
        return Outcome(
            value=RecordingFile(final, content_type, self.size, self.sha.hexdigest()),
            status=200,
            url=url,
        )

    def discard(self) -> None:
        if not self.file.closed:
            self.file.close()
        self.tmp.unlink(missing_ok=True)


def _as_sent(data: Any) -> Any:
    return data


class RecordingAttempt(AttemptOutcome):
    """One attempt at downloading a recording to ``<dest>.<wav|ogg|mp3>``, minus the I/O.

    Used as ``with RecordingAttempt(url, dest) as attempt:`` around the streamed GET:
    :meth:`begin` with the response, :meth:`write` each chunk, :meth:`end`; then
    :attr:`outcome` holds the :class:`RecordingFile` or the failure. A temp file that
    was not renamed into place is deleted on the way out, whatever happened.
    """

    def __init__(self, url: str, dest: Path) -> None:
        super().__init__(url)
        self.dest = dest
        self._response: httpx.Response | None = None
        self._audio: _TempAudio | None = None
        self._other = bytearray()  # the body of any answer but a 200

    def begin(self, response: httpx.Response) -> None:
        """The response's headers have arrived; its body follows through :meth:`write`."""
        self._response = response
        if response.status_code == 200:
            self._audio = _TempAudio(self.dest)

    def write(self, chunk: bytes) -> None:
        if self._audio is not None:
            self._audio.write(chunk)
        else:
            self._other += chunk

    def end(self) -> None:
        """The body is complete: judge it."""
        response = self._response
        if response is None:
            raise RuntimeError("RecordingAttempt.end() before begin()")
        if self._audio is None:
            self.outcome = evaluate(
                response.status_code, response.headers, bytes(self._other), self.url, _as_sent
            )
            return
        self.outcome = self._audio.finish(response.headers.get("Content-Type"), self.url)
        if self.outcome.ok:
            self._audio = None  # renamed into place: nothing to clean up

    def _release(self) -> None:
        if self._audio is not None:
            self._audio.discard()
