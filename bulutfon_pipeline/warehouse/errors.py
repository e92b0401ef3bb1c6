"""The warehouse's errors, whatever the backend.

Exceptions::

    WarehouseError            any warehouse failure, one line, no secrets
     └── WarehouseLockedError another process kept the database locked too long
"""

from __future__ import annotations

__all__ = ["WarehouseError", "WarehouseLockedError"]


class WarehouseError(Exception):
    """The warehouse could not be opened, read or written (message: one line)."""


class WarehouseLockedError(WarehouseError):
    """Another process held the DuckDB file lock for longer than ``lock_timeout_s``."""
