"""The client against the project's real HTTP simulator (a uvicorn server on a socket).

Assertions are on data: uuids, request counts on both sides. Sleeps are only the
client's own backoff; nothing waits for time to pass.
"""

from __future__ import annotations

import hashlib
import logging
import socket
import traceback
from pathlib import Path
from typing import Any

import pytest

from bulutfon_pipeline.api import (
    AuthError,
    BulutfonClient,
    ClientConfig,
    ConnectError,
    InvalidResponseError,
    NotFoundError,
    TokenStore,
)
from bulutfon_pipeline.simulator import SimulatorServer
from bulutfon_pipeline.simulator.audio import recording_for

from ._support import Sleeps


def config_for(
    sim: SimulatorServer, tmp_path: Path, auth: str = "master", **kw: Any
) -> ClientConfig:
    values: dict[str, Any] = {"data_dir": tmp_path, "backoff_base_s": 0.001, "max_retries": 10}
    values.update(kw)
    return ClientConfig.from_env(sim.env(auth), **values)  # type: ignore[arg-type]


def statuses(sim: SimulatorServer, endpoint: str) -> dict[str, int]:
    return dict(sim.stats()[endpoint])


@pytest.mark.parametrize("dialect", ["seed", "v1", "v2"])
def test_paging_a_live_listing_loses_nothing_and_repeats_nothing(
    simulator_factory: Any, tmp_path: Path, dialect: str
) -> None:
    sim = simulator_factory(days=3, calls_per_day=50, dialect=dialect, live_calls_per_page=3)
    before = set(sim.dataset.uuids)
    with BulutfonClient(config_for(sim, tmp_path)) as client:
        pages = list(client.iter_listing_pages(limit=20))
    seen = [item["uuid"] for page in pages for item in page.items]
    assert len(seen) == len(set(seen))  # none twice
    assert before <= set(seen)  # none lost
    assert sum(page.duplicates for page in pages) > 0  # items really were pushed across pages
    assert statuses(sim, "listing") == {"200": len(pages)}
    assert [p.page for p in pages] == list(range(1, len(pages) + 1))


def test_token_expiry_mid_batch_causes_exactly_one_refresh(
    simulator_factory: Any, tmp_path: Path
) -> None:
    sim = simulator_factory(days=2, calls_per_day=150)
    uuids = sim.dataset.uuids
    config = config_for(sim, tmp_path, auth="oauth", max_concurrency=16)
    results = []
    with BulutfonClient(config) as client:
        for result in client.fetch_details(uuids):
            results.append(result)
            if len(results) == 50:
                assert sim.expire_tokens() == 1  # every in-flight/queued request is now stale
        stats = client.stats.as_dict()
    assert sorted(r.uuid for r in results) == sorted(uuids)
    assert all(r.ok for r in results)
    assert statuses(sim, "token") == {"200": 2}  # the first token, then ONE refresh
    assert stats["refreshes"] == 2
    detail = statuses(sim, "detail")
    assert detail["200"] == len(uuids)
    assert detail.get("401", 0) >= 1  # requests did hit the expired token...
    assert stats["requests"] == detail["200"] + detail["401"]  # ...and each was resent once


def test_rotated_refresh_token_is_persisted_and_preferred(
    simulator_factory: Any, tmp_path: Path
) -> None:
    sim = simulator_factory(days=1, calls_per_day=10)
    uuid = sim.dataset.uuids[0]
    env = sim.env("oauth")  # holds the initial refresh token, which rotates on first use
    with BulutfonClient(ClientConfig.from_env(env, data_dir=tmp_path)) as client:
        client.get_detail(uuid)
    token_file = tmp_path / "bulutfon_token.json"
    assert token_file.stat().st_mode & 0o777 == 0o600
    first = TokenStore(token_file).load()
    assert first is not None and first.refresh_token not in (None, sim.initial_refresh_token)

    sim.expire_tokens()
    with BulutfonClient(ClientConfig.from_env(env, data_dir=tmp_path)) as client:
        assert client.get_detail(uuid)["uuid"] == uuid  # refreshed with the file's token
    second = TokenStore(token_file).load()
    assert second is not None and second.refresh_token != first.refresh_token
    assert statuses(sim, "token") == {"200": 2}

    # Control: the environment's refresh token alone is stale by now.
    stale = BulutfonClient(ClientConfig.from_env(env, data_dir=tmp_path / "fresh"))
    with stale, pytest.raises(AuthError, match="invalid_grant") as info:
        stale.get_detail(uuid)
    assert sim.initial_refresh_token not in str(info.value)


