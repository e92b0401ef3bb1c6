"""Fetching the PBX's directory (v1, ``shared/bulutfon-api.md`` §5): the list endpoints,
then the detail of each item, since only the detail has a group's members, a number's
working hours and an extension's DID, voice mail, forwarding and ACL.

Requests go through the client's one retry loop (:meth:`BulutfonClient.fetch_directory`).
The observation instant is the first answer's ``Date`` header (the API's clock), else the
local clock. A detail that answers 404 (an item deleted between the list and the detail)
is left out and named in :attr:`DirectoryFetch.missing`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from bulutfon_pipeline.api.core import JsonRequest
from bulutfon_pipeline.api.errors import InvalidResponseError, NotFoundError
from bulutfon_pipeline.api.retry import Outcome

__all__ = ["DIRECTORY_COLLECTIONS", "DirectoryFetch", "fetch_directory"]

T = TypeVar("T")

#: path -> (the list body's key, the detail body's key)
DIRECTORY_COLLECTIONS: dict[str, tuple[str, str]] = {
    "extensions": ("extensions", "extension"),
    "groups": ("groups", "group"),
    "dids": ("dids", "did"),
}


@dataclass(frozen=True)
class DirectoryFetch:
    """What one fetch of the directory read.

    Attributes:
        items: collection (``extensions``, ``groups``, ``dids``) -> each item of the list,
            updated with its detail object (the detail's fields win).
        observed_at: the instant the API said it answered (``Date`` of the first answer),
            or the local clock when it sent none.
        missing: collection -> the ids whose detail answered 404.
        requests: the requests made (one per list and per detail, retries not counted).
    """

    items: dict[str, list[dict[str, Any]]]
    observed_at: dt.datetime
    missing: dict[str, list[str]] = field(default_factory=dict)
    requests: int = 0


@dataclass(frozen=True)
class _Dated(JsonRequest[T]):
    """A JSON GET whose value comes back with the answer's ``Date`` header."""

    def outcome(self, response: httpx.Response) -> Outcome:
        outcome = super().outcome(response)
        if outcome.ok:
            outcome = dataclasses.replace(
                outcome, value=(outcome.value, response.headers.get("date"))
            )
        return outcome


def _member(key: str, kind: type) -> Callable[[Any], Any]:
    def parse(data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get(key), kind):
            what = "list" if kind is list else "object"
            raise InvalidResponseError(f"Directory body has no '{key}' {what}", status=200)
        return data[key]

    return parse


def _instant(header: str | None) -> dt.datetime | None:
    if not header:
        return None
    try:
        return email.utils.parsedate_to_datetime(header).astimezone(dt.UTC)
    except (TypeError, ValueError):
        return None


def fetch_directory(
    get_json: Callable[[JsonRequest[Any]], Any],
    api_url: str,
    *,
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
) -> DirectoryFetch:
    """Fetch every collection's list, then each item's detail, with ``get_json`` (the
    client's retrying GET).

    Raises:
        InvalidResponseError: a list or a detail body without its member, after retries.
        AuthError, RateLimitedError, ServerError, TransportError, ConfigError: as for
            every request. A detail's 404 is not raised (see :attr:`DirectoryFetch.missing`).
    """
    items: dict[str, list[dict[str, Any]]] = {}
    missing: dict[str, list[str]] = {}
    observed: dt.datetime | None = None
    requests = 0
    for path, (list_key, detail_key) in DIRECTORY_COLLECTIONS.items():
        listed, date = get_json(_Dated(f"{api_url}/{path}", None, _member(list_key, list)))
        requests += 1
        observed = observed or _instant(date)
        merged: list[dict[str, Any]] = []
        for item in listed:
            item_id = item.get("id") if isinstance(item, dict) else None
            if item_id is None or isinstance(item_id, dict | list | bool):
                merged.append(item)  # the loader rejects it, with its reason
                continue
            url = f"{api_url}/{path}/{quote(str(item_id), safe='')}"
            requests += 1
            try:
                detail, _ = get_json(_Dated(url, None, _member(detail_key, dict)))
            except NotFoundError:
                missing.setdefault(path, []).append(str(item_id))
                continue
            merged.append({**item, **detail})
        items[path] = merged
    return DirectoryFetch(items, observed or clock(), missing, requests)
