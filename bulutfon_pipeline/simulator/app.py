"""The starlette app: Bulutfon's endpoints over a :class:`SimulatorState` (``state.py``),
with faults, per-token rate limits, request statistics and loopback-only admin endpoints."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import math
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bulutfon_pipeline.simulator import render
from bulutfon_pipeline.simulator.faults import NON_JSON_KINDS
from bulutfon_pipeline.simulator.model import SimulatorConfig
from bulutfon_pipeline.simulator.state import ENDPOINTS, RUNTIME_KNOBS, SimulatorState

__all__ = ["ENDPOINTS", "RUNTIME_KNOBS", "SimulatorState", "create_app", "to_jsonable"]

_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost", "testclient"})
_HTML_ERROR = (
    "<!DOCTYPE html><html><head><title>{status} Error</title></head>"
    "<body><h1>{status}</h1><p>We're sorry, but something went wrong.</p></body></html>"
)
_HTML_PAGE = "<!DOCTYPE html><html><body><h1>Bulutfon</h1><p>Bakım çalışması</p></body></html>"


def to_jsonable(value: Any) -> Any:
    """datetimes/dates -> ISO text, Decimals -> text, recursively."""
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dt.date):  # datetime is a date too
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(body, status, headers=headers, media_type="application/json; charset=utf-8")


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return _json({"error": message}, status, headers)


# --- request handling ---------------------------------------------------------------------

Handler = Callable[[Request, SimulatorState], Awaitable[Response]]


def _api(endpoint: str, handler: Handler, state: SimulatorState) -> Callable[..., Any]:
    """Wrap an API handler with the checks and faults every API request goes through."""

    async def endpoint_fn(request: Request) -> Response:
        call_uuid = request.path_params.get("uuid")
        response = await _guarded(endpoint, handler, state, request)
        state.record(endpoint, response.status_code, call_uuid)
        return response

    return endpoint_fn


async def _guarded(
    endpoint: str, handler: Handler, state: SimulatorState, request: Request
) -> Response:
    cfg = state.config
    if not request.headers.get("user-agent"):
        return _error(400, "User-Agent header is required")
    if cfg.latency_ms > 0 or cfg.jitter_ms > 0:
        await asyncio.sleep((cfg.latency_ms + cfg.jitter_ms * state.roll()) / 1000)
    if state.in_outage():
        return _error(cfg.outage_status, "Service Unavailable")
    token = request.query_params.get("access_token")
    verdict = state.check_token(token)
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


async def listing(request: Request, state: SimulatorState) -> Response:
    cfg = state.config
    try:
        page = _int_param(request, "page", 1)
        limit = _int_param(request, "limit", 100)
    except ValueError:
        return _error(400, "page and limit must be integers")
    page = max(1, page)
    limit = max(1, min(limit, cfg.max_page_size))
    faults = state.dataset.faults
    unknown = {u for u, f in faults.items() if f == "unknown_field"}
    filters = {k: v for k in _FILTERS if (v := request.query_params.get(k))}
    if not cfg.paginate:
        calls = [c for c in state.dataset.calls if not filters or _matches(c, filters)]
        items = [render.listing_item(c, cfg.dialect, c.uuid in unknown) for c in calls]
        return _json({"cdrs": items})
    if page > 1 and cfg.live_calls_per_page > 0:
        # Calls that ended while the client paged: they push older items down the list.
        state.dataset.add_calls(cfg.live_calls_per_page, "head")
    if filters:
        every = [c for c in state.dataset.calls if _matches(c, filters)]
        calls, total = every[(page - 1) * limit : page * limit], len(every)
    else:
        calls, total = state.dataset.page(page, limit)
    total_pages = math.ceil(total / limit)
    base = f"{request.url.scheme}://{request.url.netloc}{request.url.path}"
    return _json({
        "cdrs": [render.listing_item(c, cfg.dialect, c.uuid in unknown) for c in calls],
        "pagination": {
            "page": page,
            "limit": limit,
            "total_count": total,
            "total_pages": total_pages,
            "previous_page": f"{base}?page={page - 1}" if page > 1 else None,
            # The real API's quirk: no limit and no token in next_page.
            "next_page": f"{base}?page={page + 1}" if page < total_pages else None,
        },
    })  # fmt: skip


async def detail(request: Request, state: SimulatorState) -> Response:
    call_uuid = request.path_params["uuid"]
    call = state.dataset.get(call_uuid)
    fault = state.dataset.fault(call_uuid)
    if call is None or fault == "missing":
        return _error(404, "Not found")
    kind = fault.split(":", 1)[1] if fault and fault.startswith("malformed:") else None
    if kind in NON_JSON_KINDS:
        if kind == "html_200":
            return Response(_HTML_PAGE, 200, media_type="text/html; charset=utf-8")
        return Response(b"", 200, media_type="application/json")
    return _json({"cdr": render.detail_object(call, state.config.dialect, fault)})


async def recording(request: Request, state: SimulatorState) -> Response:
    found = state.dataset.recording(request.path_params["uuid"])
    if found is None:
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


def create_app(state: SimulatorState) -> Starlette:
    """The ASGI app serving ``state``: both path sets regardless of dialect."""

    async def token(request: Request) -> Response:
        if not request.headers.get("user-agent"):
            response = _error(400, "User-Agent header is required")
        else:
            status, body = state.grant(await _form(request))
            response = _json(body, status, {"Cache-Control": "no-store"})
        state.record("token", response.status_code)
        return response

    def admin(fn: Callable[[Request], Awaitable[Response]]) -> Callable[..., Any]:
        async def wrapped(request: Request) -> Response:
            host = request.client.host if request.client else ""
            if host not in _LOOPBACK:
                return _error(403, "Forbidden")
            return await fn(request)

        return wrapped

    async def admin_stats(request: Request) -> Response:
        return _json(state.stats())

    async def admin_stats_reset(request: Request) -> Response:
        state.reset_stats()
        return _json({"ok": True})

    async def admin_calls(request: Request) -> Response:
        data = json.loads(await request.body() or b"{}")
        try:
            count, where = int(data.get("count", 1)), data.get("where", "head")
            uuids = state.dataset.add_calls(count, where, float(data.get("hours_ago", 6)))
        except ValueError as exc:
            return _error(400, str(exc))
        return _json({"uuids": uuids})

    async def admin_change_call(request: Request) -> Response:
        # {"uuid": ..., "call_record": "REMOVED", "call_price": "0.05", "hangup_time": ...}
        try:
            data = json.loads(await request.body() or b"{}")
            if not isinstance(data, dict) or not isinstance(data.get("uuid"), str):
                raise ValueError("body must be an object with a string 'uuid'")
            call_uuid = data.pop("uuid")
            call = state.dataset.change_call(call_uuid, **data)
        except KeyError:
            return _error(404, "no such call")
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            return _error(400, str(exc))
        return _json(to_jsonable(render.listing_item(call, state.config.dialect)))

    async def admin_config(request: Request) -> Response:
        if request.method == "GET":
            return _json(to_jsonable(_public_config(state.config)))
        try:
            new = state.update_config(**json.loads(await request.body() or b"{}"))
        except (TypeError, ValueError) as exc:
            return _error(400, str(exc))
        return _json(to_jsonable(_public_config(new)))

    async def admin_expected(request: Request) -> Response:
        return _json(to_jsonable(state.dataset.expected_tables()))

    async def admin_auth_code(request: Request) -> Response:
        return _json({"code": state.issue_auth_code()})

    async def admin_expire_tokens(request: Request) -> Response:
        return _json({"expired": state.expire_tokens()})

    async def not_found(request: Request, exc: Exception) -> Response:
        return _error(404, "Not found")

    routes = [
        Route("/oauth/token", token, methods=["POST"]),
        Route("/cdr.json", _api("listing", listing, state)),
        Route("/cdrs", _api("listing", listing, state)),
        Route("/cdr/{uuid}.json", _api("detail", detail, state)),
        Route("/cdrs/{uuid}", _api("detail", detail, state)),
        Route("/call-records/{uuid}", _api("recording", recording, state)),
        Route("/_admin/stats", admin(admin_stats)),
        Route("/_admin/stats/reset", admin(admin_stats_reset), methods=["POST"]),
        Route("/_admin/calls", admin(admin_calls), methods=["POST"]),
        Route("/_admin/change", admin(admin_change_call), methods=["POST"]),
        Route("/_admin/config", admin(admin_config), methods=["GET", "POST"]),
        Route("/_admin/expected", admin(admin_expected)),
        Route("/_admin/auth-code", admin(admin_auth_code), methods=["POST"]),
        Route("/_admin/expire-tokens", admin(admin_expire_tokens), methods=["POST"]),
    ]
    return Starlette(routes=routes, exception_handlers={404: not_found})


def _public_config(config: SimulatorConfig) -> dict[str, Any]:
    """The config without its secrets."""
    data = dataclasses.asdict(config)
    for name in ("master_token", "client_secret"):
        data.pop(name, None)
    return data
