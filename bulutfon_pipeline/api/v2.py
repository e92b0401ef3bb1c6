"""The v2 API's request and response shapes, with no I/O (README "API v2").

What is public (section 7 of ``bulutfon-api.md``): the ``/v2/`` base, the ``apikey`` sent
as a header or a query parameter, ``GET /v2/cdr/list?page&limit`` answering
``{"data": [...], "pagination": {..., "total_pages": N}}``, the detail at
``/v2/cdr/{YYYY}/{MM}/{DD}/{uuid}``, ``call_record`` being ``"NO"`` or the recording's URL,
and ``field[op]=value`` filters. Everything else is inferred and configurable
(:class:`~bulutfon_pipeline.api.config.ClientConfig`'s ``v2_*`` fields): the detail's body
``{"data": {...}}``, the items being v1's (ISO-8601 times with an offset, English codes)
but for the names of ``v2_field_map`` (by default ``caller_extension`` for ``extension``),
which :func:`rename_v2_fields` gives their v1 names so that the normaliser reads v2 as
v1 (``call_record``'s URL counts as a recording there), and the listing's time filter.

The key goes in a header by default: a query parameter ends up in the access logs of
every proxy and server on the way. In either form it is sent only to the API's own origin
(:class:`ApiKeyAuth`, and :func:`strip_key_off_origin` on each redirect hop), so a
recording URL or a redirect to another host never receives it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Generator, Iterable, Mapping
from typing import Any

import httpx

from bulutfon_pipeline.api.config import ClientConfig
from bulutfon_pipeline.api.errors import InvalidResponseError, NotFoundError
from bulutfon_pipeline.jsonio import JSONObject
from bulutfon_pipeline.settings import DEFAULT_V2_FIELD_MAP, LOCAL_TZ

__all__ = [
    "DEFAULT_FIELD_MAP",
    "ApiKeyAuth",
    "call_date_lookup",
    "call_date_of",
    "parse_field_map",
    "recording_location",
    "rename_v2_fields",
    "since_filter",
    "strip_key_off_origin",
    "v2_detail_parser",
    "v2_listing_parser",
]

ListingBody = tuple[list[dict[str, Any]], dict[str, Any] | None]


def parse_field_map(text: str) -> tuple[tuple[str, str], ...]:
    """``"a=b,c=d"`` -> ``(("a", "b"), ("c", "d"))`` (malformed entries are skipped)."""
    pairs = []
    for entry in text.split(","):
        v2_name, _, v1_name = entry.partition("=")
        if v2_name.strip() and v1_name.strip():
            pairs.append((v2_name.strip(), v1_name.strip()))
    return tuple(pairs)


#: The default v2 -> v1 field names (``BULUTFON_V2_FIELD_MAP``).
DEFAULT_FIELD_MAP = parse_field_map(DEFAULT_V2_FIELD_MAP)


def rename_v2_fields(obj: Any, field_map: Iterable[tuple[str, str]] = DEFAULT_FIELD_MAP) -> Any:
    """``obj`` with each v2 field named by its v1 name, for the normaliser; anything else
    comes back as is.

    A field is renamed only when the v1 name is absent, so a v1 object passes unchanged
    (the same object). A :class:`~bulutfon_pipeline.jsonio.JSONObject` keeps its
    ``text``: the payload is stored as the API sent it (and
    :mod:`bulutfon_pipeline.replay` renames it again when it reads it back).
    """
    if not isinstance(obj, Mapping):
        return obj
    renames = [(a, b) for a, b in field_map if a in obj and b not in obj]
    if not renames:
        return obj
    renamed = dict(obj)
    for v2_name, v1_name in renames:
        renamed[v1_name] = renamed.pop(v2_name)
    if isinstance(obj, JSONObject):
        return JSONObject(renamed, obj.text)
    return renamed


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return (url.scheme, url.host, url.port)


class ApiKeyAuth(httpx.Auth):
    """httpx auth flow: the API key as the ``v2_key_name`` header (or query parameter),
    on requests to the API's own origin only."""

    def __init__(self, config: ClientConfig) -> None:
        if not config.api_key:
            raise ValueError("ApiKeyAuth needs an API key")
        self._key = config.api_key
        self._name = config.v2_key_name
        self._in_query = config.v2_auth == "query"
        self._origin = _origin(httpx.URL(config.api_url))

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if _origin(request.url) == self._origin:
            if self._in_query:
                request.url = request.url.copy_set_param(self._name, self._key)
            else:
                request.headers[self._name] = self._key
        yield request


