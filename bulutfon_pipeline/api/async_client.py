"""The asyncio Bulutfon API client, :class:`AsyncBulutfonClient`.

Every request it makes (listing pages, details, recordings) goes through its one retry
loop, :meth:`AsyncBulutfonClient._with_retries`; the batch methods run it under the
adaptive fan-out of :mod:`~bulutfon_pipeline.api.fanout`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import httpx

from bulutfon_pipeline.api.auth import BulutfonAuth, TokenManager, token_query
from bulutfon_pipeline.api.concurrency import AdaptiveLimiter, RatePacer
from bulutfon_pipeline.api.config import ClientConfig
from bulutfon_pipeline.api.cookies import keep_set_cookies_only
from bulutfon_pipeline.api.core import (
    AsyncSleep,
    AttemptOutcome,
    ClientCore,
    JsonRequest,
)
from bulutfon_pipeline.api.errors import BulutfonError
from bulutfon_pipeline.api.fanout import (
    WORKERS_PER_SLOT,
    fan_out,
    limited_attempt,
    new_limiter,
    retry_wait,
)
from bulutfon_pipeline.api.models import (
    ClientStats,
    DetailResult,
    ListingPage,
    RecordingFile,
    RecordingResult,
)
from bulutfon_pipeline.api.recordings import AUDIO_ACCEPT, RecordingAttempt
from bulutfon_pipeline.api.retry import Outcome
from bulutfon_pipeline.api.transport import fan_out_transport

__all__ = ["AsyncBulutfonClient"]

T = TypeVar("T")


class AsyncBulutfonClient(ClientCore):
    """Asynchronous Bulutfon API client (asyncio). Use as an async context manager.

    Arguments as for :class:`~bulutfon_pipeline.api.client.BulutfonClient`; ``sleep`` is
    an async sleep, and ``pacer`` shares an RPS budget with another client.
    """

    def __init__(
        self,
        config: ClientConfig | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        token_transport: httpx.BaseTransport | None = None,
        sleep: AsyncSleep | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] | None = None,
        tokens: TokenManager | None = None,
        stats: ClientStats | None = None,
        pacer: RatePacer | None = None,
    ) -> None:
        if token_transport is None and isinstance(transport, httpx.BaseTransport):
            token_transport = transport
        super().__init__(
            config, stats, tokens, rng, clock, token_transport=token_transport, pacer=pacer
        )
        self._sleep: AsyncSleep = sleep or asyncio.sleep
        #: The limiter of the latest fan-out, for metadata and tests (limit, decreases...).
        self.last_limiter: AdaptiveLimiter | None = None
        self._hooks = self._request_hooks()
        kwargs = self._httpx_kwargs()
        if transport is None:  # httpx over aiohttp's engine: half the CPU per request
            transport = fan_out_transport(kwargs["limits"])
        self._http = httpx.AsyncClient(
            transport=transport,
            event_hooks={"request": [self._run_request_hooks]},
            **kwargs,
        )
        keep_set_cookies_only(self._http)
        self._bulutfon_auth = isinstance(kwargs["auth"], BulutfonAuth)

    async def _run_request_hooks(self, request: httpx.Request) -> None:
        for hook in self._hooks:
            hook(request)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncBulutfonClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- the retry loop

    async def _with_retries(
        self, attempt_once: Callable[[], Awaitable[Outcome]], limiter: AdaptiveLimiter | None
    ) -> Any:
        """Repeat ``attempt_once`` until it succeeds or the retry policy says stop.

        Every attempt holds a limiter slot, is paced (``max_rps`` and the limiter's pace)
        and reports to the limiter; waits honour Retry-After or back off with jitter.
        """
        retries = self._retries()
        while True:
            outcome = await limited_attempt(limiter, self._sleep, attempt_once, self._pace_delay)
            delay = retries.after(outcome)
            if retries.done:
                return retries.value
            await self._sleep(retry_wait(limiter, outcome, delay))

    async def _get_json(
        self, request: JsonRequest[T], *, limiter: AdaptiveLimiter | None = None
    ) -> T:
        self._require_credentials()
        url = request.full_url
        if self._bulutfon_auth and self.tokens.mode == "master" and self.config.access_token:
            # The master token in the URL sent, so the auth flow need not rebuild the URL
            # to add it (``auth._with_token``).
            url = f"{url}{'&' if '?' in url else '?'}{token_query(self.config.access_token)}"

        async def attempt_once() -> Outcome:
            with AttemptOutcome(request.full_url, self.config.api_url_hint) as attempt:
                response = await self._http.get(url)
                attempt.outcome = request.outcome(response)
            return attempt.outcome

        value: T = await self._with_retries(attempt_once, limiter)
        return value

    async def _download_once(self, url: str, dest: Path) -> Outcome:
        with RecordingAttempt(url, dest) as attempt:
            async with self._http.stream("GET", url, headers=AUDIO_ACCEPT) as response:
                attempt.begin(response)
                async for chunk in response.aiter_bytes():
                    attempt.write(chunk)
                attempt.end()
        return attempt.outcome

    # -- endpoints

    async def iter_listing_pages(
        self,
        limit: int | None = None,
        *,
        filters: Mapping[str, Any] | None = None,
        since: dt.datetime | None = None,
    ) -> AsyncGenerator[ListingPage, None]:
        """Async :meth:`BulutfonClient.iter_listing_pages`."""
        pages = self._listing_pages(limit, filters, since)
        while pages.has_next_page:
            yield pages.accept(await self._get_json(self._listing_request(pages)))

    async def get_detail(
        self,
        uuid: str,
        call_date: dt.date | None = None,
        *,
        limiter: AdaptiveLimiter | None = None,
    ) -> dict[str, Any]:
        """Async :meth:`BulutfonClient.get_detail`."""
        if self.config.is_v2 and call_date is None:
            call_date = await self._get_json(self._call_date_request(uuid), limiter=limiter)
        return await self._get_json(self._detail_request(uuid, call_date), limiter=limiter)

    async def fetch_details(
        self, uuids: Iterable[str | tuple[str, dt.date]]
    ) -> AsyncGenerator[DetailResult, None]:
        """Fetch many details under adaptive flow control.

        Workers pull uuids lazily from ``uuids``; at most ``max_concurrency`` requests
        are in flight, and an :class:`~bulutfon_pipeline.api.concurrency.AdaptiveLimiter`
        paces their starts once the API's 429s show a rate limit (sporadic 429s do not
        slow it down). A request answered 429 or 5xx waits out its ``Retry-After`` or
        backoff without holding a slot, then goes again. ``max_rps``, when set, spaces
        request starts on top. Results are yielded as they complete through a queue of
        ``max_concurrency`` entries, so memory is bounded by the concurrency (times
        ``WORKERS_PER_SLOT`` items being worked on), not by the number of uuids. A
        failure (404, bad body, exhausted retries) is reported in that item's
        :attr:`DetailResult.error` and never stops the batch.

        Raises:
            ConfigError: no credentials (before any request).
        """
        self._require_credentials()

        async def fetch_one(
            key: str | tuple[str, dt.date], limiter: AdaptiveLimiter
        ) -> DetailResult:
            uuid, call_date = (key, None) if isinstance(key, str) else key
            try:
                payload = await self.get_detail(uuid, call_date, limiter=limiter)
            except BulutfonError as exc:
                return DetailResult(uuid, None, exc)
            return DetailResult(uuid, payload, None)

        async for result in self._fan_out(uuids, fetch_one):
            yield result

    async def fetch_json_many(
        self, requests: Iterable[tuple[str, JsonRequest[Any]]]
    ) -> AsyncGenerator[tuple[str, Any, BulutfonError | None], None]:
        """Many JSON GETs (``(key, request)`` pairs) under the same flow control as
        :meth:`fetch_details`; yields ``(key, value, error)`` as they complete, a failure
        (404, bad body, exhausted retries) in ``error``.

        Raises:
            ConfigError: no credentials (before any request).
        """
        self._require_credentials()

        async def fetch_one(
            item: tuple[str, JsonRequest[Any]], limiter: AdaptiveLimiter
        ) -> tuple[str, Any, BulutfonError | None]:
            key, request = item
            try:
                return key, await self._get_json(request, limiter=limiter), None
            except BulutfonError as exc:
                return key, None, exc

        async for result in self._fan_out(requests, fetch_one):
            yield result

    async def download_recording(
        self,
        uuid: str,
        dest_without_suffix: Path,
        url: str | None = None,
        *,
        limiter: AdaptiveLimiter | None = None,
    ) -> RecordingFile:
        """Async :meth:`BulutfonClient.download_recording` (file writes are small, sync)."""
        self._require_credentials()
        where = self._recording_url(uuid, url)
        dest = Path(dest_without_suffix)
        file: RecordingFile = await self._with_retries(
            lambda: self._download_once(where, dest), limiter
        )
        return file

    async def download_recordings(
        self, items: Iterable[tuple[str, Path] | tuple[str, Path, str | None]]
    ) -> AsyncGenerator[RecordingResult, None]:
        """Download many recordings with the adaptive limit of :meth:`fetch_details`.

        Workers pull ``(uuid, dest_without_suffix)`` pairs lazily under the
        :class:`~bulutfon_pipeline.api.concurrency.AdaptiveLimiter` of :meth:`fetch_details`.
        Each body streams to its own file, so memory is bounded by the concurrency. A
        failure is reported in that item's :attr:`RecordingResult.error` and never stops
        the batch.

        Raises:
            ConfigError: no credentials (before any request).
        """
        self._require_credentials()

        async def download_one(
            item: tuple[str, Path] | tuple[str, Path, str | None], limiter: AdaptiveLimiter
        ) -> RecordingResult:
            uuid, dest, url = (*item, None)[:3]
            try:
                file = await self.download_recording(uuid, dest, url, limiter=limiter)
            except BulutfonError as exc:
                return RecordingResult(uuid, None, exc)
            return RecordingResult(uuid, file, None)

        async for result in self._fan_out(items, download_one):
            yield result

    def _fan_out(
        self,
        items: Iterable[T],
        fetch_one: Callable[[T, AdaptiveLimiter], Awaitable[Any]],
    ) -> AsyncGenerator[Any, None]:
        """:func:`~bulutfon_pipeline.api.fanout.fan_out` under a fresh limiter, kept as
        :attr:`last_limiter`."""
        self.last_limiter = limiter = new_limiter(self.config.max_concurrency)
        # The limiter's slots cap the requests in flight; more workers than slots keep
        # them busy while other items wait out a Retry-After or a backoff.
        return fan_out(items, fetch_one, limiter, self.config.max_concurrency * WORKERS_PER_SLOT)
