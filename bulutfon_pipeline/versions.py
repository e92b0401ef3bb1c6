"""What the loads ask of the API client, by API version (plain Python, no dagster).

v1 (and the seed document's paths) lists calls newest first with no date filter, so the
scan pages back until it reaches what it holds, and fetches a detail by uuid alone. The
v2 API (``BULUTFON_API_VERSION=v2``, README "API v2") filters the listing by time and
puts the call's local date in a detail's path; a client says so with its
``filters_listing_by_time`` and ``details_need_call_date`` properties
(:class:`~bulutfon_pipeline.api.client.BulutfonClient`'s). A client without them (a
test's fake, say) is taken for v1.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from bulutfon_pipeline.warehouse import Warehouse

__all__ = ["listing_pages", "pending_details"]


def listing_pages(client: Any, *, since: dt.datetime) -> Iterable[Any]:
    """The client's listing pages: on v2 only the calls from ``since`` on (the scan's
    mark minus its lookback), on v1 all of them, newest first (the scan stops paging)."""
    if getattr(client, "filters_listing_by_time", False):
        pages: Iterable[Any] = client.iter_listing_pages(since=since)
        return pages
    pages = client.iter_listing_pages()
    return pages


def pending_details(
    client: Any, warehouse: Warehouse, start: dt.date, end: dt.date, *, refetch: bool
) -> list[str] | list[tuple[str, dt.date]]:
    """The listed calls of local days ``start..end`` whose detail to fetch (see
    :meth:`Warehouse.pending_uuids`): uuids, or on v2 ``(uuid, local date)`` pairs.

    v2's pairs are read day by day: only the days with pending calls, or every day of the
    range with ``refetch``.
    """
    if not getattr(client, "details_need_call_date", False):
        return warehouse.pending_uuids(start, end, refetch=refetch)
    if refetch:
        days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    else:
        days = [day for day in warehouse.pending_dates() if start <= day <= end]
    return [
        (uuid, day) for day in days for uuid in warehouse.pending_uuids(day, day, refetch=refetch)
    ]
