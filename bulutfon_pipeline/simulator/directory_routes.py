"""The directory's v1 routes (``/extensions``, ``/groups``, ``/dids``, bare or with the
seed's ``.json`` suffix, list and detail) over each account's :class:`.Directory`.

Every answer carries a strong ``ETag`` (a hash of its body); a request whose
``If-None-Match`` names it is answered ``304 Not Modified`` without a body, so a client
that kept the tags learns that nothing changed for the cost of the requests alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bulutfon_pipeline.simulator.state import SimulatorState
from bulutfon_pipeline.simulator.wire import error_response, json_response

__all__ = ["DIRECTORY_KINDS", "directory_routes"]

#: The directory's collections, as their paths name them.
DIRECTORY_KINDS = ("extensions", "groups", "dids")

Handler = Callable[[Request, SimulatorState], Awaitable[Response]]
#: Wraps a handler with the checks every API request goes through (``app._api``).
Guard = Callable[[str, Handler], Callable[..., Any]]


def _answer(request: Request, body: dict[str, Any] | None) -> Response:
    if body is None:
        return error_response(404, "Not found")
    response = json_response(body)
    etag = '"' + hashlib.sha256(bytes(response.body)).hexdigest()[:32] + '"'
    if etag in request.headers.get("if-none-match", "").replace(" ", "").split(","):
        return Response(status_code=304, headers={"ETag": etag})
    response.headers["ETag"] = etag
    return response


def _handlers(kind: str) -> tuple[Handler, Handler]:
    async def listing(request: Request, state: SimulatorState) -> Response:
        return _answer(request, state.directory.listing(kind))

    async def detail(request: Request, state: SimulatorState) -> Response:
        return _answer(request, state.directory.detail(kind, request.path_params["item_id"]))

    return listing, detail


def directory_routes(guard: Guard) -> list[Route]:
    """The list and detail routes of every kind, each behind ``guard``."""
    routes = []
    for kind in DIRECTORY_KINDS:
        listing, detail = _handlers(kind)
        for suffix in (".json", ""):  # ".json" first: {item_id} would swallow it
            routes.append(Route(f"/{kind}{suffix}", guard("directory", listing)))
            routes.append(Route(f"/{kind}/{{item_id}}{suffix}", guard("directory", detail)))
    return routes
