"""Token value object and the token file (atomic, 0600, preferred over the environment)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import httpx
import pytest

from bulutfon_pipeline.api import (
    ClientConfig,
    ClientStats,
    ConfigError,
    Token,
    TokenManager,
    TokenStore,
)
from bulutfon_pipeline.api.auth import is_token_expired_response


def test_token_expiry() -> None:
    token = Token("acc-123456", "ref-123456", expires_in=7200, created_at=1000)
    assert token.expires_at == 8200
    assert not token.is_expiring(now=8000)
    assert token.is_expiring(now=8000, margin_s=300)  # within the refresh margin
    assert token.is_expiring(now=8200)


def test_token_from_response_and_repr() -> None:
    body = {
        "access_token": "16a1-secret-access",
        "token_type": "bearer",
        "expires_in": 7200,
        "refresh_token": "551f-secret-refresh",
        "created_at": 1429026419,
        "scope": "cdr call_record",
    }
    token = Token.from_response(body)
    assert token.expires_at == 1429026419 + 7200
    assert token.scope == "cdr call_record"
    assert "secret" not in repr(token)
    # created_at defaults to now when the server leaves it out
    assert Token.from_response({"access_token": "x-123456"}, now=5.0).created_at == 5.0


def test_token_file_is_written_atomically_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "bulutfon_token.json"
    store = TokenStore(path)
    assert store.load() is None
    store.save(Token("acc-111111", "ref-111111", 7200, 1000))
    store.save(Token("acc-222222", "ref-222222", 7200, 2000))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["refresh_token"] == "ref-222222"
    assert store.load() == Token("acc-222222", "ref-222222", 7200, 2000)
    assert [p.name for p in path.parent.iterdir()] == ["bulutfon_token.json"]  # no temp left


def test_corrupt_token_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "bulutfon_token.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not a valid token"):
        TokenStore(path).load()


def test_token_file_wins_over_environment(tmp_path: Path) -> None:
    config = ClientConfig.from_env(
        {
            "BULUTFON_CLIENT_ID": "id",
            "BULUTFON_CLIENT_SECRET": "secret-123",
            "BULUTFON_REFRESH_TOKEN": "stale-env-refresh",
        },
        data_dir=tmp_path,
    )
    TokenStore(config.token_file).save(Token("file-access-1", "file-refresh-1", 7200, 1000))
    manager = TokenManager(config, stats=ClientStats(), clock=lambda: 2000.0)
    assert manager.access_token() == "file-access-1"  # no refresh needed: still valid
    assert manager.token is not None and manager.token.refresh_token == "file-refresh-1"


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (401, b"", True),  # any 401
        (400, b'{"error": "Token expired"}', True),  # documented body, status undocumented
        (403, b'{"error": "token expired "}', True),
        (400, b'{"error": "bad request"}', False),
        (404, b"not json", False),
        (500, b'{"error": "Token expired"}', False),  # 5xx is a server fault, not expiry
    ],
)
def test_is_token_expired_response(status: int, body: bytes, expected: bool) -> None:
    assert is_token_expired_response(status, body) is expected


def test_a_request_sent_with_its_token_keeps_its_url_and_another_token_is_replaced() -> None:
    from bulutfon_pipeline.api.auth import _with_token, token_query

    sent = httpx.Request("GET", f"https://api.example/cdr/1.json?page=2&{token_query('a b+c')}")
    url = sent.url
    _with_token(sent, "a b+c")  # the fan-out's requests carry the master token already
    assert sent.url is url  # not rebuilt
    _with_token(sent, "fresh")  # refreshed: the stale one is replaced, not added to
    assert sent.url.params.get_list("access_token") == ["fresh"]
    assert sent.url.params["page"] == "2"
    plain = httpx.Request("GET", "https://api.example/cdr/1.json?page=2")
    _with_token(plain, "a b+c")
    assert str(plain.url) == f"https://api.example/cdr/1.json?page=2&{token_query('a b+c')}"
    assert plain.url.params.get_list("access_token") == ["a b+c"]
    # A value that merely holds the text is not the parameter.
    lookalike = httpx.Request("GET", "https://api.example/x", params={"q": "access_token=t"})
    _with_token(lookalike, "t")
    assert lookalike.url.params.get_list("access_token") == ["t"]


def test_the_tokens_of_fifty_accounts_sending_in_turn_are_each_encoded_once() -> None:
    # A sync of many accounts sends their requests interleaved from one event loop; a
    # cache of 4 encoded tokens missed on almost every request (32 of 2,702 GIL samples of
    # a 50-account sync against 1 without the accounts' limits; ANALYSIS.md, session 38).
    from bulutfon_pipeline.api.auth import token_query

    token_query.cache_clear()
    tokens = [f"token-{i}" for i in range(50)]
    for _ in range(3):
        for token in tokens:
            assert token_query(token) == f"access_token={token}"
    assert token_query.cache_info().misses == len(tokens)
