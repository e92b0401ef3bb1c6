"""The warehouse: SQLAlchemy Core schema (one source of truth), the loads' storage, views.

Plain Python, no dagster. :class:`Warehouse` (``facade.py``) is what callers hold; each
concern owns a module (``listing``, ``details``, ``rejects``, ``recordings``,
``pending``, ``changes``, ``integrity``), written over the ``backend`` protocols; everything
DuckDB-specific is in ``duckdb_backend``, everything PostgreSQL-specific in
``postgres_backend``.
"""

from bulutfon_pipeline.warehouse.details import DetailLoadResult
from bulutfon_pipeline.warehouse.errors import WarehouseError, WarehouseLockedError
from bulutfon_pipeline.warehouse.facade import Warehouse
from bulutfon_pipeline.warehouse.listing import ListingLoadResult, ListingStage
from bulutfon_pipeline.warehouse.pending import LoadProgress
from bulutfon_pipeline.warehouse.recordings import RecordingCandidate, RecordingRow
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
    "ViewDefinition",
    "Warehouse",
    "WarehouseError",
    "WarehouseLockedError",
    "metadata",
]
