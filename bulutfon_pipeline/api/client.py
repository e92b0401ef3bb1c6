"""The Bulutfon API client: sync :class:`BulutfonClient` and async :class:`AsyncBulutfonClient`.

Both share one configuration, one :class:`~bulutfon_pipeline.api.auth.TokenManager` (so
one refresh serves both) and one :class:`~bulutfon_pipeline.api.models.ClientStats`. The
sync client's :meth:`BulutfonClient.fetch_details` runs the async fan-out on an event loop
in a background thread, because Dagster assets are sync code.

Every GET goes through one retry loop (:mod:`bulutfon_pipeline.api.retry`): 429 (honouring
``Retry-After``), 5xx, timeouts, connection failures and 200s with an unusable body are
retried up to ``max_retries`` times; other 4xx are not.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import queue
import random
import tempfile
import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx

from bulutfon_pipeline import jsonio, settings
from bulutfon_pipeline.api.auth import BulutfonAuth, TokenManager
from bulutfon_pipeline.api.concurrency import AdaptiveLimiter, RatePacer
from bulutfon_pipeline.api.config import ClientConfig
from bulutfon_pipeline.api.errors import BulutfonError, InvalidResponseError, NotFoundError
from bulutfon_pipeline.api.errors import body_excerpt as make_excerpt
from bulutfon_pipeline.api.models import (
    ClientStats,
    DetailResult,
    ListingPage,
    RecordingFile,
    RecordingResult,
)
from bulutfon_pipeline.api.recordings import MAGIC_BYTES_NEEDED, detect_audio_format
from bulutfon_pipeline.api.redact import install_log_redaction, redact
from bulutfon_pipeline.api.retry import (
    Outcome,
    final_error,
    parse_retry_after,
    retry_delay,
    should_retry,
    transport_error,
)
from bulutfon_pipeline.api.transport import fan_out_transport

__all__ = ["AsyncBulutfonClient", "BulutfonClient"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
_Item = TypeVar("_Item")
_Result = TypeVar("_Result")
SyncSleep = Callable[[float], None]
AsyncSleep = Callable[[float], Awaitable[None]]

_AUDIO_ACCEPT = {"Accept": "audio/*, application/octet-stream;q=0.9, */*;q=0.5"}
# Keep at most this much of an error body (bytes) for the error excerpt.
_ERROR_BODY_KEEP = settings.ERROR_BODY_MAX_CHARS * 4
#: Fan-out workers per in-flight slot: items waiting out a Retry-After (1 s) or a backoff
#: hold a worker but no slot. 20 % of 600 req/s answered ``Retry-After: 1`` parks ~120.
_WORKERS_PER_SLOT = 16


# --- response shapes ------------------------------------------------------------------


def _parse_listing(data: Any) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    if not isinstance(data, dict) or not isinstance(data.get("cdrs"), list):
        raise InvalidResponseError("Listing body has no 'cdrs' list", status=200)
    items = data["cdrs"]
    if not all(isinstance(item, dict) for item in items):
        raise InvalidResponseError("Listing 'cdrs' holds a non-object item", status=200)
    pagination = data.get("pagination")
    return items, pagination if isinstance(pagination, dict) else None


def _parse_detail(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict) or not isinstance(data.get("cdr"), dict):
        raise InvalidResponseError("Detail body has no 'cdr' object", status=200)
    cdr: dict[str, Any] = data["cdr"]
    return cdr


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


class _ListingScan:
    """Page bookkeeping for one listing scan: dedupe by uuid, decide when to stop."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.page = 1

    def accept(
        self, items: list[dict[str, Any]], pagination: dict[str, Any] | None
    ) -> tuple[ListingPage, bool]:
        """The page to yield, and whether another page should be fetched."""
        fresh: list[dict[str, Any]] = []
        duplicates = 0
        for item in items:
            uuid = item.get("uuid")
            if uuid is None:  # no key to dedupe on; normalize will reject it
                fresh.append(item)
                continue
            key = str(uuid)
            if key in self.seen:  # pushed onto this page by calls that ended meanwhile
                duplicates += 1
                continue
            self.seen.add(key)
            fresh.append(item)
        total_pages = _int_or_none(pagination.get("total_pages")) if pagination else None
        total_count = _int_or_none(pagination.get("total_count")) if pagination else None
        page = ListingPage(self.page, fresh, total_pages, total_count, duplicates)
        more = (
            pagination is not None  # no pagination object: a single page
            and not ("next_page" in pagination and not pagination["next_page"])
            and not (total_pages is not None and self.page >= total_pages)
            and ("next_page" in pagination or total_pages is not None)
            and bool(items)  # an empty page never leads anywhere; avoid looping
        )
        self.page += 1
        return page, more