@pytest.mark.parametrize("retry_after", [True, False])
def test_429_with_and_without_retry_after(
    simulator_factory: Any, tmp_path: Path, retry_after: bool
) -> None:
    sim = simulator_factory(
        days=1,
        calls_per_day=40,
        random_429_rate=0.3,
        random_429_retry_after_share=1.0 if retry_after else 0.0,
    )
    uuids = sim.dataset.uuids
    sleeps = Sleeps()
    config = config_for(sim, tmp_path, backoff_base_s=0.01, retry_after_cap_s=60.0)
    with BulutfonClient(config, sleep=sleeps) as client:
        details = [client.get_detail(u) for u in uuids]
        stats = client.stats.as_dict()
    assert [d["uuid"] for d in details] == uuids
    detail = statuses(sim, "detail")
    assert detail["200"] == len(uuids)
    assert detail["429"] == stats["rate_limited"] == stats["retries"] == len(sleeps.delays) > 0
    if retry_after:
        assert sleeps.delays == [1.0] * detail["429"]  # the server's Retry-After: 1
    else:
        assert all(0 <= d <= 0.01 * 2**10 for d in sleeps.delays)  # backoff, jittered
        assert len(set(sleeps.delays)) > 1


def test_5xx_and_truncated_bodies_are_retried_until_success(
    simulator_factory: Any, tmp_path: Path
) -> None:
    sim = simulator_factory(
        days=1, calls_per_day=60, error_rate=0.15, truncate_rate=0.15, html_error_share=0.5
    )
    with BulutfonClient(config_for(sim, tmp_path), sleep=Sleeps()) as client:
        pages = list(client.iter_listing_pages(limit=20))
        uuids = [item["uuid"] for page in pages for item in page.items]
        details = {u: client.get_detail(u) for u in uuids}
        stats = client.stats.as_dict()
    assert sorted(uuids) == sorted(sim.dataset.uuids)
    assert all(details[u]["uuid"] == u for u in uuids)
    server_errors = sum(
        count
        for endpoint in ("listing", "detail")
        for status, count in statuses(sim, endpoint).items()
        if status.startswith("5")
    )
    assert server_errors > 0
    assert stats["errors"] == 0
    assert stats["retries"] == stats["requests"] - len(pages) - len(uuids)
    assert stats["retries"] > server_errors  # the rest were 200s with cut bodies


def test_404_and_bad_bodies_are_reported_per_item_and_4xx_is_typed(
    simulator_factory: Any, tmp_path: Path
) -> None:
    sim = simulator_factory(days=1, calls_per_day=60, missing_detail_count=4, malformed_count=5)
    faults = sim.dataset.faults
    missing = {u for u, f in faults.items() if f == "missing"}
    non_json = {u for u, f in faults.items() if f in ("malformed:html_200", "malformed:empty_200")}
    config = config_for(sim, tmp_path, max_retries=2, max_concurrency=8)
    with BulutfonClient(config, async_sleep=Sleeps().asleep) as client:
        results = {r.uuid: r for r in client.fetch_details(sim.dataset.uuids)}
        stats = client.stats.as_dict()
    assert len(results) == 60
    assert {u for u, r in results.items() if isinstance(r.error, NotFoundError)} == missing
    assert {u for u, r in results.items() if isinstance(r.error, InvalidResponseError)} == non_json
    assert all(r.ok for u, r in results.items() if u not in missing | non_json)
    assert (stats["not_found"], stats["errors"]) == (4, 2)
    detail = statuses(sim, "detail")
    assert detail["404"] == 4  # a 404 is not retried
    assert detail["200"] == 54 + 2 * 3  # a persistently bad body: 1 try + 2 retries

    # A permanent 4xx (a wrong master token) is surfaced as a typed error, not retried.
    env = {**sim.env("master"), "BULUTFON_ACCESS_TOKEN": "not-the-master-token"}
    sim.reset_stats()
    wrong = BulutfonClient(ClientConfig.from_env(env, data_dir=tmp_path))
    with wrong, pytest.raises(AuthError) as info:
        next(iter(wrong.iter_listing_pages()))
    assert info.value.status == 401
    assert statuses(sim, "listing") == {"401": 1}
    assert "not-the-master-token" not in str(info.value)


