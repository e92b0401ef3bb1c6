"""What the sync and async clients share, with no HTTP I/O of its own.

Request construction (httpx settings, :class:`JsonRequest`), response classification (a
response or a transport failure becomes an :class:`~bulutfon_pipeline.api.retry.Outcome`),
the retry bookkeeping each flavour's one retry loop drives (:class:`Retries`), and the
detail body's parser. The listing's pager is :mod:`~bulutfon_pipeline.api.paging`.

The clients do the I/O: :mod:`~bulutfon_pipeline.api.client` (sync) and
:mod:`~bulutfon_pipeline.api.async_client` (asyncio).
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Self, TypeVar

import httpx

from bulutfon_pipeline import jsonio, settings
from bulutfon_pipeline.api.auth import BulutfonAuth, TokenManager
from bulutfon_pipeline.api.concurrency import RatePacer
from bulutfon_pipeline.api.config import ClientConfig
from bulutfon_pipeline.api.errors import BulutfonError, InvalidResponseError, NotFoundError
from bulutfon_pipeline.api.errors import body_excerpt as make_excerpt
from bulutfon_pipeline.api.models import ClientStats
from bulutfon_pipeline.api.paging import ListingPaginator, parse_listing
from bulutfon_pipeline.api.redact import install_log_redaction, redact
from bulutfon_pipeline.api.retry import (
    Outcome,
    credentials_hint,
    final_error,
    parse_retry_after,
    retry_delay,
    should_retry,
    transport_error,
)
from bulutfon_pipeline.api.tls import shared_ssl_context
from bulutfon_pipeline.api.v2 import (
    ApiKeyAuth,
    call_date_lookup,
    recording_location,
    since_filter,
    strip_key_off_origin,
    v2_detail_parser,
    v2_listing_parser,
)

__all__ = [
    "AsyncSleep",
    "AttemptOutcome",
    "ClientCore",
    "JsonRequest",
    "Retries",
    "SyncSleep",
    "evaluate",
    "evaluate_response",
    "parse_detail",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")
SyncSleep = Callable[[float], None]
AsyncSleep = Callable[[float], Awaitable[None]]

# Keep at most this much of an error body (bytes) for the error excerpt.
_ERROR_BODY_KEEP = settings.ERROR_BODY_MAX_CHARS * 4


# --- the detail body ------------------------------------------------------------------


def parse_detail(data: Any) -> dict[str, Any]:
    """A detail body's inner ``cdr`` object."""
    if not isinstance(data, dict) or not isinstance(data.get("cdr"), dict):
        raise InvalidResponseError("Detail body has no 'cdr' object", status=200)
    cdr: dict[str, Any] = data["cdr"]
    return cdr


# --- one attempt's outcome --------------------------------------------------------------


def evaluate(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    url: str,
    parse: Callable[[Any], T],
    keep_text: str | None = None,
) -> Outcome:
    """The outcome of one response; ``keep_text``: a top-level member whose object
    value keeps its exact JSON text (:class:`~bulutfon_pipeline.jsonio.JSONObject`)."""
    if 200 <= status < 300:
        try:
            if keep_text is None:
                data = jsonio.decode(body)
            else:
                data = jsonio.decode_keeping_text(body, keep_text)
        except ValueError:
            invalid = InvalidResponseError(
                f"GET {redact(url)} answered {status} with a body that is not valid JSON "
                f"({len(body)} bytes)",
                status=status,
                body_excerpt=make_excerpt(body),
                url=url,
            )
            return Outcome(status=status, url=url, invalid=invalid)
        try:
            return Outcome(value=parse(data), status=status, url=url)
        except InvalidResponseError as exc:
            invalid = InvalidResponseError(
                f"GET {redact(url)}: {exc.message}",
                status=status,
                body_excerpt=make_excerpt(body),
                url=url,
            )
            return Outcome(status=status, url=url, invalid=invalid)
    return Outcome(
        status=status,
        body=body[:_ERROR_BODY_KEEP],
        url=url,
        retry_after=parse_retry_after(headers.get("Retry-After")),
    )


def evaluate_response(
    response: httpx.Response,
    url: str,
    parse: Callable[[Any], T],
    keep_text: str | None = None,
) -> Outcome:
    """:func:`evaluate` for a response whose body has been read."""
    return evaluate(response.status_code, response.headers, response.content, url, parse, keep_text)


