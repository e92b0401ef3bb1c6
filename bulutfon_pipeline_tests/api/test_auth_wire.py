"""OAuth flows against an httpx.MockTransport token server: refresh timing and coordination."""

from __future__ import annotations

import asyncio
import itertools
import stat
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from bulutfon_pipeline.api import (
    AsyncBulutfonClient,
    AuthError,
    BulutfonClient,
    ConfigError,
    ConnectError,
    Token,
    TokenStore,
    exchange_code,
    force_refresh,
)

from ._support import Sleeps, oauth_config


class FakeOAuth:
    """Token endpoint + one API endpoint. Refresh tokens rotate; tokens expire on demand."""

    def __init__(self, expired_status: int = 401) -> None:
        self.lock = threading.Lock()
        self.counter = itertools.count(1)
        self.valid_access: set[str] = set()
        self.valid_refresh = {"env-refresh-000"}
        self.codes = {"auth-code-777"}
        self.token_calls: list[dict[str, str]] = []
        self.api_tokens: list[str] = []
        self.expired_status = expired_status

    def expire_all(self) -> None:
        with self.lock:
            self.valid_access.clear()

    def _issue(self) -> dict[str, Any]:
        n = next(self.counter)
        access, refresh = f"access-{n:06d}", f"refresh-{n:06d}"
        self.valid_access.add(access)
        self.valid_refresh.add(refresh)
        return {
            "access_token": access,
            "refresh_token": refresh,
            "expires_in": 7200,
            "created_at": int(time.time()),
            "token_type": "bearer",
            "scope": "cdr",
        }

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            if request.url.path == "/oauth/token":
                form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
                self.token_calls.append(form)
                if form.get("client_secret") != "client-secret-xyz":
                    return httpx.Response(401, json={"error": "invalid_client"})
                if form["grant_type"] == "refresh_token":
                    if form.get("refresh_token") not in self.valid_refresh:
                        return httpx.Response(400, json={"error": "invalid_grant"})
                    self.valid_refresh.discard(form["refresh_token"])  # rotation
                elif form.get("code") not in self.codes:
                    return httpx.Response(400, json={"error": "invalid_grant"})
                return httpx.Response(200, json=self._issue())
            token = request.url.params.get("access_token", "")
            self.api_tokens.append(token)
            if token not in self.valid_access:
                return httpx.Response(self.expired_status, json={"error": "Token expired"})
            return httpx.Response(200, json={"cdr": {"uuid": "u1"}})


def make_client(tmp_path: Path, fake: FakeOAuth, **kwargs: Any) -> BulutfonClient:
    return BulutfonClient(
        oauth_config(tmp_path), transport=httpx.MockTransport(fake), sleep=Sleeps(), **kwargs
    )


def test_first_call_refreshes_and_persists_rotated_pair(tmp_path: Path) -> None:
    fake = FakeOAuth()
    with make_client(tmp_path, fake) as client:
        assert client.get_detail("u1") == {"uuid": "u1"}
        assert client.stats.refreshes == 1
    (call,) = fake.token_calls
    assert call["grant_type"] == "refresh_token"
    assert call["refresh_token"] == "env-refresh-000"
    assert call["client_id"] == "app-id" and call["redirect_uri"] == "urn:ietf:wg:oauth:2.0:oob"
    token_file = tmp_path / "bulutfon_token.json"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    stored = TokenStore(token_file).load()
    assert stored is not None and stored.refresh_token == "refresh-000001"
    # The next client starts from the file, not from the (now invalid) environment token.
    fake.expire_all()
    with make_client(tmp_path, fake) as client:
        client.get_detail("u1")
    assert [c["refresh_token"] for c in fake.token_calls] == ["env-refresh-000", "refresh-000001"]


def test_proactive_refresh_before_expiry(tmp_path: Path) -> None:
    fake = FakeOAuth()
    fake.valid_access.add("old-access-1")
    fake.valid_refresh.add("old-refresh-1")
    TokenStore(tmp_path / "bulutfon_token.json").save(
        Token("old-access-1", "old-refresh-1", expires_in=7200, created_at=1000)
    )
    now = {"t": 1000 + 7200 - 600.0}  # ten minutes left: no refresh yet
    with make_client(tmp_path, fake, clock=lambda: now["t"]) as client:
        client.get_detail("u1")
        assert fake.token_calls == []
        now["t"] = 1000 + 7200 - 30.0  # inside the 60 s margin: refresh first
        client.get_detail("u1")
    assert [c["refresh_token"] for c in fake.token_calls] == ["old-refresh-1"]
    assert fake.api_tokens == ["old-access-1", "access-000001"]  # never sent an expiring token


