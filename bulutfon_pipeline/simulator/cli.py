"""``bulutfon-pipeline simulator``: serve the Bulutfon API simulator in the foreground.

Prints only the URL. Credentials go to ``--token-file`` (mode 0600), never to the terminal;
a parent process can fix the master token with ``BULUTFON_SIMULATOR_MASTER_TOKEN`` (and the
v2 API key with ``BULUTFON_SIMULATOR_API_KEY``).
``--accounts N`` serves N accounts (``account-1`` … ``account-N``, the i-th with seed
``--seed + i``, 0-based), each with its own credentials, dataset, rate limit and stats; the
token file's top-level credentials are the first account's, and ``accounts`` holds each
account's (the environment variables fix the first account's only).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import typing
from pathlib import Path
from typing import Any

import click
import uvicorn

from bulutfon_pipeline.simulator.accounts import Accounts
from bulutfon_pipeline.simulator.app import create_app
from bulutfon_pipeline.simulator.model import DIALECTS, SimulatorConfig
from bulutfon_pipeline.simulator.server import DIALECT_PATHS, bind_socket, uvicorn_config

__all__ = ["simulator_command"]

MASTER_TOKEN_ENV = "BULUTFON_SIMULATOR_MASTER_TOKEN"
CLIENT_ID_ENV = "BULUTFON_SIMULATOR_CLIENT_ID"
CLIENT_SECRET_ENV = "BULUTFON_SIMULATOR_CLIENT_SECRET"
API_KEY_ENV = "BULUTFON_SIMULATOR_API_KEY"
_SECRET_FIELDS = ("master_token", "api_key", "client_id", "client_secret")
_HELP: dict[str, str] = {
    "seed": "random seed of the dataset",
    "days": "number of days of calls, ending with --end-date",
    "calls_per_day": "calls on each day",
    "end_date": "last day of calls (YYYY-MM-DD, local)",
    "dialect": "seed (Turkish, 2015), v1 (ISO times, English codes) or v2 (/v2/, API key)",
    "paginate": "wrap listings in a pagination envelope",
    "rate_limit_rps": "per-token requests per second (0 = unlimited)",
    "error_rate": "share of requests answered 500/502/503",
    "truncate_rate": "share of JSON 200s cut in half",
    "live_calls_per_page": "new calls inserted at the head before each listing page > 1",
    "latency_ms": "fixed latency of every API answer (ms)",
    "jitter_ms": "extra latency, uniform in [0, jitter] ms (300 +- 200 ms: 100 and 400)",
    "random_429_rate": "share of requests answered 429 whatever the rate",
    "random_429_retry_after_share": "share of those random 429s that carry Retry-After: 1",
    "outage_s": "answer every API request --outage-status for this many seconds",
    "outage_requests": "answer the next N API requests --outage-status",
    "clock": "the instant the Date headers say (ISO-8601 with an offset; default: now)",
}


def _option(f: dataclasses.Field[Any], hint: Any) -> Any:
    flag = "--" + f.name.replace("_", "-")
    help_text = _HELP.get(f.name)
    default = f.default
    if hint is bool:
        return click.option(f"{flag}/--no-{flag[2:]}", default=default, show_default=True,
                            help=help_text)  # fmt: skip
    if f.name == "dialect":
        return click.option(flag, type=click.Choice(DIALECTS), default=default,
                            show_default=True, help=help_text)  # fmt: skip
    if hint is dt.date:
        return click.option(flag, type=click.DateTime(["%Y-%m-%d"]), default=str(default),
                            show_default=True, help=help_text)  # fmt: skip
    return click.option(flag, type=hint, default=default, show_default=True, help=help_text)


def _config_options(fn: Any) -> Any:
    hints = typing.get_type_hints(SimulatorConfig)
    for f in reversed(dataclasses.fields(SimulatorConfig)):
        if f.name not in _SECRET_FIELDS:
            fn = _option(f, hints[f.name])(fn)
    return fn


def write_token_file(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as JSON to ``path``, readable by the owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # also when the file already existed
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)


@click.command("simulator")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to bind")
@click.option("--port", default=8765, show_default=True, type=int, help="port (0 = any free)")
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="write the URL, paths and credentials here as JSON (mode 0600)",
)
@click.option(
    "--accounts",
    "account_count",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="serve N accounts, each with its own token, dataset (seed + i) and rate limit",
)
@_config_options
def simulator_command(
    host: str, port: int, token_file: Path | None, account_count: int, **knobs: Any
) -> None:
    """Serve the Bulutfon API simulator until interrupted."""
    if isinstance(knobs.get("end_date"), dt.datetime):
        knobs["end_date"] = knobs["end_date"].date()
    config = SimulatorConfig(
        master_token=os.environ.get(MASTER_TOKEN_ENV) or None,
        api_key=os.environ.get(API_KEY_ENV) or None,
        client_id=os.environ.get(CLIENT_ID_ENV) or None,
        client_secret=os.environ.get(CLIENT_SECRET_ENV) or None,
        **knobs,
    )
    accounts = Accounts.create(config, account_count)
    state = accounts.first
    sock = bind_socket(host, port)
    bound_port = sock.getsockname()[1]
    url = f"http://{f'[{host}]' if ':' in host else host}:{bound_port}"
    if token_file is not None:
        list_path, detail_path, recording_path = DIALECT_PATHS[config.dialect]
        write_token_file(token_file, {
            "api_url": url,
            "token_url": url + "/oauth/token",
            "cdr_list_path": list_path,
            "cdr_detail_path": detail_path,
            "recording_path": recording_path,
            "api_version": "v2" if config.dialect == "v2" else "v1",
            "master_token": state.master_token,
            "api_key": state.api_key,
            "client_id": state.client_id,
            "client_secret": state.client_secret,
            "refresh_token": state.initial_refresh_token,
            "accounts": {
                name: {
                    "seed": accounts[name].config.seed,
                    "master_token": accounts[name].master_token,
                    "api_key": accounts[name].api_key,
                    "client_id": accounts[name].client_id,
                    "client_secret": accounts[name].client_secret,
                    "refresh_token": accounts[name].initial_refresh_token,
                }
                for name in accounts
            },
        })  # fmt: skip
    server = _AnnouncingServer(uvicorn_config(create_app(accounts)), url)
    server.run(sockets=[sock])


class _AnnouncingServer(uvicorn.Server):
    """Prints the URL once connections are accepted (a parent process may wait for it)."""

    def __init__(self, config: uvicorn.Config, url: str):
        super().__init__(config)
        self._url = url

    async def startup(self, sockets: list[Any] | None = None) -> None:
        await super().startup(sockets=sockets)
        print(f"Bulutfon simulator listening on {self._url}", flush=True)


def main() -> None:
    simulator_command(prog_name="python -m bulutfon_pipeline.simulator")