def strip_key_off_origin(config: ClientConfig) -> Callable[[httpx.Request], None]:
    """A request hook removing the key from a request (a redirect hop) that leaves the
    API's origin: httpx carries every header but ``Authorization`` across origins."""
    origin = _origin(httpx.URL(config.api_url))
    name = config.v2_key_name

    def hook(request: httpx.Request) -> None:
        if _origin(request.url) != origin:
            request.headers.pop(name, None)
            if name in request.url.params:
                request.url = request.url.copy_remove_param(name)

    return hook


def since_filter(config: ClientConfig, since: dt.datetime | None) -> dict[str, str]:
    """The listing's ``field[op]=value`` filter for calls at or after ``since`` (local
    ISO-8601 with its offset), or nothing when the filter is off or ``since`` is None."""
    if since is None or not config.v2_time_field:
        return {}
    value = since.astimezone(LOCAL_TZ).isoformat(timespec="seconds")
    return {f"{config.v2_time_field}[{config.v2_time_op}]": value}


def v2_listing_parser(config: ClientConfig) -> Callable[[Any], ListingBody]:
    """The parser of a v2 listing body: its items (renamed to v1's field names) and its
    pagination object (None when absent)."""
    key, pagination_key, fields = config.v2_data_key, config.v2_pagination_key, config.v2_renames

    def parse(data: Any) -> ListingBody:
        if not isinstance(data, dict) or not isinstance(data.get(key), list):
            raise InvalidResponseError(f"Listing body has no '{key}' list", status=200)
        items = data[key]
        if not all(isinstance(item, dict) for item in items):
            raise InvalidResponseError(f"Listing '{key}' holds a non-object item", status=200)
        pagination = data.get(pagination_key)
        renamed = [rename_v2_fields(item, fields) for item in items]
        return renamed, pagination if isinstance(pagination, dict) else None

    return parse


def v2_detail_parser(config: ClientConfig) -> Callable[[Any], dict[str, Any]]:
    """The parser of a v2 detail body: the call object, renamed to v1's field names (a
    :class:`~bulutfon_pipeline.jsonio.JSONObject` keeps the text the API sent)."""
    key, fields = config.v2_data_key, config.v2_renames

    def parse(data: Any) -> dict[str, Any]:
        if not isinstance(data, dict) or not isinstance(data.get(key), dict):
            raise InvalidResponseError(f"Detail body has no '{key}' object", status=200)
        cdr: dict[str, Any] = rename_v2_fields(data[key], fields)
        return cdr

    return parse


def call_date_of(item: dict[str, Any]) -> dt.date:
    """The local (Europe/Istanbul) date of a v2 listing item's ``call_time``.

    Raises:
        InvalidResponseError: no ISO-8601 ``call_time``.
    """
    raw = item.get("call_time")
    try:
        instant = dt.datetime.fromisoformat(str(raw))
    except ValueError:
        raise InvalidResponseError(f"call_time is not ISO-8601: {raw!r}", status=200) from None
    if instant.tzinfo is None:  # times without an offset are local (bulutfon-api.md)
        instant = instant.replace(tzinfo=LOCAL_TZ)
    return instant.astimezone(LOCAL_TZ).date()


def call_date_lookup(
    config: ClientConfig, uuid: str
) -> tuple[dict[str, Any], Callable[[Any], dt.date]]:
    """The query and the parser of a listing request that finds ``uuid``'s local date
    (``uuid[eq]=...``), for a detail asked for without it.

    The parser raises :class:`NotFoundError` when the listing does not hold the call.
    """
    params: dict[str, Any] = {
        "uuid[eq]": uuid,
        config.v2_page_param: 1,
        config.v2_limit_param: 1,
    }
    parse = v2_listing_parser(config)

    def call_date(data: Any) -> dt.date:
        items, _ = parse(data)
        for item in items:
            if str(item.get("uuid")) == uuid:
                return call_date_of(item)
        raise NotFoundError(f"the v2 listing holds no call {uuid}", status=404)

    return params, call_date


def recording_location(config: ClientConfig, uuid: str, url: str | None) -> str:
    """Where a call's recording is: ``url`` when given (v2: its ``call_record``), else
    the v1 recording path.

    Raises:
        NotFoundError: v2 without a URL (the call has no recording there).
    """
    if url:
        return url
    if config.is_v2:
        raise NotFoundError(
            f"no recording URL for call {uuid}: v2 serves a recording at the URL "
            "its call_record holds",
            status=404,
        )
    return config.recording_url(uuid)
