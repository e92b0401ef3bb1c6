"""The starlette app: Bulutfon's endpoints over :class:`.Accounts` (each request served
by the account its token belongs to, ``accounts.py``), with faults, per-token rate limits,
request statistics and the loopback-only admin endpoints (``admin.py``).

The v1 routes (seed and later v1 paths) take ``access_token``; the ``/v2/`` routes take the
account's API key as an ``apikey`` header or query parameter, and answer in the v2 dialect
(``render.py``) with ``field[op]=value`` filters on the listing. A v1 token is refused on
v2 and a v2 key on v1 (401), as the real API does.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bulutfon_pipeline.settings import LOCAL_TZ
from bulutfon_pipeline.simulator import render
from bulutfon_pipeline.simulator.accounts import Accounts
from bulutfon_pipeline.simulator.admin import admin_routes
from bulutfon_pipeline.simulator.directory_routes import directory_routes
from bulutfon_pipeline.simulator.faults import NON_JSON_KINDS
from bulutfon_pipeline.simulator.filters import matches, needs_item, parse_filters
from bulutfon_pipeline.simulator.model import Call
from bulutfon_pipeline.simulator.state import ENDPOINTS, RUNTIME_KNOBS, SimulatorState
from bulutfon_pipeline.simulator.wire import error_response as _error
from bulutfon_pipeline.simulator.wire import json_response as _json
from bulutfon_pipeline.simulator.wire import to_jsonable

__all__ = [
    "ENDPOINTS",
    "RUNTIME_KNOBS",
    "Accounts",
    "SimulatorState",
    "create_app",
    "to_jsonable",
]

_HTML_ERROR = (
    "<!DOCTYPE html><html><head><title>{status} Error</title></head>"
    "<body><h1>{status}</h1><p>We're sorry, but something went wrong.</p></body></html>"
)
_HTML_PAGE = "<!DOCTYPE html><html><body><h1>Bulutfon</h1><p>Bakım çalışması</p></body></html>"


# --- request handling ---------------------------------------------------------------------

Handler = Callable[[Request, SimulatorState], Awaitable[Response]]


#: The v2 API key's header and query parameter (the client's default name).
V2_KEY_NAME = "apikey"


def _credential(request: Request, version: str) -> str | None:
    """The v1 ``access_token`` or the v2 API key (header first) of ``request``."""
    if version == "v2":
        return request.headers.get(V2_KEY_NAME) or request.query_params.get(V2_KEY_NAME)
    return request.query_params.get("access_token")


def _api(
    endpoint: str, handler: Handler, accounts: Accounts, version: str = "v1"
) -> Callable[..., Any]:
    """Wrap an API handler with the routing to the token's (v2: the key's) account and the
    checks and faults every API request goes through. A credential no account knows is
    answered by the first account, whose check refuses it (401)."""

    async def endpoint_fn(request: Request) -> Response:
        call_uuid = request.path_params.get("uuid")
        credential = _credential(request, version)
        route = accounts.route_key if version == "v2" else accounts.route
        account = route(credential)
        if account is not None and not account.generated:
            # A lazy account's first request: generate its dataset off the event loop, so
            # the other accounts' requests keep being answered meanwhile.
            await asyncio.to_thread(getattr, account, "dataset")
        state = account or accounts.first
        response = await _guarded(endpoint, handler, state, request, version, credential)
        response.headers["Date"] = _http_date(state)
        accounts.record(endpoint, response.status_code, call_uuid, account)
        return response

    return endpoint_fn


def _http_date(state: SimulatorState) -> str:
    """The ``Date`` header: the account's clock (``SimulatorConfig.clock``), which
    uvicorn's own header (turned off, ``server.uvicorn_config``) would not follow."""
    return email.utils.format_datetime(state.now(), usegmt=True)


