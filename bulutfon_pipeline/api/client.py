"""The synchronous Bulutfon API client, :class:`BulutfonClient`.

It shares one configuration, one :class:`~bulutfon_pipeline.api.auth.TokenManager` (so
one refresh serves both) and one :class:`~bulutfon_pipeline.api.models.ClientStats` with
the :class:`~bulutfon_pipeline.api.async_client.AsyncBulutfonClient` it opens for its
batch methods: :meth:`BulutfonClient.fetch_details` and
:meth:`BulutfonClient.download_recordings` run the async fan-out on an event loop in a
background thread, because Dagster assets are sync code.

Every request goes through one retry loop per flavour (:meth:`BulutfonClient._with_retries`
here), under the policy of :mod:`bulutfon_pipeline.api.retry`: 429 (honouring
``Retry-After``), 5xx, timeouts, connection failures and 200s with an unusable body are
retried up to ``max_retries`` times; other 4xx are not.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import AsyncGenerator, Callable, Generator, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import httpx

from bulutfon_pipeline.api.async_client import AsyncBulutfonClient
from bulutfon_pipeline.api.auth import TokenManager
from bulutfon_pipeline.api.config import ClientConfig
from bulutfon_pipeline.api.cookies import keep_set_cookies_only
from bulutfon_pipeline.api.core import (
    AsyncSleep,
    AttemptOutcome,
    ClientCore,
    JsonRequest,
    SyncSleep,
)
from bulutfon_pipeline.api.directory import DirectoryFetch, fetch_directory
from bulutfon_pipeline.api.errors import BulutfonError, ConfigError
from bulutfon_pipeline.api.fanout import drain_in_thread
from bulutfon_pipeline.api.models import (
    ClientStats,
    DetailResult,
    ListingPage,
    RecordingFile,
    RecordingResult,
)
from bulutfon_pipeline.api.recordings import AUDIO_ACCEPT, RecordingAttempt
from bulutfon_pipeline.api.retry import Outcome

__all__ = ["AsyncBulutfonClient", "BulutfonClient"]

T = TypeVar("T")


class BulutfonClient(ClientCore):
    """Synchronous Bulutfon API client. Use as a context manager.

    Args:
        config: the configuration; ``ClientConfig.from_env()`` when omitted.
        transport: httpx transport for API and token calls (tests pass
            ``httpx.MockTransport``).
        async_transport: transport for the async fan-out; defaults to ``transport`` when
            that is also an async transport (``MockTransport`` is both).
        sleep: the sync sleep between retries (tests make it a no-op).
        async_sleep: the async sleep used by the fan-out.
        rng: random source for the backoff jitter.
        clock: Unix time source for token expiry.
        tokens, stats: share auth state and counters with another client.
    """

    def __init__(
        self,
        config: ClientConfig | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
        sleep: SyncSleep | None = None,
        async_sleep: AsyncSleep | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] | None = None,
        tokens: TokenManager | None = None,
        stats: ClientStats | None = None,
    ) -> None:
        super().__init__(config, stats, tokens, rng, clock, token_transport=transport, sleep=sleep)
        self._sleep: SyncSleep = sleep or time.sleep
        self._async_sleep = async_sleep
        if async_transport is None and isinstance(transport, httpx.AsyncBaseTransport):
            async_transport = transport
        self._async_transport = async_transport
        self._http = httpx.Client(
            transport=transport,
            event_hooks={"request": self._request_hooks()},
            **self._httpx_kwargs(),
        )
        keep_set_cookies_only(self._http)

    # -- lifecycle

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> BulutfonClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def async_client(self) -> AsyncBulutfonClient:
        """An async client sharing this client's config, tokens, stats and RPS budget."""
        return AsyncBulutfonClient(
            self.config,
            transport=self._async_transport,
            sleep=self._async_sleep,
            rng=random.Random(self._rng.random()),
            tokens=self.tokens,
            stats=self.stats,
            pacer=self.pacer,
        )

    # -- the retry loop

    def _with_retries(self, attempt_once: Callable[[], Outcome]) -> Any:
        """Repeat ``attempt_once`` until it succeeds or the retry policy says stop.

        Every attempt is paced (``max_rps``); waits honour Retry-After or back off with
        jitter. The typed error is raised outside any ``except`` block, so the httpx
        exception (with the full URL) is not chained as its ``__context__``.
        """
        retries = self._retries()
        while True:
            if (wait := self._pace_delay()) > 0:
                self._sleep(wait)
            delay = retries.after(attempt_once())
            if retries.done:
                return retries.value
            self._sleep(delay)

    def _get_json(self, request: JsonRequest[T]) -> T:
        self._require_credentials()

        def attempt_once() -> Outcome:
            with AttemptOutcome(request.full_url, self.config.api_url_hint) as attempt:
                attempt.outcome = request.outcome(
                    self._http.get(request.url, params=request.params)
                )
            return attempt.outcome

        value: T = self._with_retries(attempt_once)
        return value

    def _download_once(self, url: str, dest: Path) -> Outcome:
        with (
            RecordingAttempt(url, dest) as attempt,
            self._http.stream("GET", url, headers=AUDIO_ACCEPT) as response,
        ):
            attempt.begin(response)
            for chunk in response.iter_bytes():
                attempt.write(chunk)
            attempt.end()
        return attempt.outcome

    # -- endpoints

    def iter_listing_pages(
        self,
        limit: int | None = None,
        *,
        filters: Mapping[str, Any] | None = None,
        since: dt.datetime | None = None,
    ) -> Generator[ListingPage, None, None]:
        """Page through the CDR listing, newest first, one :class:`ListingPage` at a time.

        Builds each page URL itself (``page``/``limit``), stops when ``next_page`` is null
        or ``page >= total_pages``; a body without ``pagination`` is a single page. Items
        whose uuid was already seen in this scan are dropped (the list is live). Stop
        iterating whenever you have what you need.

        Args:
            limit: page size; ``config.page_size`` by default.
            filters: extra documented filters (``caller``, ``missing_call``, ...).
            since: v2 only: ask only for calls at or after this instant (the
                ``v2_time_field[v2_time_op]`` filter). v1 has no time filter and ignores
                it; the caller stops paging once it reaches what it holds.

        Raises:
            ConfigError, AuthError, RateLimitedError, ServerError, InvalidResponseError,
            TransportError: as soon as a page cannot be fetched.
        """
        pages = self._listing_pages(limit, filters, since)
        while pages.has_next_page:
            yield pages.accept(self._get_json(self._listing_request(pages)))

    def get_detail(self, uuid: str, call_date: dt.date | None = None) -> dict[str, Any]:
        """One call's detail: the inner ``cdr`` object, with its ``call_flow``.

        On v2 the detail's path holds the call's local date: without ``call_date`` it is
        looked up first (one listing request filtered on the uuid).

        Raises:
            NotFoundError: no such call (404).
            InvalidResponseError: the body has no ``cdr`` object, after every retry.
            AuthError, RateLimitedError, ServerError, TransportError, ConfigError.
        """
        if self.config.is_v2 and call_date is None:
            call_date = self._get_json(self._call_date_request(uuid))
        return self._get_json(self._detail_request(uuid, call_date))

    def fetch_directory(self) -> DirectoryFetch:
        """The PBX's directory: extensions, ring groups and numbers, each list item with
        its detail (v1; see :mod:`~bulutfon_pipeline.api.directory`).

        Raises:
            ConfigError: on v2, whose directory endpoints are not public.
            InvalidResponseError, AuthError, RateLimitedError, ServerError, TransportError.
        """
        if self.config.is_v2:
            raise ConfigError("the v2 API's directory endpoints are not public")
        self._require_credentials()
        return fetch_directory(self._get_json, self._get_json_many, self.config.api_url)

    def _get_json_many(
        self, requests: Iterable[tuple[str, JsonRequest[Any]]]
    ) -> Generator[tuple[str, Any, BulutfonError | None], None, None]:
        """:meth:`AsyncBulutfonClient.fetch_json_many` on the background event loop."""
        return self._drain_async(lambda client: client.fetch_json_many(requests), "fetch-json")

    def fetch_details(
        self, uuids: Iterable[str | tuple[str, dt.date]]
    ) -> Generator[DetailResult, None, None]:
        """Fetch many details concurrently; results stream in completion order.

        ``uuids`` are uuids or ``(uuid, local call date)`` pairs; v2 needs the date (see
        :meth:`get_detail`), v1 ignores it.

        Runs :meth:`AsyncBulutfonClient.fetch_details` on an event loop in a background
        thread; at most ``2 * max_concurrency`` finished results wait for the caller.
        ``uuids`` is consumed lazily in that thread. Per-item failures (404, bad body) are
        reported in :attr:`DetailResult.error`; closing the iterator early cancels the
        remaining requests.
        """
        self._require_credentials()  # fail fast, in the caller's thread
        return self._drain_async(lambda client: client.fetch_details(uuids), "fetch-details")

    def download_recordings(
        self, items: Iterable[tuple[str, Path] | tuple[str, Path, str | None]]
    ) -> Generator[RecordingResult, None, None]:
        """Download many recordings concurrently; results stream in completion order.

        The batch form of :meth:`download_recording`, with the same adaptive fan-out as
        :meth:`fetch_details` (:meth:`AsyncBulutfonClient.download_recordings` on a
        background event loop). ``items`` are ``(uuid, dest_without_suffix)`` pairs, or
        ``(uuid, dest, url)`` (v2), consumed lazily. Per-item failures (404,
        unrecognisable audio, exhausted retries) are reported in
        :attr:`RecordingResult.error`.
        """
        self._require_credentials()  # fail fast, in the caller's thread
        return self._drain_async(
            lambda client: client.download_recordings(items), "download-recordings"
        )

    def _drain_async(
        self, start: Callable[[AsyncBulutfonClient], AsyncGenerator[T, None]], name: str
    ) -> Generator[T, None, None]:
        """Run ``start(async_client)`` on a background event loop; yield its items here,
        with at most ``2 * max_concurrency`` finished items waiting."""
        return drain_in_thread(
            self.async_client, start, backlog=2 * self.config.max_concurrency, name=name
        )

    def download_recording(
        self, uuid: str, dest_without_suffix: Path, url: str | None = None
    ) -> RecordingFile:
        """Stream a call's recording to ``<dest_without_suffix>.<wav|ogg|mp3>``.

        ``url``: where the recording is (v2: the URL its ``call_record`` holds; the key
        is sent only if it is on the API's host); default the v1 recording path.

        The body is streamed into a temp file in the destination directory (never held
        in memory), hashed, its format detected from magic bytes or ``Content-Type``, and
        renamed atomically into place.

        Raises:
            NotFoundError: no recording (404).
            InvalidResponseError: the content is not recognisable audio, after retries.
            AuthError, RateLimitedError, ServerError, TransportError, ConfigError.
        """
        self._require_credentials()
        where = self._recording_url(uuid, url)
        dest = Path(dest_without_suffix)
        file: RecordingFile = self._with_retries(lambda: self._download_once(where, dest))
        return file
