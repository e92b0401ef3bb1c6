"""The loopback-only admin endpoints: request statistics, knobs, ground truth, live
changes and credentials, for the whole server (``/_admin/…``) and for each account
(``/_admin/accounts/{account}/…``, 404 for an unknown account).

Server-wide routes keep their single-account meaning: ``stats`` counts every request
(``stats/reset`` also resets every account's), ``config`` reads the first account's knobs
and sets them on every account, ``expire-tokens`` expires every account's tokens, and the
rest (``calls``, ``change``, ``expected``, ``auth-code``, ``directory/change`` (the
month's directory changes, :meth:`.Directory.apply_month_changes`) and
``directory/expected``) act on the first account.
``GET /_admin/accounts`` lists the accounts.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bulutfon_pipeline.simulator import render
from bulutfon_pipeline.simulator.accounts import Accounts
from bulutfon_pipeline.simulator.state import SimulatorState
from bulutfon_pipeline.simulator.wire import (
    error_response,
    json_response,
    public_config,
    to_jsonable,
)

__all__ = ["admin_routes"]

_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost", "testclient"})

AccountHandler = Callable[[Request, SimulatorState], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


async def _stats(request: Request, state: SimulatorState) -> Response:
    return json_response(state.stats())


async def _stats_reset(request: Request, state: SimulatorState) -> Response:
    state.reset_stats()
    return json_response({"ok": True})


async def _calls(request: Request, state: SimulatorState) -> Response:
    data = json.loads(await request.body() or b"{}")
    try:
        count, where = int(data.get("count", 1)), data.get("where", "head")
        uuids = state.dataset.add_calls(count, where, float(data.get("hours_ago", 6)))
    except ValueError as exc:
        return error_response(400, str(exc))
    return json_response({"uuids": uuids})


async def _change(request: Request, state: SimulatorState) -> Response:
    # {"uuid": ..., "call_record": "REMOVED", "call_price": "0.05", "hangup_time": ...}
    try:
        data = json.loads(await request.body() or b"{}")
        if not isinstance(data, dict) or not isinstance(data.get("uuid"), str):
            raise ValueError("body must be an object with a string 'uuid'")
        call_uuid = data.pop("uuid")
        call = state.dataset.change_call(call_uuid, **data)
    except KeyError:
        return error_response(404, "no such call")
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        return error_response(400, str(exc))
    base_url = f"{request.url.scheme}://{request.url.netloc}"
    return json_response(
        to_jsonable(render.listing_item(call, state.config.dialect, False, base_url))
    )


async def _config(request: Request, state: SimulatorState) -> Response:
    if request.method == "GET":
        return json_response(to_jsonable(public_config(state.config)))
    try:
        new = state.update_config(**json.loads(await request.body() or b"{}"))
    except (TypeError, ValueError) as exc:
        return error_response(400, str(exc))
    return json_response(to_jsonable(public_config(new)))


async def _expected(request: Request, state: SimulatorState) -> Response:
    base_url = f"{request.url.scheme}://{request.url.netloc}"
    return json_response(to_jsonable(state.dataset.expected_tables(base_url=base_url)))


async def _directory_change(request: Request, state: SimulatorState) -> Response:
    return json_response(state.directory.apply_month_changes())


async def _directory_expected(request: Request, state: SimulatorState) -> Response:
    return json_response(to_jsonable(state.directory.expected()))


async def _auth_code(request: Request, state: SimulatorState) -> Response:
    return json_response({"code": state.issue_auth_code()})


async def _expire_tokens(request: Request, state: SimulatorState) -> Response:
    return json_response({"expired": state.expire_tokens()})


#: (path under /_admin or /_admin/accounts/{account}, handler, methods)
_ACCOUNT_ROUTES: tuple[tuple[str, AccountHandler, list[str] | None], ...] = (
    ("/stats", _stats, None),
    ("/stats/reset", _stats_reset, ["POST"]),
    ("/calls", _calls, ["POST"]),
    ("/change", _change, ["POST"]),
    ("/config", _config, ["GET", "POST"]),
    ("/expected", _expected, None),
    ("/auth-code", _auth_code, ["POST"]),
    ("/directory/change", _directory_change, ["POST"]),
    ("/directory/expected", _directory_expected, None),
    ("/expire-tokens", _expire_tokens, ["POST"]),
)


def _loopback(fn: Endpoint) -> Endpoint:
    async def wrapped(request: Request) -> Response:
        host = request.client.host if request.client else ""
        if host not in _LOOPBACK:
            return error_response(403, "Forbidden")
        return await fn(request)

    return wrapped


def admin_routes(accounts: Accounts) -> list[Route]:
    """The admin routes over ``accounts``, server-wide and per account."""

    def of_account(handler: AccountHandler) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            try:
                state = accounts[request.path_params["account"]]
            except KeyError:
                return error_response(404, "no such account")
            return await handler(request, state)

        return endpoint

    def of_first(handler: AccountHandler) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            return await handler(request, accounts.first)

        return endpoint

    async def server_stats(request: Request) -> Response:
        return json_response(accounts.stats())

    async def server_stats_reset(request: Request) -> Response:
        accounts.reset_stats()
        return json_response({"ok": True})

    async def server_config(request: Request) -> Response:
        if request.method == "GET":
            return json_response(to_jsonable(public_config(accounts.first.config)))
        try:
            new = accounts.update_config(**json.loads(await request.body() or b"{}"))
        except (TypeError, ValueError) as exc:
            return error_response(400, str(exc))
        return json_response(to_jsonable(public_config(new)))

    async def server_expire_tokens(request: Request) -> Response:
        return json_response({"expired": accounts.expire_tokens()})

    async def account_list(request: Request) -> Response:
        return json_response({"accounts": accounts.summary()})

    server_wide: dict[str, Endpoint] = {
        "/stats": server_stats,
        "/stats/reset": server_stats_reset,
        "/config": server_config,
        "/expire-tokens": server_expire_tokens,
    }
    routes = [Route("/_admin/accounts", _loopback(account_list))]
    for path, handler, methods in _ACCOUNT_ROUTES:
        top = server_wide.get(path) or of_first(handler)
        routes.append(Route("/_admin" + path, _loopback(top), methods=methods))
        per_account = _loopback(of_account(handler))
        routes.append(Route("/_admin/accounts/{account}" + path, per_account, methods=methods))
    return routes