@dataclass(frozen=True)
class JsonRequest(Generic[T]):
    """One JSON GET, as built before any I/O: where, with which query, and how to parse.

    ``keep_text``: a top-level member whose object value keeps its exact JSON text.
    """

    url: str
    params: Mapping[str, Any] | None
    parse: Callable[[Any], T]
    keep_text: str | None = None

    @property
    def full_url(self) -> str:
        """The URL with its query, as error messages show it (redacted there)."""
        # Cached by hand: Python 3.11's functools.cached_property takes one lock shared by
        # every instance, and the threads of a many-account sync queued on it for every
        # request (a third of one profile's samples; benchmarks/ANALYSIS.md).
        url: str | None = self.__dict__.get("_full_url")
        if url is None:
            params = self.params
            url = str(httpx.URL(self.url, params=dict(params))) if params else self.url
            self.__dict__["_full_url"] = url
        return url

    def outcome(self, response: httpx.Response) -> Outcome:
        """The outcome of the (read) ``response`` to this request."""
        return evaluate_response(response, self.full_url, self.parse, self.keep_text)


class AttemptOutcome:
    """Turns the failure of one attempt's I/O into its :class:`Outcome`.

    Wrap an attempt in ``with AttemptOutcome(url) as attempt:`` and set :attr:`outcome`
    inside; an httpx error (timeout, refused, reset; a refused one names ``api_url_hint``
    to check) or a :class:`BulutfonError` raised by the auth flow (refresh rejected)
    becomes the outcome instead. The exception is swallowed here, so the error raised
    after the last retry does not chain the httpx exception (whose text holds the URL).
    """

    def __init__(self, url: str, api_url_hint: str = "BULUTFON_API_URL") -> None:
        self.url = url
        self.api_url_hint = api_url_hint
        self._outcome: Outcome | None = None

    @property
    def outcome(self) -> Outcome:
        if self._outcome is None:
            raise RuntimeError("the attempt ended without an outcome")
        return self._outcome

    @outcome.setter
    def outcome(self, outcome: Outcome) -> None:
        self._outcome = outcome

    def __enter__(self) -> Self:
        return self

    def __exit__(self, _type: object, exc: BaseException | None, _tb: object) -> bool:
        try:
            if isinstance(exc, httpx.HTTPError):
                error = transport_error(exc, self.url, self.api_url_hint)
                self._outcome = Outcome(url=self.url, transport=error)
                return True
            if isinstance(exc, BulutfonError):
                self._outcome = Outcome(url=self.url, fatal=exc)
                return True
            return False
        finally:
            self._release()

    def _release(self) -> None:
        """Free what the attempt holds, however it ended (a subclass's hook)."""


# --- retries ------------------------------------------------------------------------------


class Retries:
    """The bookkeeping of one request's retry loop (the policy is :mod:`.retry`'s).

    Each flavour's loop hands every attempt's outcome to :meth:`after`, then either
    returns :attr:`value` (when :attr:`done`) or sleeps the delay it returned.
    """

    def __init__(self, config: ClientConfig, stats: ClientStats, rng: random.Random) -> None:
        self._config = config
        self._stats = stats
        self._rng = rng
        self.retries = 0
        self.done = False
        self.value: Any = None

    def after(self, outcome: Outcome) -> float:
        """Count ``outcome``; the delay before the next attempt (0 when done).

        Raises:
            BulutfonError: the typed error of the last outcome, when not to retry.
        """
        if outcome.ok:
            self.done, self.value = True, outcome.value
            return 0.0
        config = self._config
        if outcome.status == 429:
            self._stats.incr("rate_limited")
        if not should_retry(outcome, self.retries, config.max_retries):
            error = final_error(outcome, self.retries + 1, credentials_hint(config))
            self._stats.incr("not_found" if isinstance(error, NotFoundError) else "errors")
            raise error
        self._stats.incr("retries")
        delay = retry_delay(
            self.retries,
            outcome.retry_after,
            base_s=config.backoff_base_s,
            max_s=config.backoff_max_s,
            retry_after_cap_s=config.retry_after_cap_s,
            rng=self._rng,
        )
        logger.debug(
            "Retrying GET %s (%s) in %.2fs, retry %d of %d",
            redact(outcome.url),
            _describe(outcome),
            delay,
            self.retries + 1,
            config.max_retries,
        )
        self.retries += 1
        return delay


def _describe(outcome: Outcome) -> str:
    if outcome.transport is not None:
        return outcome.transport.message
    if outcome.invalid is not None:
        return "unusable body"
    return f"status {outcome.status}"


# --- state shared by both flavours -----------------------------------------------------