async def _guarded(
    endpoint: str,
    handler: Handler,
    state: SimulatorState,
    request: Request,
    version: str,
    token: str | None,
) -> Response:
    cfg = state.config
    if not request.headers.get("user-agent"):
        return _error(400, "User-Agent header is required")
    if cfg.latency_ms > 0 or cfg.jitter_ms > 0:
        await asyncio.sleep((cfg.latency_ms + cfg.jitter_ms * state.roll()) / 1000)
    if state.in_outage():
        return _error(cfg.outage_status, "Service Unavailable")
    verdict = state.check_key(token) if version == "v2" else state.check_token(token)
    if verdict == "invalid" and version == "v2":
        return _error(401, "Invalid API key")
    if verdict == "invalid":
        return _error(401, "Invalid token")
    if verdict == "expired":
        return _error(cfg.expired_status, "Token expired")
    assert token is not None
    if not state.take(token):
        headers = {"Retry-After": "1"} if cfg.rate_limit_retry_after else None
        return _error(429, "Too Many Requests", headers)
    if cfg.random_429_rate > 0 and state.roll() < cfg.random_429_rate:
        send = state.roll() < cfg.random_429_retry_after_share
        return _error(429, "Too Many Requests", {"Retry-After": "1"} if send else None)
    if cfg.error_rate > 0 and state.roll() < cfg.error_rate:
        status = (500, 502, 503)[int(state.roll() * 3)]
        if state.roll() < cfg.html_error_share:
            return Response(_HTML_ERROR.format(status=status), status, media_type="text/html")
        return _error(status, "Internal Server Error" if status == 500 else "Service Unavailable")
    response = await handler(request, state)
    if (
        endpoint in ("listing", "detail")
        and cfg.truncate_rate > 0
        and response.status_code == 200
        and response.media_type is not None
        and response.media_type.startswith("application/json")
        and state.roll() < cfg.truncate_rate
    ):
        body = bytes(response.body)
        return Response(body[: len(body) // 2], 200, media_type=response.media_type)
    return response


def _int_param(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    return int(raw)


_FILTERS = ("caller", "callee", "caller_or_callee", "missing_call")


def _matches(call: Any, filters: dict[str, str]) -> bool:
    if "caller" in filters and call.caller not in filters["caller"].split(","):
        return False
    if "callee" in filters and call.callee not in filters["callee"].split(","):
        return False
    if "caller_or_callee" in filters:
        numbers = filters["caller_or_callee"].split(",")
        if call.caller not in numbers and call.callee not in numbers:
            return False
    if "missing_call" in filters:
        wanted = filters["missing_call"].lower() in ("1", "true", "yes")
        if call.missing_call != wanted:
            return False
    return True


def _base_url(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


def _served_dialect(state: SimulatorState, version: str) -> str:
    """What a route answers in: v2 on ``/v2/``, else the config's (v1 for ``v2``)."""
    if version == "v2":
        return "v2"
    return "v1" if state.config.dialect == "v2" else state.config.dialect


async def listing(request: Request, state: SimulatorState) -> Response:
    return _listing(request, state, "v1")


async def listing_v2(request: Request, state: SimulatorState) -> Response:
    return _listing(request, state, "v2")


def _listing(request: Request, state: SimulatorState, version: str) -> Response:
    cfg = state.config
    dialect = _served_dialect(state, version)
    items_key = "data" if version == "v2" else "cdrs"
    base_url = _base_url(request)
    try:
        page = _int_param(request, "page", 1)
        limit = _int_param(request, "limit", 100)
    except ValueError:
        return _error(400, "page and limit must be integers")
    page = max(1, page)
    limit = max(1, min(limit, cfg.max_page_size))
    faults = state.dataset.faults
    unknown = {u for u, f in faults.items() if f == "unknown_field"}

    def item(c: Call) -> dict[str, Any]:
        return render.listing_item(c, dialect, c.uuid in unknown, base_url)

    match: Callable[[Call], bool] | None = None
    if version == "v2":
        try:
            v2_filters = parse_filters(request.query_params.multi_items())
        except ValueError as exc:
            return _error(400, str(exc))
        rendered = any(needs_item(f) for f in v2_filters)
        if v2_filters:

            def match(c: Call) -> bool:
                return matches(c, item(c) if rendered else None, v2_filters)

    else:
        filters = {k: v for k in _FILTERS if (v := request.query_params.get(k))}
        if filters:

            def match(c: Call) -> bool:
                return _matches(c, filters)

    if not cfg.paginate:
        calls = [c for c in state.dataset.calls if match is None or match(c)]
        return _json({items_key: [item(c) for c in calls]})
    if page > 1 and cfg.live_calls_per_page > 0:
        # Calls that ended while the client paged: they push older items down the list.
        state.dataset.add_calls(cfg.live_calls_per_page, "head")
    if match is not None:
        every = [c for c in state.dataset.calls if match(c)]
        calls, total = every[(page - 1) * limit : page * limit], len(every)
    else:
        calls, total = state.dataset.page(page, limit)
    total_pages = math.ceil(total / limit)
    base = f"{base_url}{request.url.path}"
    pagination: dict[str, Any] = {
        "page": page, "limit": limit, "total_count": total, "total_pages": total_pages,
    }  # fmt: skip
    if version != "v2":  # v2's is only known to hold total_pages: the client needs no more
        pagination["previous_page"] = f"{base}?page={page - 1}" if page > 1 else None
        # The real API's quirk: no limit and no token in next_page.
        pagination["next_page"] = f"{base}?page={page + 1}" if page < total_pages else None
    return _json({items_key: [item(c) for c in calls], "pagination": pagination})


def _on_its_date(request: Request, call: Call | None) -> bool:
    """v2: whether the path's ``yyyy/mm/dd`` is ``call``'s local date (v1: no date)."""
    params = request.path_params
    if call is None or "yyyy" not in params:
        return True
    day = call.call_time.astimezone(LOCAL_TZ)
    return (params["yyyy"], params["mm"], params["dd"]) == (
        f"{day:%Y}",
        f"{day:%m}",
        f"{day:%d}",
    )


async def detail(request: Request, state: SimulatorState) -> Response:
    return _detail(request, state, "v1")


async def detail_v2(request: Request, state: SimulatorState) -> Response:
    return _detail(request, state, "v2")


def _detail(request: Request, state: SimulatorState, version: str) -> Response:
    call_uuid = request.path_params["uuid"]
    call = state.dataset.get(call_uuid)
    fault = state.dataset.fault(call_uuid)
    if call is None or fault == "missing" or not _on_its_date(request, call):
        return _error(404, "Not found")
    kind = fault.split(":", 1)[1] if fault and fault.startswith("malformed:") else None
    if kind in NON_JSON_KINDS:
        if kind == "html_200":
            return Response(_HTML_PAGE, 200, media_type="text/html; charset=utf-8")
        return Response(b"", 200, media_type="application/json")
    dialect = _served_dialect(state, version)
    obj = render.detail_object(call, dialect, fault, _base_url(request))
    return _json({"data" if version == "v2" else "cdr": obj})


async def recording(request: Request, state: SimulatorState) -> Response:
    call_uuid = request.path_params["uuid"]
    found = state.dataset.recording(call_uuid)
    if found is None or not _on_its_date(request, state.dataset.get(call_uuid)):
        return _error(404, "Not found")
    body, content_type = found
    return Response(body, 200, media_type=content_type)


async def _form(request: Request) -> dict[str, str]:
    raw = await request.body()
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
    parsed = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[-1] for k, v in parsed.items()}


def create_app(state: Accounts | SimulatorState) -> Starlette:
    """The ASGI app serving ``state`` (one account's state, or several accounts): every
    path set (seed, v1 and ``/v2/``) regardless of dialect."""
    accounts = state if isinstance(state, Accounts) else Accounts({"account-1": state})

    async def token(request: Request) -> Response:
        account = None
        if not request.headers.get("user-agent"):
            response = _error(400, "User-Agent header is required")
        else:
            status, body, account = accounts.grant(await _form(request))
            response = _json(body, status, {"Cache-Control": "no-store"})
        response.headers["Date"] = _http_date(account or accounts.first)
        accounts.record("token", response.status_code, account=account)
        return response

    async def not_found(request: Request, exc: Exception) -> Response:
        return _error(404, "Not found")

    routes = [
        Route("/oauth/token", token, methods=["POST"]),
        Route("/cdr.json", _api("listing", listing, accounts)),
        Route("/cdrs", _api("listing", listing, accounts)),
        Route("/cdr/{uuid}.json", _api("detail", detail, accounts)),
        Route("/cdrs/{uuid}", _api("detail", detail, accounts)),
        Route("/call-records/{uuid}", _api("recording", recording, accounts)),
        Route("/v2/cdr/list", _api("listing", listing_v2, accounts, "v2")),
        Route("/v2/cdr/{yyyy}/{mm}/{dd}/{uuid}", _api("detail", detail_v2, accounts, "v2")),
        Route(
            "/v2/cdr/{yyyy}/{mm}/{dd}/{uuid}/recording",
            _api("recording", recording, accounts, "v2"),
        ),
        *directory_routes(lambda endpoint, handler: _api(endpoint, handler, accounts)),
        *admin_routes(accounts),
    ]
    return Starlette(routes=routes, exception_handlers={404: not_found})
