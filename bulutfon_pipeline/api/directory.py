"""Fetching the PBX's directory (v1, ``shared/bulutfon-api.md`` §5): the list endpoints,
then the detail of each item, since only the detail has a group's members, a number's
working hours and an extension's DID, voice mail, forwarding and ACL.

The lists go through the client's retry loop, the details through its fan-out, all at
once under its flow control (:meth:`BulutfonClient.fetch_directory`).
The observation instant is the first answer's ``Date`` header (the API's clock), else the
local clock. A detail that answers 404 (an item deleted between the list and the detail)
is left out and named in :attr:`DirectoryFetch.missing`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from bulutfon_pipeline.api.core import JsonRequest
from bulutfon_pipeline.api.errors import BulutfonError, InvalidResponseError, NotFoundError
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


GetMany = Callable[
    [Iterable[tuple[str, JsonRequest[Any]]]], Iterator[tuple[str, Any, BulutfonError | None]]
]


def fetch_directory(
    get_json: Callable[[JsonRequest[Any]], Any],
    get_many: GetMany,
    api_url: str,
    *,
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
) -> DirectoryFetch:
    """Fetch every collection's list with ``get_json`` (the client's retrying GET), then
    every item's detail at once with ``get_many`` (the client's fan-out, under its flow
    control).

    Raises:
        InvalidResponseError: a list or a detail body without its member, after retries.
        AuthError, RateLimitedError, ServerError, TransportError, ConfigError: as for
            every request. A detail's 404 is not raised (see :attr:`DirectoryFetch.missing`).
    """
    listed: dict[str, list[Any]] = {}
    details: list[tuple[str, JsonRequest[Any]]] = []
    observed: dt.datetime | None = None
    for path, (list_key, detail_key) in DIRECTORY_COLLECTIONS.items():
        items, date = get_json(_Dated(f"{api_url}/{path}", None, _member(list_key, list)))
        observed = observed or _instant(date)
        listed[path] = items
        for item in items:
            item_id = item.get("id") if isinstance(item, dict) else None
            if item_id is None or isinstance(item_id, dict | list | bool):
                continue  # the loader rejects it, with its reason
            url = f"{api_url}/{path}/{quote(str(item_id), safe='')}"
            details.append((f"{path}/{item_id}", _Dated(url, None, _member(detail_key, dict))))
    found: dict[str, dict[str, Any]] = {}
    missing: dict[str, list[str]] = {}
    failed: BulutfonError | None = None
    for key, value, error in get_many(details):
        if isinstance(error, NotFoundError):
            path, _, item_id = key.partition("/")
            missing.setdefault(path, []).append(item_id)
        elif error is not None:
            failed = failed or error
        else:
            found[key] = value[0]
    if failed is not None:
        raise failed
    items_out: dict[str, list[dict[str, Any]]] = {}
    for path, items in listed.items():
        merged = []
        for item in items:
            key = f"{path}/{item.get('id')}" if isinstance(item, dict) else ""
            if key in found:
                merged.append({**item, **found[key]})
            elif key.partition("/")[2] not in missing.get(path, []):
                merged.append(item)  # no usable id: the loader rejects it
        items_out[path] = merged
    requests = len(listed) + len(details)
    return DirectoryFetch(items_out, observed or clock(), missing, requests)
