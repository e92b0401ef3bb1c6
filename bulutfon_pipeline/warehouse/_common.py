"""Small helpers the warehouse's concern modules share."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["utc"]


def utc(instant: datetime, what: str) -> datetime:
    """``instant`` in UTC.

    Raises:
        ValueError: ``instant`` is naive (``what`` names it in the message).
    """
    if instant.tzinfo is None:
        raise ValueError(f"{what} must be timezone-aware, got {instant!r}")
    return instant.astimezone(UTC)
