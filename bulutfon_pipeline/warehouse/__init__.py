"""The DuckDB warehouse: SQLAlchemy Core schema (one source of truth), loader, views.

Plain Python, no dagster.
"""

from bulutfon_pipeline.warehouse.loader import (
    DetailLoadResult,
    ListingLoadResult,
    ListingStage,
    LoadProgress,
    RecordingCandidate,
    RecordingRow,
    ReplayResult,
    Warehouse,
    WarehouseError,
    WarehouseLockedError,
)
from bulutfon_pipeline.warehouse.schema import metadata
from bulutfon_pipeline.warehouse.views import VIEWS, ViewDefinition

__all__ = [
    "VIEWS",
    "DetailLoadResult",
    "ListingLoadResult",
    "ListingStage",
    "LoadProgress",
    "RecordingCandidate",
    "RecordingRow",
    "ReplayResult",
    "ViewDefinition",
    "Warehouse",
    "WarehouseError",
    "WarehouseLockedError",
    "metadata",
]
