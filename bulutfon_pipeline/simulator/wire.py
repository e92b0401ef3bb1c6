"""JSON answers as the simulator sends them: compact UTF-8, values made JSON-ready, the
config without its secrets. Shared by the API endpoints (:mod:`.app`) and :mod:`.admin`."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from decimal import Decimal
from typing import Any

from starlette.responses import Response

from bulutfon_pipeline.simulator.model import SimulatorConfig

__all__ = ["error_response", "json_response", "public_config", "to_jsonable"]


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


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(body, status, headers=headers, media_type="application/json; charset=utf-8")


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return json_response({"error": message}, status, headers)


def public_config(config: SimulatorConfig) -> dict[str, Any]:
    """The config without its secrets."""
    data = dataclasses.asdict(config)
    for name in ("master_token", "client_secret", "api_key"):
        data.pop(name, None)
    return data
