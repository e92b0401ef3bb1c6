"""The warehouse's errors, whatever the backend.

Exceptions::

    WarehouseError            any warehouse failure, one line, no secrets
     └── WarehouseLockedError another process kept the database locked too long
"""

from __future__ import annotations

import logging

__all__ = ["LOCK_WAIT_LOGGER", "WarehouseError", "WarehouseLockedError"]


class WarehouseError(Exception):
    """The warehouse could not be opened, read or written (message: one line)."""


class WarehouseLockedError(WarehouseError):
    """Another process held the DuckDB file lock for longer than ``lock_timeout_s``."""


#: Where a write waiting for another process's lock on the warehouse says so, once per
#: wait: the runner shows these lines to the user; the UI's run logs get them as warnings.
LOCK_WAIT_LOGGER = logging.getLogger("bulutfon_pipeline.warehouse.lock_wait")
