""":class:`SimulatorServer`: the simulator app served by uvicorn in a background thread."""

from __future__ import annotations

import datetime as dt
import socket
import threading
from collections.abc import Sequence
from decimal import Decimal
from types import TracebackType
from typing import Any, Literal

import httpx
import uvicorn

from bulutfon_pipeline.settings import (
    DEFAULT_RECORDING_PATH,
    DEFAULT_REDIRECT_URI,
    DEFAULT_V2_LIST_PATH,
)
from bulutfon_pipeline.simulator.accounts import Accounts
from bulutfon_pipeline.simulator.app import SimulatorState, create_app
from bulutfon_pipeline.simulator.dataset import Dataset
from bulutfon_pipeline.simulator.model import SimulatorConfig
from bulutfon_pipeline.simulator.render import V2_DETAIL_PATH, V2_RECORDING_PATH

__all__ = ["DIALECT_PATHS", "SimulatorServer"]

#: (list path, detail path, recording path) each dialect documents. v2's detail and
#: recording paths hold the call's local date ({yyyy}/{mm}/{dd}); a client takes the
#: recording's URL from ``call_record``.
DIALECT_PATHS: dict[str, tuple[str, str, str]] = {
    "seed": ("/cdr.json", "/cdr/{uuid}.json", DEFAULT_RECORDING_PATH),
    "v1": ("/cdrs", "/cdrs/{uuid}", DEFAULT_RECORDING_PATH),
    "v2": (DEFAULT_V2_LIST_PATH, V2_DETAIL_PATH, V2_RECORDING_PATH),
}
_START_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 10.0


class _Uvicorn(uvicorn.Server):
    """A uvicorn server that tells us when it accepts connections."""

    def __init__(self, config: uvicorn.Config, ready: threading.Event):
        super().__init__(config)
        self._ready = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self._ready.set()


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def uvicorn_config(app: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,  # the access log would print access_token query parameters
        lifespan="off",
        timeout_graceful_shutdown=2,
        timeout_keep_alive=30,
        date_header=False,  # the app sends the simulator's clock (app._http_date)
    )


