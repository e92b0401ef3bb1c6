"""The listing's paging, with no I/O: which page to ask for next, and when to stop.

As dlt's ``rest_api`` paginators do, :class:`ListingPaginator` keeps the stop condition
out of the HTTP loop, which only asks :attr:`ListingPaginator.has_next_page` and
:meth:`ListingPaginator.params` and hands each parsed body back to
:meth:`ListingPaginator.accept`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bulutfon_pipeline.api.errors import InvalidResponseError
from bulutfon_pipeline.api.models import ListingPage

__all__ = ["ListingPaginator", "parse_listing"]


def parse_listing(data: Any) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """A listing body's items and its ``pagination`` object (None when absent)."""
    if not isinstance(data, dict) or not isinstance(data.get("cdrs"), list):
        raise InvalidResponseError("Listing body has no 'cdrs' list", status=200)
    items = data["cdrs"]
    if not all(isinstance(item, dict) for item in items):
        raise InvalidResponseError("Listing 'cdrs' holds a non-object item", status=200)
    pagination = data.get("pagination")
    return items, pagination if isinstance(pagination, dict) else None


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


class ListingPaginator:
    """Where one listing scan goes next: the page's query parameters, and when to stop.

    :meth:`accept` also drops uuids already seen in this scan (the list is live: calls
    that end meanwhile push items onto later pages).
    """

    def __init__(
        self,
        limit: int,
        filters: Mapping[str, Any] | None = None,
        *,
        page_param: str = "page",
        limit_param: str = "limit",
    ) -> None:
        self.limit = limit
        self.filters = dict(filters or {})
        self.page_param = page_param
        self.limit_param = limit_param
        self.page = 1
        self.has_next_page = True
        self.seen: set[str] = set()

    def params(self) -> dict[str, Any]:
        """The query parameters of the next page (we build its URL ourselves: the API's
        ``next_page`` drops ``limit`` and the token)."""
        params: dict[str, Any] = dict(self.filters)
        params[self.page_param] = self.page
        params[self.limit_param] = self.limit
        return params

    def accept(self, body: tuple[list[dict[str, Any]], dict[str, Any] | None]) -> ListingPage:
        """The page to yield for a parsed body; decides whether another page follows."""
        items, pagination = body
        fresh: list[dict[str, Any]] = []
        duplicates = 0
        for item in items:
            uuid = item.get("uuid")
            if uuid is None:  # no key to dedupe on; normalize will reject it
                fresh.append(item)
                continue
            key = str(uuid)
            if key in self.seen:  # pushed onto this page by calls that ended meanwhile
                duplicates += 1
                continue
            self.seen.add(key)
            fresh.append(item)
        total_pages = _int_or_none(pagination.get("total_pages")) if pagination else None
        total_count = _int_or_none(pagination.get("total_count")) if pagination else None
        page = ListingPage(self.page, fresh, total_pages, total_count, duplicates)
        self.has_next_page = (
            pagination is not None  # no pagination object: a single page
            and not ("next_page" in pagination and not pagination["next_page"])
            and not (total_pages is not None and self.page >= total_pages)
            and ("next_page" in pagination or total_pages is not None)
            and bool(items)  # an empty page never leads anywhere; avoid looping
        )
        self.page += 1
        return page