class ClientCore:
    """Configuration, tokens, counters and RPS budget shared by the sync and async clients."""

    def __init__(
        self,
        config: ClientConfig | None,
        stats: ClientStats | None,
        tokens: TokenManager | None,
        rng: random.Random | None,
        clock: Callable[[], float] | None,
        *,
        token_transport: httpx.BaseTransport | None,
        pacer: RatePacer | None = None,
        sleep: SyncSleep | None = None,
    ) -> None:
        self.config = config if config is not None else ClientConfig.from_env()
        self.stats = stats if stats is not None else ClientStats()
        self.tokens = tokens or TokenManager(
            self.config,
            stats=self.stats,
            transport=token_transport,
            clock=clock or time.time,
            sleep=sleep or time.sleep,
        )
        if pacer is None and self.config.max_rps:
            pacer = RatePacer(self.config.max_rps)
        self.pacer = pacer
        self._rng = rng or random.Random()
        install_log_redaction()

    def _httpx_kwargs(self) -> dict[str, Any]:
        config = self.config
        auth: httpx.Auth = (
            ApiKeyAuth(config) if config.is_v2 and config.api_key else BulutfonAuth(self.tokens)
        )
        return {
            "auth": auth,
            "timeout": httpx.Timeout(config.timeout_s, connect=config.connect_timeout_s),
            "headers": {"User-Agent": config.user_agent, "Accept": "application/json"},
            "limits": httpx.Limits(
                max_connections=config.max_concurrency + 4,
                max_keepalive_connections=config.max_concurrency + 4,
            ),
            "follow_redirects": True,
            "verify": shared_ssl_context(),
        }

    @property
    def filters_listing_by_time(self) -> bool:
        """Whether ``iter_listing_pages(since=...)`` lists only newer calls (v2)."""
        return self.config.is_v2 and bool(self.config.v2_time_field)

    @property
    def details_need_call_date(self) -> bool:
        """Whether a detail's path holds the local date (v2): pass ``(uuid, date)``."""
        return self.config.is_v2

    def _count_request(self, _request: httpx.Request) -> None:
        self.stats.incr("requests")

    def _request_hooks(self) -> list[Callable[[httpx.Request], None]]:
        """Sync hooks run on every request sent, redirect hops included."""
        hooks: list[Callable[[httpx.Request], None]] = [self._count_request]
        if self.config.is_v2:
            hooks.append(strip_key_off_origin(self.config))
        return hooks

    def _require_credentials(self) -> None:
        """Raise ConfigError before any I/O when there are no credentials."""
        self.tokens.mode  # noqa: B018

    def _retries(self) -> Retries:
        return Retries(self.config, self.stats, self._rng)

    def _pace_delay(self) -> float:
        """Book a start under ``max_rps``; the seconds to wait before sending."""
        return self.pacer.reserve() if self.pacer is not None else 0.0

    def _listing_pages(
        self,
        limit: int | None,
        filters: Mapping[str, Any] | None,
        since: dt.datetime | None = None,
    ) -> ListingPaginator:
        config = self.config
        limit = limit or config.page_size
        if not config.is_v2:  # v1 has no time filter: the caller stops paging itself
            return ListingPaginator(limit, filters)
        return ListingPaginator(
            limit,
            {**(filters or {}), **since_filter(config, since)},
            page_param=config.v2_page_param,
            limit_param=config.v2_limit_param,
        )

    def _listing_request(
        self, pages: ListingPaginator
    ) -> JsonRequest[tuple[list[dict[str, Any]], dict[str, Any] | None]]:
        parse = v2_listing_parser(self.config) if self.config.is_v2 else parse_listing
        return JsonRequest(self.config.list_url, pages.params(), parse)

    def _detail_request(
        self, uuid: str, call_date: dt.date | None = None
    ) -> JsonRequest[dict[str, Any]]:
        config = self.config
        if config.is_v2:
            url = config.detail_url(uuid, call_date)
            return JsonRequest(url, None, v2_detail_parser(config), config.v2_data_key)
        return JsonRequest(config.detail_url(uuid), None, parse_detail, "cdr")

    def _recording_url(self, uuid: str, url: str | None) -> str:
        """Where a recording is: ``url`` (v2: its ``call_record``), else the v1 path."""
        return recording_location(self.config, uuid, url)

    def _call_date_request(self, uuid: str) -> JsonRequest[dt.date]:
        """v2: the listing filtered to one uuid, for a detail asked for without its date."""
        params, parse = call_date_lookup(self.config, uuid)
        return JsonRequest(self.config.list_url, params, parse)
