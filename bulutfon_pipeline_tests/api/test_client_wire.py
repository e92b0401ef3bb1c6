"""Small wire tests of the client against httpx.MockTransport apps."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from bulutfon_pipeline.api import (
    APIError,
    AsyncBulutfonClient,
    AuthError,
    BulutfonClient,
    ConfigError,
    ConnectError,
    InvalidResponseError,
    NotFoundError,
    RateLimitedError,
    ServerError,
)
from bulutfon_pipeline.jsonio import JSONObject

from ._support import API, Sleeps, fast_config

Handler = Any


def client_for(
    tmp_path: Path, handler: Handler, sleeps: Sleeps | None = None, **config: Any
) -> BulutfonClient:
    sleeps = sleeps or Sleeps()
    return BulutfonClient(
        fast_config(tmp_path, **config),
        transport=httpx.MockTransport(handler),
        sleep=sleeps,
        async_sleep=sleeps.asleep,
    )


def cdr(uuid: str) -> dict[str, Any]:
    return {"uuid": uuid, "direction": "IN", "caller": 905320000000}


# --- headers and auth ---------------------------------------------------------------------


def test_user_agent_and_master_token_as_query_parameter(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"cdr": cdr("u1")})

    with client_for(tmp_path, handler) as client:
        assert client.get_detail("u1") == cdr("u1")
    (request,) = seen
    assert request.url.path == "/cdr/u1.json"
    assert request.url.params["access_token"] == "master-tok-000001"
    assert request.headers["User-Agent"].startswith("bulutfon-pipeline/")
    assert "Authorization" not in request.headers


def test_no_credentials_fail_on_call_not_construction(tmp_path: Path) -> None:
    client = client_for(tmp_path, lambda r: httpx.Response(200), access_token=None)
    with client, pytest.raises(ConfigError, match="No Bulutfon credentials"):
        client.get_detail("u1")
    assert client.stats.requests == 0


# --- listing ---------------------------------------------------------------------------------


def paged_app(items: list[dict[str, Any]], *, page_size_seen: list[int]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["page"])
        limit = int(request.url.params["limit"])
        page_size_seen.append(limit)
        total_pages = max(1, -(-len(items) // limit))
        chunk = items[(page - 1) * limit : page * limit]
        next_page = f"{API}/cdr.json?page={page + 1}" if page < total_pages else None
        return httpx.Response(
            200,
            json={
                "cdrs": chunk,
                "pagination": {
                    "page": page,
                    "limit": limit,
                    "total_count": len(items),
                    "total_pages": total_pages,
                    "previous_page": None,
                    "next_page": next_page,
                },
            },
        )

    return handler


def test_listing_pages_until_next_page_is_null(tmp_path: Path) -> None:
    items = [cdr(f"u{i}") for i in range(25)]
    limits: list[int] = []
    with client_for(tmp_path, paged_app(items, page_size_seen=limits)) as client:
        pages = list(client.iter_listing_pages(limit=10))
    assert [p.page for p in pages] == [1, 2, 3]
    assert [len(p.items) for p in pages] == [10, 10, 5]
    assert pages[0].total_pages == 3 and pages[0].total_count == 25
    assert limits == [10, 10, 10]  # our limit is sent on every page (next_page drops it)
    assert [i["uuid"] for p in pages for i in p.items] == [i["uuid"] for i in items]


def test_listing_is_a_generator_the_caller_can_stop(tmp_path: Path) -> None:
    limits: list[int] = []
    app = paged_app([cdr(f"u{i}") for i in range(100)], page_size_seen=limits)
    with client_for(tmp_path, app) as client:
        first = next(iter(client.iter_listing_pages(limit=10)))
    assert first.page == 1
    assert len(limits) == 1  # nothing fetched ahead


def test_listing_without_pagination_is_one_page(tmp_path: Path) -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        return httpx.Response(200, json={"cdrs": [cdr("a"), cdr("b")]})

    with client_for(tmp_path, handler) as client:
        pages = list(client.iter_listing_pages())
    assert len(pages) == 1 and len(calls) == 1
    assert pages[0].total_pages is None and [i["uuid"] for i in pages[0].items] == ["a", "b"]


def test_listing_dedupes_items_pushed_onto_the_next_page(tmp_path: Path) -> None:
    pages_content = {1: ["n3", "n2", "n1"], 2: ["n1", "o1", "o2"], 3: ["o2", "o3"]}

    def handler(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["page"])
        return httpx.Response(
            200,
            json={
                "cdrs": [cdr(u) for u in pages_content[page]],
                "pagination": {
                    "page": page,
                    "total_pages": 3,
                    "next_page": "x" if page < 3 else None,
                },
            },
        )

    with client_for(tmp_path, handler) as client:
        pages = list(client.iter_listing_pages(limit=3))
    assert [[i["uuid"] for i in p.items] for p in pages] == [
        ["n3", "n2", "n1"],
        ["o1", "o2"],
        ["o3"],
    ]
    assert [p.duplicates for p in pages] == [0, 1, 1]


def test_listing_stops_at_total_pages_even_with_a_next_link(tmp_path: Path) -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(int(request.url.params["page"]))
        body = {
            "cdrs": [cdr(f"p{calls[-1]}")],
            "pagination": {"total_pages": 2, "next_page": "always"},
        }
        return httpx.Response(200, json=body)

    with client_for(tmp_path, handler) as client:
        assert len(list(client.iter_listing_pages())) == 2
    assert calls == [1, 2]


# --- detail, retries and typed errors ------------------------------------------------------


def scripted(*responses: httpx.Response | Exception) -> tuple[Handler, list[httpx.Request]]:
    """A handler answering with ``responses`` in order (the last one repeats)."""
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        answer = responses[min(len(requests), len(responses)) - 1]
        if isinstance(answer, Exception):
            raise answer
        # a fresh copy: a Response object cannot be sent twice
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    return handler, requests


OK = httpx.Response(200, json={"cdr": cdr("u1")})


def ok(_request: httpx.Request | None = None) -> httpx.Response:
    return httpx.Response(200, json={"cdr": cdr("u1")})


def test_429_honours_retry_after_then_succeeds(tmp_path: Path) -> None:
    handler, requests = scripted(
        httpx.Response(429, headers={"Retry-After": "7"}),
        httpx.Response(429, headers={"Retry-After": "500"}),  # capped
        OK,
    )
    sleeps = Sleeps()
    with client_for(tmp_path, handler, sleeps, retry_after_cap_s=30.0) as client:
        assert client.get_detail("u1")["uuid"] == "u1"
        assert client.stats.as_dict() == {
            "requests": 3,
            "retries": 2,
            "rate_limited": 2,
            "refreshes": 0,
            "errors": 0,
            "not_found": 0,
        }
    assert sleeps.delays == [7.0, 30.0]
    assert len(requests) == 3


def test_429_without_retry_after_backs_off_then_gives_up(tmp_path: Path) -> None:
    handler, requests = scripted(httpx.Response(429, json={"error": "Too Many Requests"}))
    sleeps = Sleeps()
    with client_for(tmp_path, handler, sleeps, backoff_base_s=1.0, max_retries=3) as client:
        with pytest.raises(RateLimitedError) as info:
            client.get_detail("u1")
        assert client.stats.rate_limited == 4 and client.stats.errors == 1
    assert len(requests) == 4
    assert [d <= 2**i for i, d in enumerate(sleeps.delays)] == [True, True, True]
    assert info.value.status == 429 and "Too Many Requests" in info.value.body_excerpt


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(503, text="<html><body>Service Unavailable</body></html>"),  # 5xx, HTML
        httpx.Response(200, content=b'{"cdr": {"uuid": "u1", "call_fl'),  # body cut by a proxy
        httpx.Response(200, json={"error": "temporarily"}),  # 200 with the wrong shape
        httpx.ReadTimeout("timed out"),  # no answer in time
        httpx.RemoteProtocolError("peer closed connection"),  # connection cut mid-body
    ],
)
def test_transient_failures_are_retried(tmp_path: Path, failure: Any) -> None:
    handler, requests = scripted(failure, failure, OK)
    with client_for(tmp_path, handler) as client:
        assert client.get_detail("u1") == cdr("u1")
        assert client.stats.retries == 2
    assert len(requests) == 3


@pytest.mark.parametrize(
    ("failure", "error_type"),
    [
        (httpx.Response(500, text="boom"), ServerError),
        (httpx.Response(200, content=b"<html>proxy</html>"), InvalidResponseError),
        (httpx.Response(200, json={"no": "cdr"}), InvalidResponseError),
        # Python's parser takes NaN; it is not JSON, and DuckDB's JSON type refuses it
        (
            httpx.Response(200, content=b'{"cdr": {"uuid": "u1", "call_price": NaN}}'),
            InvalidResponseError,
        ),
        # it reads 1e400 as inf, which DuckDB's JSON type refuses as well
        (
            httpx.Response(200, content=b'{"cdr": {"uuid": "u1", "call_price": 1e400}}'),
            InvalidResponseError,
        ),
        # and a lone surrogate, which no UTF-8 string (DuckDB's VARCHAR) can hold
        (
            httpx.Response(200, content=b'{"cdr": {"uuid": "u1", "caller": "\\ud800"}}'),
            InvalidResponseError,
        ),
    ],
)
def test_persistent_failures_raise_typed_errors(
    tmp_path: Path, failure: httpx.Response, error_type: type[APIError]
) -> None:
    handler, requests = scripted(failure)
    with client_for(tmp_path, handler, max_retries=2) as client, pytest.raises(error_type):
        client.get_detail("u1")
    assert len(requests) == 3


def test_bodies_decode_exactly_with_a_byte_order_mark_and_long_integers(tmp_path: Path) -> None:
    body = '\ufeff{"cdr": {"uuid": "u1", "caller": 123456789012345678901234567890, "x": "ç"}}'
    handler, requests = scripted(httpx.Response(200, content=body.encode("utf-8")))
    with client_for(tmp_path, handler) as client:
        detail = client.get_detail("u1")
    assert detail == {"uuid": "u1", "caller": 123456789012345678901234567890, "x": "ç"}
    assert type(detail["caller"]) is int and len(requests) == 1


def test_a_detail_keeps_its_exact_text_for_the_raw_table(tmp_path: Path) -> None:
    inner = '{ "uuid": "u1",\n  "caller": 905320000000, "x": "\\u00e7ok", "p": 1.50 }'
    body = '{"meta": {"v": 1}, "cdr": ' + inner + "}"
    handler, _ = scripted(httpx.Response(200, content=body.encode("utf-8")))
    with client_for(tmp_path, handler) as client:
        detail = client.get_detail("u1")
    assert detail == {"uuid": "u1", "caller": 905320000000, "x": "çok", "p": 1.5}
    assert isinstance(detail, JSONObject) and detail.text == inner


@pytest.mark.parametrize(
    ("response", "error_type"),
    [
        (httpx.Response(400, json={"error": "bad"}), APIError),  # other 4xx: final at once
        (httpx.Response(401, json={"error": "Invalid token"}), AuthError),
        (httpx.Response(403, json={"error": "forbidden"}), AuthError),
        (httpx.Response(404, json={"error": "not found"}), NotFoundError),
    ],
)
def test_4xx_is_not_retried(
    tmp_path: Path, response: httpx.Response, error_type: type[APIError]
) -> None:
    handler, requests = scripted(response)
    with client_for(tmp_path, handler) as client:
        with pytest.raises(error_type) as info:
            client.get_detail("u1")
        assert type(info.value) is error_type
        expected_counter = "not_found" if error_type is NotFoundError else "errors"
        assert client.stats.as_dict()[expected_counter] == 1
    assert len(requests) == 1
    assert "master-tok-000001" not in str(info.value)


def test_unreachable_host_names_the_host_and_hides_the_url(tmp_path: Path) -> None:
    handler, requests = scripted(httpx.ConnectError("[Errno 111] Connection refused"))
    client = client_for(tmp_path, handler, max_retries=1)
    with client, pytest.raises(ConnectError) as info:
        client.get_detail("u1")
    assert len(requests) == 2
    assert str(info.value).startswith(
        "Cannot reach https://api.test: connection refused — check BULUTFON_API_URL"
    )
    # nothing chained: a traceback cannot print the httpx exception (with the full URL)
    assert info.value.__cause__ is None and info.value.__context__ is None


def test_httpx_log_lines_are_redacted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with client_for(tmp_path, ok) as client:
        client.get_detail("u1")
    assert any("HTTP Request" in r.getMessage() for r in caplog.records)
    assert "master-tok-000001" not in caplog.text


# --- fan-out -------------------------------------------------------------------------------


def test_fetch_details_reports_404_per_item_and_never_aborts(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        uuid = request.url.path.split("/")[-1].removesuffix(".json")
        if uuid.startswith("gone"):
            return httpx.Response(404, json={"error": "Not found"})
        if uuid.startswith("bad"):
            return httpx.Response(200, content=b"<html>")
        return httpx.Response(200, json={"cdr": cdr(uuid)})

    uuids = [f"ok{i}" for i in range(40)] + ["gone1", "bad1", "gone2"]
    with client_for(tmp_path, handler, max_concurrency=4, max_retries=1) as client:
        results = {r.uuid: r for r in client.fetch_details(uuids)}
        stats = client.stats.as_dict()
    assert set(results) == set(uuids)
    assert all(results[f"ok{i}"].payload == cdr(f"ok{i}") for i in range(40))
    assert isinstance(results["gone1"].error, NotFoundError) and results["gone1"].payload is None
    assert isinstance(results["bad1"].error, InvalidResponseError)
    assert stats["not_found"] == 2 and stats["errors"] == 1
    assert stats["requests"] == 40 + 2 + 2  # the bad body was retried once


def test_fetch_details_sync_iterator_can_stop_early(tmp_path: Path) -> None:
    consumed: list[str] = []

    def uuids() -> Any:
        for i in range(100_000):
            consumed.append(str(i))
            yield f"u{i}"

    with client_for(tmp_path, ok, max_concurrency=4) as client:
        results = client.fetch_details(uuids())
        first = [next(results) for _ in range(5)]
        results.close()
    assert len(first) == 5
    assert len(consumed) < 100  # bounded read-ahead, not the whole input


def test_fan_out_requeues_a_retry_after_429_without_holding_its_slot(tmp_path: Path) -> None:
    # One slot; u0's first answer is 429 with Retry-After: 1. Its wait lasts until every
    # other uuid is done: with the slot held during the wait, nothing else could be fetched.
    state = {"in_flight": 0, "max_in_flight": 0}
    answered: list[str] = []
    others_done = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        state["in_flight"] += 1
        state["max_in_flight"] = max(state["max_in_flight"], state["in_flight"])
        await asyncio.sleep(0)
        state["in_flight"] -= 1
        uuid = request.url.path.split("/")[-1].removesuffix(".json")
        if uuid == "u0" and "u0" not in answered:
            answered.append(uuid)
            return httpx.Response(429, headers={"Retry-After": "1"}, json={"error": "slow"})
        answered.append(uuid)
        if len(set(answered)) == 10:
            others_done.set()
        return httpx.Response(200, json={"cdr": cdr(uuid)})

    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await others_done.wait()

    async def run() -> tuple[list[str], Any]:
        config = fast_config(tmp_path, max_concurrency=1)
        async with AsyncBulutfonClient(
            config, transport=httpx.MockTransport(handler), sleep=sleep
        ) as client:
            done = [r.uuid async for r in client.fetch_details(f"u{i}" for i in range(10)) if r.ok]
            return done, client.last_limiter

    done, limiter = asyncio.run(asyncio.wait_for(run(), timeout=30))
    assert done == [f"u{i}" for i in range(1, 10)] + ["u0"]  # u0 re-queued behind the rest
    assert answered == ["u0", *(f"u{i}" for i in range(1, 10)), "u0"]
    assert waits == [1.0]  # the server's Retry-After, for that request only
    assert state["max_in_flight"] == 1
    assert limiter.decreases == 0 and limiter.rate is None  # one 429 is no rate limit


# --- recordings ----------------------------------------------------------------------------

WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 64
OGG = b"OggS\x00\x02" + b"\x00" * 64
MP3_ID3 = b"ID3\x04\x00" + b"\x00" * 64
MP3_SYNC = b"\xff\xfb\x90\x00" + b"\x00" * 64


@pytest.mark.parametrize(
    ("body", "content_type", "ext"),
    [
        (WAV, "application/octet-stream", "wav"),  # magic bytes win over a generic type
        (OGG, None, "ogg"),
        (MP3_ID3, "audio/mpeg", "mp3"),
        (MP3_SYNC, None, "mp3"),  # bare MPEG frame sync 0xFFEx
        (b"\x00\x01raw-ish audio", "audio/x-wav; charset=binary", "wav"),  # header fallback
    ],
)
def test_download_recording_detects_format(
    tmp_path: Path, body: bytes, content_type: str | None, ext: str
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/call-records/u1"
        return httpx.Response(200, content=body, headers=headers)

    with client_for(tmp_path, handler) as client:
        rec = client.download_recording("u1", tmp_path / "rec" / "u1")
    assert rec.path == tmp_path / "rec" / f"u1.{ext}"
    assert rec.path.read_bytes() == body and rec.bytes == len(body)
    assert rec.sha256 == hashlib.sha256(body).hexdigest()
    assert [p.name for p in (tmp_path / "rec").iterdir()] == [f"u1.{ext}"]  # no temp file left


def test_download_recording_streams_chunks(tmp_path: Path) -> None:
    chunks = [WAV[:10], WAV[10:], b"\x01" * 100_000]

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=httpx.ByteStream(b"".join(chunks)))

    with client_for(tmp_path, handler) as client:
        rec = client.download_recording("u1", tmp_path / "u1")
    assert rec.path.suffix == ".wav" and rec.bytes == sum(map(len, chunks))


def test_download_recording_404_and_garbage(tmp_path: Path) -> None:
    handler, _ = scripted(httpx.Response(404, json={"error": "no record"}))
    with client_for(tmp_path, handler) as client, pytest.raises(NotFoundError):
        client.download_recording("u1", tmp_path / "u1")
    handler, requests = scripted(httpx.Response(200, json={"error": "x"}))
    with (
        client_for(tmp_path, handler, max_retries=1) as client,
        pytest.raises(InvalidResponseError),
    ):
        client.download_recording("u2", tmp_path / "u2")
    assert len(requests) == 2
    assert list(tmp_path.glob("u*")) == [] and list(tmp_path.glob(".u*")) == []


def test_async_download_recording(tmp_path: Path) -> None:
    async def run() -> Any:
        transport = httpx.MockTransport(lambda r: httpx.Response(200, content=OGG))
        async with AsyncBulutfonClient(fast_config(tmp_path), transport=transport) as client:
            return await asyncio.gather(
                *(client.download_recording(f"r{i}", tmp_path / f"r{i}") for i in range(5))
            )

    recs = asyncio.run(run())
    assert sorted(r.path.name for r in recs) == [f"r{i}.ogg" for i in range(5)]


def test_json_dumps_of_stats_is_plain(tmp_path: Path) -> None:
    with client_for(tmp_path, ok) as client:
        client.get_detail("u1")
        assert json.loads(json.dumps(client.stats.as_dict()))["requests"] == 1