@pytest.mark.parametrize("expired_status", [401, 400, 403])
def test_expired_token_refreshes_once_and_retries(tmp_path: Path, expired_status: int) -> None:
    fake = FakeOAuth(expired_status=expired_status)
    with make_client(tmp_path, fake) as client:
        client.get_detail("u1")
        fake.expire_all()  # server-side expiry, the client's clock does not know
        assert client.get_detail("u1") == {"uuid": "u1"}
        assert client.stats.refreshes == 2
    assert fake.api_tokens == ["access-000001", "access-000001", "access-000002"]


def test_still_rejected_after_refresh_is_an_auth_error(tmp_path: Path) -> None:
    fake = FakeOAuth()

    def always_401(request: httpx.Request) -> httpx.Response:
        response = fake(request)
        return response if request.url.path == "/oauth/token" else httpx.Response(401)

    client = BulutfonClient(oauth_config(tmp_path), transport=httpx.MockTransport(always_401))
    with client, pytest.raises(AuthError):
        client.get_detail("u1")
    assert len(fake.token_calls) == 2  # the initial token, then exactly one refresh retry


def test_concurrent_threads_hitting_expiry_cause_one_refresh(tmp_path: Path) -> None:
    fake = FakeOAuth()
    barrier = threading.Barrier(8)
    with make_client(tmp_path, fake) as client:
        client.get_detail("u1")
        fake.expire_all()
        errors: list[BaseException] = []

        def call() -> None:
            try:
                barrier.wait()
                client.get_detail("u1")
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=call) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert client.stats.refreshes == 2
    assert len(fake.token_calls) == 2  # initial + one refresh, not eight


def test_concurrent_coroutines_hitting_expiry_cause_one_refresh(tmp_path: Path) -> None:
    fake = FakeOAuth()

    async def run() -> int:
        transport = httpx.MockTransport(fake)
        async with AsyncBulutfonClient(oauth_config(tmp_path), transport=transport) as client:
            await client.get_detail("u1")
            fake.expire_all()
            await asyncio.gather(*(client.get_detail("u1") for _ in range(50)))
            return client.stats.refreshes

    assert asyncio.run(run()) == 2
    assert len(fake.token_calls) == 2


def test_sync_and_async_halves_share_tokens_and_stats(tmp_path: Path) -> None:
    fake = FakeOAuth()
    with make_client(tmp_path, fake) as client:
        client.get_detail("u1")
        results = list(client.fetch_details(["a", "b", "c"]))
        assert all(r.ok for r in results)
        assert client.stats.refreshes == 1 and client.stats.requests == 4
    assert len(fake.token_calls) == 1


def test_exchange_code_and_force_refresh(tmp_path: Path) -> None:
    fake = FakeOAuth()
    transport = httpx.MockTransport(fake)
    config = oauth_config(tmp_path, refresh_token=None)
    token = exchange_code(config, "auth-code-777", transport=transport)
    assert token.access_token == "access-000001"
    assert "access-000001" not in repr(token)
    assert fake.token_calls[0]["grant_type"] == "authorization_code"
    assert config.auth_mode == "oauth"  # the stored file is enough from now on
    refreshed = force_refresh(config, transport=transport)
    assert refreshed.refresh_token == "refresh-000002"
    assert TokenStore(config.token_file).load() == refreshed


def test_rejected_code_and_refresh_token_are_auth_errors(tmp_path: Path) -> None:
    fake = FakeOAuth()
    transport = httpx.MockTransport(fake)
    with pytest.raises(AuthError) as info:
        exchange_code(oauth_config(tmp_path), "wrong-code-123", transport=transport)
    assert "invalid_grant" in str(info.value) and "wrong-code-123" not in str(info.value)
    fake.valid_refresh.clear()
    with pytest.raises(AuthError, match="refresh token"):
        force_refresh(oauth_config(tmp_path), transport=transport)
    with pytest.raises(ConfigError, match="BULUTFON_CLIENT_ID"):
        force_refresh(oauth_config(tmp_path, client_id=None), transport=transport)


def test_unreachable_token_endpoint(tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused")

    with pytest.raises(ConnectError, match="check BULUTFON_TOKEN_URL"):
        force_refresh(oauth_config(tmp_path), transport=httpx.MockTransport(refuse))
