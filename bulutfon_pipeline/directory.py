"""Loading the PBX's directory: fetch (``api.directory``), normalize
(``normalize.directory``) and merge its versions (``warehouse.directory``), for one account.

The ``extensions``, ``ring_groups``, ``ring_group_members`` and ``phone_numbers`` assets
run :func:`load_directory`; every ``sync`` runs them. The v2 API's directory endpoints
are not public: on v2 the directory is skipped (one info line), nothing is written.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bulutfon_pipeline import account_threads
from bulutfon_pipeline.api import BulutfonClient
from bulutfon_pipeline.normalize.directory import normalize_directory
from bulutfon_pipeline.warehouse import Warehouse
from bulutfon_pipeline.warehouse.directory import DirectoryObservation

__all__ = ["DIRECTORY_ASSETS", "DirectoryLoadSummary", "load_directory"]

LOGGER = logging.getLogger(__name__)

#: The directory's assets (one load writes them all, ``phone_number_hours`` with
#: ``phone_numbers``), in the order of ``schema.DIRECTORY_TABLES``.
DIRECTORY_ASSETS = ("extensions", "ring_groups", "ring_group_members", "phone_numbers")
#: fetch collection -> the table whose versions an unreadable item keeps
_KEPT = {"extensions": "extensions", "groups": "ring_groups", "dids": "phone_numbers"}


@dataclass
class DirectoryLoadSummary:
    """What one directory load did (the assets' metadata; ``skipped`` on v2)."""

    requests: int = 0
    opened: dict[str, int] = field(default_factory=dict)
    closed: dict[str, int] = field(default_factory=dict)
    unchanged: dict[str, int] = field(default_factory=dict)
    rejected: int = 0
    first_load: bool = False
    observed_at: str = ""
    skipped: bool = False
    seconds: float = 0.0

    @property
    def writes(self) -> int:
        """Versions opened plus closed (0: nothing had changed)."""
        return sum(self.opened.values()) + sum(self.closed.values())

    def to_metadata(self) -> dict[str, Any]:
        """Plain values for the assets' metadata (the only place naming its keys)."""
        meta: dict[str, Any] = {
            "directory_requests": self.requests,
            "rejected": self.rejected,
            "first_load": self.first_load,
            "observed_at": self.observed_at,
            "skipped": self.skipped,
            "duration_s": round(self.seconds, 3),
        }
        for name in DIRECTORY_ASSETS:
            meta[f"{name}_opened"] = self.opened.get(name, 0)
            meta[f"{name}_closed"] = self.closed.get(name, 0)
            meta[f"{name}_unchanged"] = self.unchanged.get(name, 0)
        return meta

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any]) -> DirectoryLoadSummary:
        """The summary back from :meth:`to_metadata`'s values."""

        def counts(what: str) -> dict[str, int]:
            return {name: int(meta.get(f"{name}_{what}", 0)) for name in DIRECTORY_ASSETS}

        return cls(
            requests=int(meta.get("directory_requests", 0)),
            opened=counts("opened"),
            closed=counts("closed"),
            unchanged=counts("unchanged"),
            rejected=int(meta.get("rejected", 0)),
            first_load=bool(meta.get("first_load", False)),
            observed_at=str(meta.get("observed_at", "")),
            skipped=bool(meta.get("skipped", False)),
            seconds=float(meta.get("duration_s", 0.0)),
        )


def load_directory(client: BulutfonClient, warehouse: Warehouse) -> DirectoryLoadSummary:
    """Fetch ``warehouse.account``'s directory through ``client`` and merge it into the
    directory tables in one transaction (bad items go to ``load_rejects``, stage
    ``directory``); on v2, skip it.

    Raises:
        BulutfonError: a list or a detail could not be fetched (nothing is written).
        WarehouseError: the database failed (nothing is written).
    """
    started = time.monotonic()
    if client.config.is_v2:
        LOGGER.info("directory of %s skipped: the v2 API's directory is not public",
                    warehouse.account)  # fmt: skip
        return DirectoryLoadSummary(skipped=True)
    fetched = client.fetch_directory()
    normalized = normalize_directory(fetched.items)
    unreadable = {table: set(ids) for table, ids in normalized.unreadable.items()}
    for collection, ids in fetched.missing.items():
        unreadable.setdefault(_KEPT[collection], set()).update(ids)
    observation = DirectoryObservation(
        warehouse.account, normalized.tables, fetched.observed_at, unreadable, normalized.rejects
    )
    # Accounts loading in threads into one DuckDB file take turns, and merge together.
    merged = account_threads.write_in_turn(
        warehouse.is_server,
        f"directories into {warehouse.location}",
        observation,
        warehouse.merge_directories,
    )
    return DirectoryLoadSummary(
        requests=fetched.requests,
        opened=merged.opened,
        closed=merged.closed,
        unchanged=merged.unchanged,
        rejected=merged.rejected,
        first_load=merged.first_load,
        observed_at=fetched.observed_at.isoformat(),
        seconds=time.monotonic() - started,
    )
