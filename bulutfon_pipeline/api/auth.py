"""Authentication: master token or OAuth 2 (authorization code + rotating refresh tokens).

Every API request carries the token as the ``access_token`` query parameter (the API
documents no Authorization header). :class:`BulutfonAuth` is an ``httpx.Auth`` flow, so
refreshing is invisible to callers:

* before a request, a token that expires within ``token_refresh_margin_s`` is refreshed;
* a 401, or any 4xx whose body is ``{"error": "Token expired"}``, refreshes the token and
  sends the request once more.

Refresh coordination: :class:`TokenManager` refreshes under one process-wide
``threading.Lock`` per token file, and only if the token the failed request used is still
the current one ("check whether the token already changed"). Async callers first queue on
a per-event-loop ``asyncio.Lock`` (so N coroutines do not occupy N worker threads) and
run the refresh itself in a worker thread under the same threading lock. N concurrent
requests that hit an expired token therefore cause exactly one refresh, whether they come
from threads, coroutines, or both.

Refresh tokens rotate: every new pair is written atomically (temp file in the same
directory, mode 0600, fsync, ``os.replace``; see ``token_store.py``) to
``<data_dir>/bulutfon_token.json``. Once
that file exists it wins over ``BULUTFON_REFRESH_TOKEN`` from the environment, and it is
re-read before each refresh, so another client or process that rotated the pair first is
followed instead of being raced with a now-invalid refresh token. The POST to the token
endpoint and its retries live in ``token_endpoint.py``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import threading
import time
import weakref
from collections.abc import AsyncGenerator, Callable, Generator
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlencode

import httpx

from bulutfon_pipeline.api.config import NO_ACCOUNT_REFRESH_TOKEN, ClientConfig
from bulutfon_pipeline.api.errors import ConfigError
from bulutfon_pipeline.api.models import ClientStats, Token
from bulutfon_pipeline.api.redact import install_log_redaction, register_secret
from bulutfon_pipeline.api.token_endpoint import request_token
from bulutfon_pipeline.api.token_store import TokenStore

__all__ = [
    "BulutfonAuth",
    "TokenManager",
    "exchange_code",
    "force_refresh",
    "is_token_expired_response",
]

logger = logging.getLogger(__name__)

# One lock per token file for the whole process, shared by every TokenManager using it.
_FILE_LOCKS: dict[str, threading.Lock] = {}
_FILE_LOCKS_GUARD = threading.Lock()


def _file_lock(path: Path) -> threading.Lock:
    key = str(path.resolve())
    with _FILE_LOCKS_GUARD:
        return _FILE_LOCKS.setdefault(key, threading.Lock())


class TokenManager:
    """The current access token of one configuration, refreshed at most once per expiry.

    Shared by the sync and async clients (and threads) of one client object.

    Args:
        config: the client configuration.
        stats: counters; ``refreshes`` is incremented per refresh.
        transport: an httpx transport for the token endpoint (tests pass a mock).
        clock: Unix time source (tests pass a fake one).
        sleep: used between token endpoint retries.
    """

    def __init__(
        self,
        config: ClientConfig,
        *,
        stats: ClientStats | None = None,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.stats = stats if stats is not None else ClientStats()
        self.store = TokenStore(config.token_file)
        self._transport = transport
        self._clock = clock
        self._sleep = sleep
        self._lock = _file_lock(config.token_file)
        self._async_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock]
        self._async_locks = weakref.WeakKeyDictionary()
        self._async_guard = threading.Lock()
        self._token: Token | None = None
        self._refresh_token: str | None = config.refresh_token
        self._loaded = False
        register_secret(*config.secrets())
        install_log_redaction()

    # -- state --------------------------------------------------------------------------

    @property
    def mode(self) -> str:
        """``"master"`` or ``"oauth"``; raises :class:`ConfigError` without credentials."""
        return self.config.require_auth_mode()

    @property
    def token(self) -> Token | None:
        """The current OAuth token (``None`` before the first refresh or in master mode)."""
        self._ensure_loaded()
        return self._token

    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        with self._lock:
            if not self._loaded:
                stored = self.store.load()
                if stored is not None:  # the file wins over BULUTFON_REFRESH_TOKEN
                    self._adopt(stored)
                self._loaded = True

    def _adopt(self, token: Token) -> None:
        self._token = token
        if token.refresh_token:
            self._refresh_token = token.refresh_token

    def _usable(self, token: Token | None, stale: str | None) -> bool:
        # Usable = someone already replaced the token the caller saw, and it is fresh.
        return (
            token is not None
            and token.access_token != stale
            and not token.is_expiring(self._clock(), self.config.token_refresh_margin_s)
        )

    # -- sync ---------------------------------------------------------------------------

    def access_token(self) -> str:
        """A valid access token, refreshing first if it expires within the margin.

        Raises:
            ConfigError: no credentials are configured.
            AuthError: the token endpoint rejected the refresh.
        """
        if self.mode == "master":
            assert self.config.access_token is not None
            return self.config.access_token
        self._ensure_loaded()
        token = self._token
        if token is None or token.is_expiring(self._clock(), self.config.token_refresh_margin_s):
            token = self.refresh(stale=token.access_token if token else None)
        return token.access_token

    def refresh(self, stale: str | None, *, force: bool = False) -> Token:
        """Refresh unless the token already changed since the caller saw ``stale``.

        Args:
            stale: the access token the caller used (or ``None``).
            force: refresh even if the current token looks fine.
        """
        self._ensure_loaded()
        with self._lock:
            if not force and self._usable(self._token, stale):
                return self._token  # type: ignore[return-value]
            # Another client (or process) may have rotated the pair: follow the file.
            stored = self.store.load()
            if stored is not None and (
                self._token is None or stored.access_token != self._token.access_token
            ):
                self._adopt(stored)
                if not force and self._usable(stored, stale):
                    return stored
            if not self.config.has_oauth_client:
                raise ConfigError(
                    "Cannot refresh the Bulutfon token: set BULUTFON_CLIENT_ID and "
                    "BULUTFON_CLIENT_SECRET (see .env.example)"
                )
            refresh_token = self._refresh_token
            if not refresh_token:
                raise ConfigError(_no_refresh_token(self.config))
            token = self._token_request(
                {"grant_type": "refresh_token", "refresh_token": refresh_token}
            )
            if token.refresh_token is None:  # the server did not rotate: keep the old one
                token = replace(token, refresh_token=refresh_token)
            self.store.save(token)
            self._adopt(token)
            self.stats.incr("refreshes")
            logger.info(
                "Refreshed the Bulutfon access token (valid for %ds)", int(token.expires_in)
            )
            return token

    def exchange_code(self, code: str) -> Token:
        """Exchange an authorization code for a token pair and store it."""
        register_secret(code)
        if not self.config.has_oauth_client:
            raise ConfigError(
                "Exchanging an authorization code needs BULUTFON_CLIENT_ID and "
                "BULUTFON_CLIENT_SECRET (see .env.example)"
            )
        with self._lock:
            token = self._token_request({"grant_type": "authorization_code", "code": code})
            self.store.save(token)
            self._adopt(token)
            self._loaded = True
        return token

    def _token_request(self, fields: dict[str, str]) -> Token:
        return request_token(self.config, fields, transport=self._transport, sleep=self._sleep)

    # -- async --------------------------------------------------------------------------

    def _async_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        with self._async_guard:
            lock = self._async_locks.get(loop)
            if lock is None:
                lock = self._async_locks[loop] = asyncio.Lock()
            return lock

    async def access_token_async(self) -> str:
        """Async :meth:`access_token`."""
        if self.mode == "master":
            assert self.config.access_token is not None
            return self.config.access_token
        if not self._loaded:
            await asyncio.to_thread(self._ensure_loaded)
        token = self._token
        if token is None or token.is_expiring(self._clock(), self.config.token_refresh_margin_s):
            token = await self.refresh_async(stale=token.access_token if token else None)
        return token.access_token

    async def refresh_async(self, stale: str | None) -> Token:
        """Async :meth:`refresh`: coroutines queue on an asyncio lock, and the first one
        refreshes in a worker thread under the process-wide lock."""
        async with self._async_lock():
            if self._usable(self._token, stale):
                return self._token  # type: ignore[return-value]
            return await asyncio.to_thread(self.refresh, stale)


def is_token_expired_response(status: int, body: bytes) -> bool:
    """401, or any 4xx whose JSON body says ``{"error": "Token expired"}``."""
    if status == 401:
        return True
    if not 400 <= status < 500 or not body:
        return False
    try:
        data = json.loads(body)
    except ValueError:
        return False
    error = data.get("error") if isinstance(data, dict) else None
    return isinstance(error, str) and error.strip().lower() == "token expired"


@functools.lru_cache(maxsize=1024)
def token_query(token: str) -> str:
    """``access_token=<token>`` as httpx encodes a query parameter. Cached for many
    tokens: the accounts of a ``sync`` send their requests interleaved."""
    return urlencode({"access_token": token})


def _with_token(request: httpx.Request, token: str) -> None:
    """Set the request's ``access_token`` parameter to ``token``. A request sent with it
    already (the detail fan-out adds it to the URL it sends: each rebuild of a URL parses
    it again, 8 % of a one-account sync's CPU; ``benchmarks/ANALYSIS.md``, session 25) is
    left as it is; any other token there is replaced."""
    if token_query(token).encode("ascii") in request.url.query.split(b"&"):
        return
    request.url = request.url.copy_set_param("access_token", token)


class BulutfonAuth(httpx.Auth):
    """httpx auth flow: add ``access_token=...``; on expiry refresh once and resend."""

    def __init__(self, tokens: TokenManager) -> None:
        self.tokens = tokens

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        if self.tokens.mode == "master":
            _with_token(request, self.tokens.access_token())
            yield request
            return
        used = self.tokens.access_token()
        _with_token(request, used)
        response = yield request
        # Only error bodies are read here; a streamed 200 (a recording) stays streamed.
        if 400 <= response.status_code < 500:
            response.read()
            if is_token_expired_response(response.status_code, response.content):
                _with_token(request, self.tokens.refresh(stale=used).access_token)
                yield request

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if self.tokens.mode == "master":
            _with_token(request, await self.tokens.access_token_async())
            yield request
            return
        used = await self.tokens.access_token_async()
        _with_token(request, used)
        response = yield request
        if 400 <= response.status_code < 500:
            await response.aread()
            if is_token_expired_response(response.status_code, response.content):
                _with_token(request, (await self.tokens.refresh_async(stale=used)).access_token)
                yield request


def exchange_code(
    config: ClientConfig, code: str, *, transport: httpx.BaseTransport | None = None
) -> Token:
    """Exchange an OAuth authorization code for a token pair and store it in the token file.

    Args:
        config: needs ``client_id``, ``client_secret``, ``redirect_uri``, ``token_url``.
        code: the ``code`` the callback received.
        transport: optional httpx transport (tests).

    Returns:
        The new token (its repr hides both tokens).

    Raises:
        ConfigError: client id/secret missing.
        AuthError: the code was rejected (e.g. ``invalid_grant``).
        TransportError: the token endpoint is unreachable.
    """
    return TokenManager(config, transport=transport).exchange_code(code)


def force_refresh(config: ClientConfig, *, transport: httpx.BaseTransport | None = None) -> Token:
    """Refresh the OAuth token now (whatever its expiry) and store the new pair.

    Raises:
        ConfigError: no OAuth client or refresh token is configured.
        AuthError: the refresh token was rejected.
        TransportError: the token endpoint is unreachable.
    """
    return TokenManager(config, transport=transport).refresh(stale=None, force=True)


def _no_refresh_token(config: ClientConfig) -> str:
    """What to do when there is no refresh token; an account of an accounts file (the one
    that has a ``credentials_hint``) has its own ways, and its error line names it."""
    if config.credentials_hint is not None:
        return NO_ACCOUNT_REFRESH_TOKEN
    return ("No Bulutfon refresh token: set BULUTFON_REFRESH_TOKEN or run "
            "`bulutfon-pipeline auth` (see .env.example)")  # fmt: skip