def _listing_params(page: int, limit: int, filters: Mapping[str, Any] | None) -> dict[str, Any]:
    params: dict[str, Any] = dict(filters or {})
    params.update(page=page, limit=limit)
    return params


# --- shared machinery -------------------------------------------------------------------


class _ClientCore:
    """State and pure helpers shared by the sync and async clients."""

    def __init__(
        self,
        config: ClientConfig | None,
        *,
        stats: ClientStats | None,
        tokens: TokenManager | None,
        token_transport: httpx.BaseTransport | None,
        pacer: RatePacer | None,
        rng: random.Random | None,
        clock: Callable[[], float] | None,
        sleep: SyncSleep | None,
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
        return {
            "auth": BulutfonAuth(self.tokens),
            "timeout": httpx.Timeout(config.timeout_s, connect=config.connect_timeout_s),
            "headers": {"User-Agent": config.user_agent, "Accept": "application/json"},
            "limits": httpx.Limits(
                max_connections=config.max_concurrency + 4,
                max_keepalive_connections=config.max_concurrency + 4,
            ),
            "follow_redirects": True,
        }

    def _count_request(self, _request: httpx.Request) -> None:
        self.stats.incr("requests")

    def _evaluate(
        self,
        response: httpx.Response,
        url: str,
        parse: Callable[[Any], T],
        keep_text: str | None = None,
    ) -> Outcome:
        """The outcome of one response; ``keep_text``: a top-level member whose object
        value keeps its exact JSON text (:class:`~bulutfon_pipeline.jsonio.JSONObject`)."""
        status = response.status_code
        if 200 <= status < 300:
            body = response.content
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
            body=response.content[:_ERROR_BODY_KEEP],
            url=url,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )

    def _next_delay(self, outcome: Outcome, attempt: int) -> float | None:
        """Count the failure; the delay before the next attempt, or None to give up."""
        if outcome.status == 429:
            self.stats.incr("rate_limited")
        if not should_retry(outcome, attempt, self.config.max_retries):
            return None
        self.stats.incr("retries")
        delay = retry_delay(
            attempt,
            outcome.retry_after,
            base_s=self.config.backoff_base_s,
            max_s=self.config.backoff_max_s,
            retry_after_cap_s=self.config.retry_after_cap_s,
            rng=self._rng,
        )
        logger.debug(
            "Retrying GET %s (%s) in %.2fs, retry %d of %d",
            redact(outcome.url),
            _describe(outcome),
            delay,
            attempt + 1,
            self.config.max_retries,
        )
        return delay

    def _give_up(self, outcome: Outcome, attempts: int) -> BulutfonError:
        error = final_error(outcome, attempts)
        self.stats.incr("not_found" if isinstance(error, NotFoundError) else "errors")
        return error

    def _url(self, url: str, params: Mapping[str, Any] | None) -> str:
        return str(httpx.URL(url, params=dict(params))) if params else url


def _describe(outcome: Outcome) -> str:
    if outcome.transport is not None:
        return outcome.transport.message
    if outcome.invalid is not None:
        return "unusable body"
    return f"status {outcome.status}"


