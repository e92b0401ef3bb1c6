"""Pure normalisation: raw Bulutfon CDR payloads -> typed pandas DataFrames + rejects.

No I/O and no dagster. Both API dialects (the seed document's Turkish labels and local
times, and the later v1 codes with ISO-8601 offsets) map onto the canonical vocabulary
of ``docs/architecture.md``.

Speed matters (a benchmark normalises ~1M rows): records are flattened with plain
Python loops into row tuples, labels are mapped through per-distinct-value dicts, and
every time value of a batch is parsed in one vectorised pass over its distinct strings.

A record that cannot be normalised becomes one :class:`Reject` and contributes no row
to any frame (all or nothing per call). Bad data never raises.

Modules, each importing only those above it:

* :mod:`.records`: :class:`Reject`, the bad-record error and the scalar field readers;
* :mod:`.vocabulary`: seed labels and v1 codes -> the canonical codes;
* :mod:`.times`: time strings of every dialect -> UTC instants, time-derived columns;
* :mod:`.frames`: column orders, result dataclasses and frame dtypes, column builders;
* :mod:`.listing`: :func:`normalize_listing`;
* :mod:`.details`: :func:`normalize_details`.
"""

from bulutfon_pipeline.normalize.details import normalize_details
from bulutfon_pipeline.normalize.frames import (
    CALL_FLOW_STEP_COLUMNS,
    CDR_COLUMNS,
    LISTING_COLUMNS,
    ORIGINATION_COLUMNS,
    NormalizedDetails,
    NormalizedListing,
)
from bulutfon_pipeline.normalize.listing import normalize_listing
from bulutfon_pipeline.normalize.records import Reject
from bulutfon_pipeline.normalize.times import parse_api_time

__all__ = [
    "CALL_FLOW_STEP_COLUMNS",
    "CDR_COLUMNS",
    "LISTING_COLUMNS",
    "ORIGINATION_COLUMNS",
    "NormalizedDetails",
    "NormalizedListing",
    "Reject",
    "normalize_details",
    "normalize_listing",
    "parse_api_time",
]