def test_recordings_are_downloaded_and_sniffed(simulator_factory: Any, tmp_path: Path) -> None:
    sim = simulator_factory(days=1, calls_per_day=40, recording_share=0.5)
    calls = [c for c in sim.dataset.calls if c.call_record == "YES" and c.recording_format]
    assert calls
    without = next(c for c in sim.dataset.calls if c.call_record != "YES")
    with BulutfonClient(config_for(sim, tmp_path)) as client:
        for call in calls:
            rec = client.download_recording(call.uuid, tmp_path / "rec" / call.uuid)
            body, _ = recording_for(call.uuid, call.recording_format, call.recording_octet_stream)
            assert rec.path.name == f"{call.uuid}.{call.recording_format}"
            assert rec.sha256 == hashlib.sha256(body).hexdigest() and rec.bytes == len(body)
        with pytest.raises(NotFoundError):
            client.download_recording(without.uuid, tmp_path / "rec" / without.uuid)
    assert len(list((tmp_path / "rec").iterdir())) == len(calls)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_secrets_never_reach_logs_or_exceptions(
    simulator_factory: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # root, httpx and httpcore at DEBUG
    sim = simulator_factory(days=1, calls_per_day=30, error_rate=0.2, missing_detail_count=2)
    texts: list[str] = []

    def record(exc: BaseException) -> None:
        texts.extend([str(exc), repr(exc), "".join(traceback.format_exception(exc))])

    config = config_for(sim, tmp_path, auth="oauth")
    texts.append(repr(config))
    with BulutfonClient(config, sleep=Sleeps(), async_sleep=Sleeps().asleep) as client:
        uuids = [i["uuid"] for p in client.iter_listing_pages(limit=10) for i in p.items]
        first_token = client.tokens.token
        sim.expire_tokens()
        for result in client.fetch_details(uuids):
            if result.error is not None:
                record(result.error)
        texts.append(repr(client.tokens.token))
    master = BulutfonClient(config_for(sim, tmp_path / "m", max_retries=0))
    with master, pytest.raises(NotFoundError) as not_found:
        master.get_detail("no-such-call")
    record(not_found.value)
    unreachable = config_for(
        sim, tmp_path / "u", api_url=f"http://127.0.0.1:{_closed_port()}", max_retries=1
    )
    with (
        BulutfonClient(unreachable, sleep=Sleeps()) as client,
        pytest.raises(ConnectError) as refused,
    ):
        client.get_detail(uuids[0])
    record(refused.value)
    assert "Cannot reach http://127.0.0.1:" in str(refused.value)

    last_token = TokenStore(tmp_path / "bulutfon_token.json").load()
    assert first_token is not None and last_token is not None
    secrets = {
        sim.master_token,
        sim.client_secret,
        sim.initial_refresh_token,
        first_token.access_token,
        first_token.refresh_token,
        last_token.access_token,
        last_token.refresh_token,
    }
    logged = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    assert "HTTP Request: GET" in logged and "access_token=***" in logged  # httpx did log URLs
    assert any(r.name.startswith("httpcore") for r in caplog.records)
    everything = logged + "\n".join(texts)
    leaked = [s for s in secrets if s and s in everything]
    assert leaked == []


@pytest.mark.slow
def test_fan_out_of_2000_details_under_a_200_rps_limit(
    simulator_factory: Any, tmp_path: Path
) -> None:
    sim = simulator_factory(
        days=10, calls_per_day=200, rate_limit_rps=200, rate_limit_retry_after=False
    )
    uuids = sim.dataset.uuids
    assert len(uuids) == 2000
    config = config_for(sim, tmp_path, max_concurrency=16, max_retries=10, backoff_base_s=0.05)
    with BulutfonClient(config) as client:
        results = list(client.fetch_details(uuids))
        stats = client.stats.as_dict()
    assert sorted(r.uuid for r in results) == sorted(uuids)
    assert [r for r in results if not r.ok] == []
    server = sim.stats()
    assert server["detail"]["200"] == 2000
    assert server["detail"].get("429", 0) == stats["rate_limited"] == stats["retries"]
    assert stats["requests"] == sum(server["detail_uuids"].values())
    assert all(server["detail_uuids"][u] >= 1 for u in uuids)
    assert (stats["errors"], stats["not_found"]) == (0, 0)