class SimulatorServer:
    """The Bulutfon API simulator on a real socket, in a background thread.

    ``with SimulatorServer(SimulatorConfig(days=3)) as sim: httpx.get(sim.url + ...)``.
    The dataset is generated in the constructor; :meth:`start` binds ``host:port``
    (0 = a free port) and returns once uvicorn accepts connections.

    ``accounts``: how many accounts (``account-1`` … ``account-N``) or their names. Each
    has its own credentials, dataset (``seed + i`` for the i-th, 0-based), knobs, token
    buckets and stats (see :mod:`.accounts`); the first is the single-account simulator
    and the one every method serves when ``account`` is None. The others generate their
    dataset on first use.
    """

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        accounts: int | Sequence[str] = 1,
    ):
        self.config = config or SimulatorConfig()
        self.host = host
        self.port = port
        self.accounts = Accounts.create(self.config, accounts)
        self.state: SimulatorState = self.accounts.first
        self.app = create_app(self.accounts)
        self._server: _Uvicorn | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> SimulatorServer:
        if self._thread is not None:
            return self
        sock = bind_socket(self.host, self.port)
        self.port = sock.getsockname()[1]
        ready = threading.Event()
        server = _Uvicorn(uvicorn_config(self.app), ready)
        self._server = server

        def run() -> None:
            try:
                server.run(sockets=[sock])
            except BaseException as exc:  # surfaced by start()
                self._error = exc
            finally:
                sock.close()
                ready.set()  # never leave start() waiting

        self._thread = threading.Thread(target=run, name=f"bulutfon-sim-{self.port}", daemon=True)
        self._thread.start()
        if not ready.wait(_START_TIMEOUT_S) or not server.started:
            self.stop()
            raise RuntimeError(f"simulator did not start on {self.url}") from self._error
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(_STOP_TIMEOUT_S)
            if thread.is_alive() and server is not None:
                server.force_exit = True
                thread.join(_STOP_TIMEOUT_S)
        self._server = None
        self._thread = None

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:  # no secrets
        return f"SimulatorServer(url={self.url!r}, dialect={self.state.config.dialect!r})"

    # -- addresses and credentials -------------------------------------------------------
    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def token_url(self) -> str:
        return self.url + "/oauth/token"

    @property
    def master_token(self) -> str:
        return self.state.master_token

    @property
    def api_key(self) -> str:
        """The first account's v2 API key."""
        return self.state.api_key

    @property
    def client_id(self) -> str:
        return self.state.client_id

    @property
    def client_secret(self) -> str:
        return self.state.client_secret

    @property
    def initial_refresh_token(self) -> str:
        return self.state.initial_refresh_token

    @property
    def paths(self) -> tuple[str, str, str]:
        """(list, detail, recording) paths of the served dialect."""
        return DIALECT_PATHS[self.state.config.dialect]

    @property
    def account_names(self) -> list[str]:
        return self.accounts.names

    def account(self, name: str | None = None) -> SimulatorState:
        """Account ``name``'s state (credentials, dataset, config, stats); None: the first.

        Raises:
            KeyError: no such account.
        """
        return self.accounts.get(name)

    def issue_auth_code(self, account: str | None = None) -> str:
        """A one-time authorization code for ``grant_type=authorization_code``."""
        return self.account(account).issue_auth_code()

    def issued_secrets(self) -> list[str]:
        """Every account's master token, client secret and every token and code issued."""
        return self.accounts.issued_secrets()

    def expire_tokens(self, account: str | None = None) -> int:
        """Expire every issued access token now (of ``account``, or of every account);
        returns how many there were."""
        if account is None:
            return self.accounts.expire_tokens()
        return self.accounts[account].expire_tokens()

    def env(
        self, auth: Literal["master", "oauth"] = "master", *, account: str | None = None
    ) -> dict[str, str]:
        """``BULUTFON_*`` variables pointing a client at this simulator, as ``account``
        (None: the first).

        ``master``: ``BULUTFON_ACCESS_TOKEN`` = the master token. ``oauth``: client id,
        secret and the initial refresh token (which rotates on first use). On the ``v2``
        dialect, whatever ``auth``: ``BULUTFON_API_VERSION=v2`` and the account's
        ``BULUTFON_API_KEY`` (v1 paths for the v1 variables, the v2 paths are the defaults).
        """
        state = self.account(account)
        dialect = self.state.config.dialect
        list_path, detail_path, recording_path = DIALECT_PATHS["v1" if dialect == "v2" else dialect]
        env = {
            "BULUTFON_API_URL": self.url,
            "BULUTFON_TOKEN_URL": self.token_url,
            "BULUTFON_CDR_LIST_PATH": list_path,
            "BULUTFON_CDR_DETAIL_PATH": detail_path,
            "BULUTFON_RECORDING_PATH": recording_path,
            "BULUTFON_API_VERSION": "v2" if dialect == "v2" else "v1",
        }
        if dialect == "v2":
            env["BULUTFON_API_KEY"] = state.api_key
        elif auth == "master":
            env["BULUTFON_ACCESS_TOKEN"] = state.master_token
        elif auth == "oauth":
            env["BULUTFON_CLIENT_ID"] = state.client_id
            env["BULUTFON_CLIENT_SECRET"] = state.client_secret
            env["BULUTFON_REFRESH_TOKEN"] = state.initial_refresh_token
            env["BULUTFON_REDIRECT_URI"] = DEFAULT_REDIRECT_URI
        else:
            raise ValueError(f"auth must be 'master' or 'oauth', got {auth!r}")
        return env

    # -- data, stats and knobs -----------------------------------------------------------
    @property
    def dataset(self) -> Dataset:
        """The first account's dataset (``account(name).dataset`` for another's)."""
        return self.state.dataset

    def expected_tables(self, account: str | None = None) -> dict[str, list[dict[str, Any]]]:
        """The rows a correct load of ``account``'s calls (None: the first's) produces
        (on v2, ``call_record`` holds this server's recording URLs)."""
        return self.account(account).dataset.expected_tables(base_url=self.url)

    def stats(self, account: str | None = None) -> dict[str, Any]:
        """Request counts of ``account``, or of the whole server when None (which also
        counts requests no account recognized)."""
        if account is None:
            return self.accounts.stats()
        return self.accounts[account].stats()

    def reset_stats(self, account: str | None = None) -> None:
        """Reset ``account``'s stats, or the server's and every account's when None."""
        if account is None:
            self.accounts.reset_stats()
        else:
            self.accounts[account].reset_stats()

    def add_calls(
        self, count: int, where: str = "head", hours_ago: float = 6, *, account: str | None = None
    ) -> list[str]:
        return self.account(account).dataset.add_calls(count, where, hours_ago)

    def change_call(
        self, call_uuid: str, *, account: str | None = None, **changes: Any
    ) -> dict[str, Any]:
        """Change a call after the fact through ``POST /_admin/change`` (over HTTP, as a
        test or a script outside the process would); returns its new listing item.

        Keys as for :meth:`Dataset.change_call`; times as ISO-8601 text with an offset,
        prices as decimal text.

        Raises:
            httpx.HTTPStatusError: an unknown call (404) or a bad value (400).
        """
        body = {"uuid": call_uuid, **{k: _wire(v) for k, v in changes.items()}}
        prefix = "/_admin" if account is None else f"/_admin/accounts/{account}"
        response = httpx.post(self.url + prefix + "/change", json=body, timeout=10)
        response.raise_for_status()
        item: dict[str, Any] = response.json()
        return item

    def update_config(self, **knobs: Any) -> SimulatorConfig:
        """Set runtime knobs on every account; returns the first account's config."""
        return self.accounts.update_config(**knobs)

    def configure(self, account: str | None = None, **knobs: Any) -> SimulatorConfig:
        """Set runtime knobs (``rate_limit_rps``, faults, latency, …) on ``account`` alone,
        or on every account when None; returns that account's (the first's) config.

        Raises:
            KeyError: no such account.
            ValueError, TypeError: an unknown knob or a bad value.
        """
        if account is None:
            return self.accounts.update_config(**knobs)
        return self.accounts[account].update_config(**knobs)


def _wire(value: Any) -> Any:
    """A change's value as JSON: times as ISO-8601 text, decimals as text."""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value