class _Download:
    """A recording being streamed into a temp file next to its destination."""

    def __init__(self, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        self.dest = dest
        self.tmp = Path(tmp)
        self.file = os.fdopen(fd, "wb")
        self.sha = hashlib.sha256()
        self.size = 0
        self.head = b""

    def write(self, chunk: bytes) -> None:
        if len(self.head) < MAGIC_BYTES_NEEDED:
            self.head += chunk[: MAGIC_BYTES_NEEDED - len(self.head)]
        self.file.write(chunk)
        self.sha.update(chunk)
        self.size += len(chunk)

    def finish(self, content_type: str | None, url: str) -> Outcome:
        """fsync, detect the format, rename to ``<dest>.<ext>``."""
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        ext = detect_audio_format(self.head, content_type) if self.size else None
        if ext is None:
            invalid = InvalidResponseError(
                f"GET {redact(url)} answered 200 with {self.size} bytes of "
                f"unrecognised content ({content_type or 'no Content-Type'})",
                status=200,
                body_excerpt=make_excerpt(self.head) if content_type else "",
                url=url,
            )
            return Outcome(status=200, url=url, invalid=invalid)
        final = Path(f"{self.dest}.{ext}")
        os.replace(self.tmp, final)
        return Outcome(
            value=RecordingFile(final, content_type, self.size, self.sha.hexdigest()),
            status=200,
            url=url,
        )

    def discard(self) -> None:
        if not self.file.closed:
            self.file.close()
        self.tmp.unlink(missing_ok=True)


# --- sync client --------------------------------------------------------------------------


class BulutfonClient(_ClientCore):
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
        super().__init__(
            config,
            stats=stats,
            tokens=tokens,
            token_transport=transport,
            pacer=None,
            rng=rng,
            clock=clock,
            sleep=sleep,
        )
        self._sleep: SyncSleep = sleep or time.sleep
        self._async_sleep = async_sleep
        if async_transport is None and isinstance(transport, httpx.AsyncBaseTransport):
            async_transport = transport
        self._async_transport = async_transport
        self._http = httpx.Client(
            transport=transport,
            event_hooks={"request": [self._count_request]},
            **self._httpx_kwargs(),
        )

    # -- lifecycle

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> BulutfonClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
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

    # -- core loop

    def _pace(self) -> None:
        if self.pacer is not None:
            delay = self.pacer.reserve()
            if delay > 0:
                self._sleep(delay)

    def _get_json(
        self,
        url: str,
        params: Mapping[str, Any] | None,
        parse: Callable[[Any], T],
        keep_text: str | None = None,
    ) -> T:
        self.tokens.mode  # noqa: B018 - raise ConfigError before any I/O without credentials
        full_url = self._url(url, params)
        attempt = 0
        while True:
            self._pace()
            try:
                response = self._http.get(url, params=params)
            except httpx.HTTPError as exc:
                outcome = Outcome(url=full_url, transport=transport_error(exc, url))
            except BulutfonError as exc:  # raised by the auth flow (refresh rejected)
                outcome = Outcome(url=full_url, fatal=exc)
            else:
                outcome = self._evaluate(response, full_url, parse, keep_text)
            if outcome.ok:
                return outcome.value
            delay = self._next_delay(outcome, attempt)
            if delay is None:
                break
            self._sleep(delay)
            attempt += 1
        # Raised outside the except blocks: the httpx exception (with the full URL) is
        # not chained as __context__.
        raise self._give_up(outcome, attempt + 1)

    # -- endpoints

    def iter_listing_pages(
        self, limit: int | None = None, *, filters: Mapping[str, Any] | None = None
    ) -> Generator[ListingPage, None, None]:
        """Page through the CDR listing, newest first, one :class:`ListingPage` at a time.

        Builds each page URL itself (``page``/``limit``), stops when ``next_page`` is null
        or ``page >= total_pages``; a body without ``pagination`` is a single page. Items
        whose uuid was already seen in this scan are dropped (the list is live). Stop
        iterating whenever you have what you need.

        Args:
            limit: page size; ``config.page_size`` by default.
            filters: extra documented filters (``caller``, ``missing_call``, ...).

        Raises:
            ConfigError, AuthError, RateLimitedError, ServerError, InvalidResponseError,
            TransportError: as soon as a page cannot be fetched.
        """
        size = limit or self.config.page_size
        scan = _ListingScan()
        while True:
            params = _listing_params(scan.page, size, filters)
            items, pagination = self._get_json(self.config.list_url, params, _parse_listing)
            page, more = scan.accept(items, pagination)
            yield page
            if not more:
                return

    def get_detail(self, uuid: str) -> dict[str, Any]:
        """One call's detail: the inner ``cdr`` object, with its ``call_flow``.

        Raises:
            NotFoundError: no such call (404).
            InvalidResponseError: the body has no ``cdr`` object, after every retry.
            AuthError, RateLimitedError, ServerError, TransportError, ConfigError.
        """
        return self._get_json(self.config.detail_url(uuid), None, _parse_detail, "cdr")

    def fetch_details(self, uuids: Iterable[str]) -> Generator[DetailResult, None, None]:
        """Fetch many details concurrently; results stream in completion order.

        Runs :meth:`AsyncBulutfonClient.fetch_details` on an event loop in a background
        thread; at most ``2 * max_concurrency`` finished results wait for the caller.
        ``uuids`` is consumed lazily in that thread. Per-item failures (404, bad body) are
        reported in :attr:`DetailResult.error`; closing the iterator early cancels the
        remaining requests.
        """
        self.tokens.mode  # noqa: B018 - fail fast, in the caller's thread
        return self._drain_async(lambda client: client.fetch_details(uuids), "fetch-details")

    def download_recordings(
        self, items: Iterable[tuple[str, Path]]
    ) -> Generator[RecordingResult, None, None]:
        """Download many recordings concurrently; results stream in completion order.

        The batch form of :meth:`download_recording`, with the same adaptive fan-out as
        :meth:`fetch_details` (:meth:`AsyncBulutfonClient.download_recordings` on a
        background event loop). ``items`` are ``(uuid, dest_without_suffix)`` pairs,
        consumed lazily. Per-item failures (404, unrecognisable audio, exhausted retries)
        are reported in :attr:`RecordingResult.error`.
        """
        self.tokens.mode  # noqa: B018 - fail fast, in the caller's thread
        return self._drain_async(
            lambda client: client.download_recordings(items), "download-recordings"
        )

    def _drain_async(
        self, start: Callable[[AsyncBulutfonClient], AsyncGenerator[T, None]], name: str
    ) -> Generator[T, None, None]:
        """Run ``start(async_client)`` on an event loop in a background thread and yield
        its items here, with at most ``2 * max_concurrency`` finished items waiting."""
        backlog = 2 * self.config.max_concurrency
        handoff: queue.Queue[tuple[str, Any]] = queue.Queue()
        started = threading.Event()
        runtime: dict[str, Any] = {}

        async def pump() -> None:
            credits = asyncio.Semaphore(backlog)
            runtime.update(
                loop=asyncio.get_running_loop(), credits=credits, task=asyncio.current_task()
            )
            started.set()
            async with (
                self.async_client() as client,
                contextlib.aclosing(start(client)) as results,
            ):
                async for result in results:
                    await credits.acquire()  # released by the consumer, per item
                    handoff.put(("item", result))

        def run() -> None:
            try:
                asyncio.run(pump())
                handoff.put(("done", None))
            except asyncio.CancelledError:
                handoff.put(("done", None))
            except BaseException as exc:
                handoff.put(("error", exc))
            finally:
                started.set()

        thread = threading.Thread(target=run, name=f"bulutfon-{name}", daemon=True)
        thread.start()
        started.wait()
        try:
            while True:
                kind, value = handoff.get()
                if kind == "item":
                    # The pump may already have finished (and its loop closed) while
                    # items still wait here; nothing needs the credit back then.
                    with contextlib.suppress(RuntimeError):
                        runtime["loop"].call_soon_threadsafe(runtime["credits"].release)
                    yield value
                elif kind == "done":
                    return
                else:
                    raise value
        finally:
            if thread.is_alive() and "loop" in runtime:
                with contextlib.suppress(RuntimeError):  # the loop already closed
                    runtime["loop"].call_soon_threadsafe(runtime["task"].cancel)
            thread.join()

    def download_recording(self, uuid: str, dest_without_suffix: Path) -> RecordingFile:
        """Stream a call's recording to ``<dest_without_suffix>.<wav|ogg|mp3>``.

        The body is streamed into a temp file in the destination directory (never held
        in memory), hashed, its format detected from magic bytes or ``Content-Type``, and
        renamed atomically into place.

        Raises:
            NotFoundError: no recording (404).
            InvalidResponseError: the content is not recognisable audio, after retries.
            AuthError, RateLimitedError, ServerError, TransportError, ConfigError.
        """
        self.tokens.mode  # noqa: B018
        url = self.config.recording_url(uuid)
        dest = Path(dest_without_suffix)
        attempt = 0
        while True:
            self._pace()
            outcome = self._download_once(url, dest)
            if outcome.ok:
                return outcome.value
            delay = self._next_delay(outcome, attempt)
            if delay is None:
                break
            self._sleep(delay)
            attempt += 1
        raise self._give_up(outcome, attempt + 1)

    def _download_once(self, url: str, dest: Path) -> Outcome:
        download: _Download | None = None
        try:
            with self._http.stream("GET", url, headers=_AUDIO_ACCEPT) as response:
                if response.status_code != 200:
                    response.read()
                    return self._evaluate(response, url, lambda data: data)
                download = _Download(dest)
                for chunk in response.iter_bytes():
                    download.write(chunk)
                outcome = download.finish(response.headers.get("Content-Type"), url)
                if outcome.ok:
                    download = None  # renamed into place: nothing to clean up
                return outcome
        except httpx.HTTPError as exc:
            return Outcome(url=url, transport=transport_error(exc, url))
        except BulutfonError as exc:
            return Outcome(url=url, fatal=exc)
        finally:
            if download is not None:
                download.discard()


# --- async client ------------------------------------------------------------------------


class AsyncBulutfonClient(_ClientCore):
    """Asynchronous Bulutfon API client (asyncio). Use as an async context manager.

    Arguments as for :class:`BulutfonClient`; ``sleep`` is an async sleep, and ``pacer``
    shares an RPS budget with another client.
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
            config,
            stats=stats,
            tokens=tokens,
            token_transport=token_transport,
            pacer=pacer,
            rng=rng,
            clock=clock,
            sleep=None,
        )
        self._sleep: AsyncSleep = sleep or asyncio.sleep
        #: The limiter of the latest fan-out, for metadata and tests (limit, decreases...).
        self.last_limiter: AdaptiveLimiter | None = None
        kwargs = self._httpx_kwargs()
        if transport is None:  # httpx over aiohttp's engine: half the CPU per request
            transport = fan_out_transport(kwargs["limits"])
        self._http = httpx.AsyncClient(
            transport=transport,
            event_hooks={"request": [self._count_request_async]},
            **kwargs,
        )

    async def _count_request_async(self, request: httpx.Request) -> None:
        self._count_request(request)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncBulutfonClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _pace(self) -> None:
        if self.pacer is not None:
            delay = self.pacer.reserve()
            if delay > 0:
                await self._sleep(delay)

    async def _get_json(
        self,
        url: str,
        params: Mapping[str, Any] | None,
        parse: Callable[[Any], T],
        keep_text: str | None = None,
        *,
        limiter: AdaptiveLimiter | None = None,
    ) -> T:
        self.tokens.mode  # noqa: B018
        full_url = self._url(url, params)

        async def attempt_once() -> Outcome:
            try:
                response = await self._http.get(url, params=params)
            except httpx.HTTPError as exc:
                return Outcome(url=full_url, transport=transport_error(exc, url))
            except BulutfonError as exc:
                return Outcome(url=full_url, fatal=exc)
            return self._evaluate(response, full_url, parse, keep_text)

        value: T = await self._with_retries(attempt_once, limiter)
        return value

    async def _with_retries(
        self, attempt_once: Callable[[], Awaitable[Outcome]], limiter: AdaptiveLimiter | None
    ) -> Any:
        """Repeat ``attempt_once`` until it succeeds or :func:`should_retry` says stop.

        Every attempt holds a limiter slot, is paced (``max_rps`` and the limiter's pace)
        and reports to the limiter; waits honour Retry-After or back off with jitter.
        """
        attempt = 0
        while True:
            if limiter is None:
                await self._pace()
                outcome = await attempt_once()
            else:
                # The slot is held for the attempt only: a request waiting out its
                # Retry-After or backoff is re-queued and leaves its slot to others.
                async with limiter.slot():
                    await self._pace()
                    if (wait := limiter.pace()) > 0:
                        await self._sleep(wait)
                    mark = limiter.start_attempt()
                    outcome = await attempt_once()
                if outcome.status == 429:
                    await limiter.on_rate_limited(mark)
                elif outcome.ok:
                    await limiter.on_success(mark)
            if outcome.ok:
                return outcome.value
            delay = self._next_delay(outcome, attempt)
            if delay is None:
                break
            if limiter is not None and outcome.status == 429 and outcome.retry_after is None:
                # The limiter's pace, not this request's backoff, keeps the rate under the
                # limit: a long backoff would only leave the request behind for the tail.
                delay = min(delay, limiter.RETRY_429_MAX_S)
            await self._sleep(delay)
            attempt += 1
        raise self._give_up(outcome, attempt + 1)

    async def iter_listing_pages(
        self, limit: int | None = None, *, filters: Mapping[str, Any] | None = None
    ) -> AsyncGenerator[ListingPage, None]:
        """Async :meth:`BulutfonClient.iter_listing_pages`."""
        size = limit or self.config.page_size
        scan = _ListingScan()
        while True:
            params = _listing_params(scan.page, size, filters)
            items, pagination = await self._get_json(self.config.list_url, params, _parse_listing)
            page, more = scan.accept(items, pagination)
            yield page
            if not more:
                return

    async def get_detail(self, uuid: str) -> dict[str, Any]:
        """Async :meth:`BulutfonClient.get_detail`."""
        return await self._get_json(self.config.detail_url(uuid), None, _parse_detail, "cdr")

    async def fetch_details(self, uuids: Iterable[str]) -> AsyncGenerator[DetailResult, None]:
        """Fetch many details under adaptive flow control.

        Workers pull uuids lazily from ``uuids``; at most ``max_concurrency`` requests
        are in flight, and an :class:`~bulutfon_pipeline.api.concurrency.AdaptiveLimiter`
        paces their starts once the API's 429s show a rate limit (sporadic 429s do not
        slow it down). A request answered 429 or 5xx waits out its ``Retry-After`` or
        backoff without holding a slot, then goes again. ``max_rps``, when set, spaces
        request starts on top. Results are yielded as they complete through a queue of
        ``max_concurrency`` entries, so memory is bounded by the concurrency (times
        ``_WORKERS_PER_SLOT`` items being worked on), not by the number of uuids. A
        failure (404, bad body, exhausted retries) is reported in that item's
        :attr:`DetailResult.error` and never stops the batch.

        Raises:
            ConfigError: no credentials (before any request).
        """
        self.tokens.mode  # noqa: B018

        async def fetch_one(uuid: str, limiter: AdaptiveLimiter) -> DetailResult:
            try:
                payload = await self._get_json(
                    self.config.detail_url(uuid), None, _parse_detail, "cdr", limiter=limiter
                )
            except BulutfonError as exc:
                return DetailResult(uuid, None, exc)
            return DetailResult(uuid, payload, None)

        async for result in self._fan_out(uuids, fetch_one):
            yield result

    async def _fan_out(
        self,
        items: Iterable[_Item],
        fetch_one: Callable[[_Item, AdaptiveLimiter], Awaitable[_Result]],
    ) -> AsyncGenerator[_Result, None]:
        """Run ``fetch_one`` over ``items`` under one adaptive flow-control limiter.

        Workers pull items lazily from a shared iterator, so each item
        goes to one worker and nothing is materialized up front; results come back through
        a queue of ``max_concurrency`` entries as they complete. ``fetch_one`` reports a
        per-item failure in its result; any other exception (a bug, a failing item
        source) is re-raised here after the workers are cancelled.
        """
        limiter = AdaptiveLimiter(self.config.max_concurrency)
        self.last_limiter = limiter
        # The limiter's slots cap the requests in flight; more workers than slots keep
        # them busy while other items wait out a Retry-After or a backoff.
        workers = self.config.max_concurrency * _WORKERS_PER_SLOT
        source = iter(items)
        done = object()
        results: asyncio.Queue[Any] = asyncio.Queue(maxsize=self.config.max_concurrency)

        async def worker() -> None:
            try:
                for item in source:
                    result = await fetch_one(item, limiter)
                    await results.put(result)
            except Exception as exc:  # a bug or a failing item source: surface it
                await results.put(_Crash(exc))
            await results.put(done)

        tasks = [asyncio.create_task(worker()) for _ in range(workers)]
        finished = 0
        try:
            while finished < workers:
                got = await results.get()
                if got is done:
                    finished += 1
                elif isinstance(got, _Crash):
                    raise got.error
                else:
                    yield got
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def download_recording(
        self,
        uuid: str,
        dest_without_suffix: Path,
        *,
        limiter: AdaptiveLimiter | None = None,
    ) -> RecordingFile:
        """Async :meth:`BulutfonClient.download_recording` (file writes are small, sync)."""
        self.tokens.mode  # noqa: B018
        url = self.config.recording_url(uuid)
        dest = Path(dest_without_suffix)
        file: RecordingFile = await self._with_retries(
            lambda: self._download_once(url, dest), limiter
        )
        return file

    async def download_recordings(
        self, items: Iterable[tuple[str, Path]]
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
        self.tokens.mode  # noqa: B018

        async def download_one(item: tuple[str, Path], limiter: AdaptiveLimiter) -> RecordingResult:
            uuid, dest = item
            try:
                file = await self.download_recording(uuid, dest, limiter=limiter)
            except BulutfonError as exc:
                return RecordingResult(uuid, None, exc)
            return RecordingResult(uuid, file, None)

        async for result in self._fan_out(items, download_one):
            yield result

    async def _download_once(self, url: str, dest: Path) -> Outcome:
        download: _Download | None = None
        try:
            async with self._http.stream("GET", url, headers=_AUDIO_ACCEPT) as response:
                if response.status_code != 200:
                    await response.aread()
                    return self._evaluate(response, url, lambda data: data)
                download = _Download(dest)
                async for chunk in response.aiter_bytes():
                    download.write(chunk)
                outcome = download.finish(response.headers.get("Content-Type"), url)
                if outcome.ok:
                    download = None
                return outcome
        except httpx.HTTPError as exc:
            return Outcome(url=url, transport=transport_error(exc, url))
        except BulutfonError as exc:
            return Outcome(url=url, fatal=exc)
        finally:
            if download is not None:
                download.discard()


class _Crash:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error
