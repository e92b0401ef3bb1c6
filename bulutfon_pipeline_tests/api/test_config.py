"""ClientConfig: environment parsing, validation, auth mode, secrets out of repr."""

from __future__ import annotations

from pathlib import Path

import pytest

from bulutfon_pipeline import settings
from bulutfon_pipeline.api import ClientConfig, ConfigError, Token, TokenStore
from bulutfon_pipeline.api.config import default_user_agent


def test_defaults_come_from_settings() -> None:
    config = ClientConfig.from_env({})
    assert config.api_url == settings.DEFAULT_API_URL
    assert config.token_url == settings.DEFAULT_TOKEN_URL
    assert config.cdr_list_path == settings.DEFAULT_CDR_LIST_PATH
    assert config.cdr_detail_path == settings.DEFAULT_CDR_DETAIL_PATH
    assert config.recording_path == settings.DEFAULT_RECORDING_PATH
    assert config.page_size == settings.DEFAULT_PAGE_SIZE
    assert config.max_concurrency == settings.DEFAULT_MAX_CONCURRENCY
    assert config.max_retries == settings.DEFAULT_MAX_RETRIES
    assert config.max_rps is None
    assert config.data_dir == Path(settings.DEFAULT_DATA_DIR)
    assert config.token_file == Path(settings.DEFAULT_DATA_DIR) / settings.TOKEN_FILE_NAME
    assert config.auth_mode is None


def test_every_variable_is_read(tmp_path: Path) -> None:
    env = {
        "BULUTFON_API_URL": "http://127.0.0.1:9/",
        "BULUTFON_TOKEN_URL": "http://127.0.0.1:9/oauth/token",
        "BULUTFON_CDR_LIST_PATH": "/cdrs",
        "BULUTFON_CDR_DETAIL_PATH": "/cdrs/{uuid}",
        "BULUTFON_RECORDING_PATH": "/call-records/{uuid}",
        "BULUTFON_ACCESS_TOKEN": "master-token-123",
        "BULUTFON_CLIENT_ID": "app-id",
        "BULUTFON_CLIENT_SECRET": "app-secret-456",
        "BULUTFON_REFRESH_TOKEN": "refresh-789",
        "BULUTFON_REDIRECT_URI": "https://example.org/cb",
        "BULUTFON_DATA_DIR": str(tmp_path),
        "BULUTFON_TIMEOUT_S": "5",
        "BULUTFON_CONNECT_TIMEOUT_S": "2.5",
        "BULUTFON_PAGE_SIZE": "50",
        "BULUTFON_MAX_CONCURRENCY": "4",
        "BULUTFON_MAX_RETRIES": "0",
        "BULUTFON_MAX_RPS": "12.5",
        "BULUTFON_RETRY_AFTER_CAP_S": "3",
        "BULUTFON_USER_AGENT": "custom-agent/1.0",
    }
    config = ClientConfig.from_env(env)
    assert config.api_url == "http://127.0.0.1:9"  # trailing slash dropped
    assert config.list_url == "http://127.0.0.1:9/cdrs"
    assert config.detail_url("a/b c") == "http://127.0.0.1:9/cdrs/a%2Fb%20c"  # uuid quoted
    assert config.recording_url("u1") == "http://127.0.0.1:9/call-records/u1"
    assert (config.client_id, config.redirect_uri) == ("app-id", "https://example.org/cb")
    assert (config.timeout_s, config.connect_timeout_s) == (5.0, 2.5)
    assert (config.page_size, config.max_concurrency, config.max_retries) == (50, 4, 0)
    assert (config.max_rps, config.retry_after_cap_s) == (12.5, 3.0)
    assert config.user_agent == "custom-agent/1.0"
    assert config.auth_mode == "master"


def test_overrides_win_and_empty_variables_count_as_unset() -> None:
    config = ClientConfig.from_env(
        {"BULUTFON_PAGE_SIZE": "50", "BULUTFON_ACCESS_TOKEN": "  "}, page_size=7
    )
    assert config.page_size == 7
    assert config.access_token is None


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        # not a number at all
        ({"BULUTFON_PAGE_SIZE": "ten"}, "BULUTFON_PAGE_SIZE must be an integer"),
        # negative integers
        ({"BULUTFON_MAX_RETRIES": "-1"}, "BULUTFON_MAX_RETRIES must not be negative"),
        # zero page size / concurrency are useless
        ({"BULUTFON_PAGE_SIZE": "0"}, "BULUTFON_PAGE_SIZE must be at least 1"),
        ({"BULUTFON_MAX_CONCURRENCY": "0"}, "BULUTFON_MAX_CONCURRENCY must be at least 1"),
        # floats: garbage, negative, infinite, zero
        ({"BULUTFON_TIMEOUT_S": "soon"}, "BULUTFON_TIMEOUT_S must be a number"),
        ({"BULUTFON_MAX_RPS": "-3"}, "BULUTFON_MAX_RPS must not be negative"),
        ({"BULUTFON_MAX_RPS": "inf"}, "BULUTFON_MAX_RPS must be a finite number"),
        ({"BULUTFON_CONNECT_TIMEOUT_S": "0"}, "BULUTFON_CONNECT_TIMEOUT_S must be a positive"),
        # URLs and paths
        ({"BULUTFON_API_URL": "api.bulutfon.com"}, "BULUTFON_API_URL must be an http(s) URL"),
        ({"BULUTFON_CDR_DETAIL_PATH": "/cdr.json"}, "BULUTFON_CDR_DETAIL_PATH must contain"),
        ({"BULUTFON_CDR_LIST_PATH": "cdr.json"}, "BULUTFON_CDR_LIST_PATH must be a path"),
    ],
)
def test_bad_values_raise_one_line_config_error(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        ClientConfig.from_env(env)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message


def test_unknown_override_is_rejected() -> None:
    with pytest.raises(ConfigError, match="page_sise"):
        ClientConfig.from_env({}, page_sise=3)


def test_secrets_are_not_in_repr() -> None:
    config = ClientConfig.from_env(
        {
            "BULUTFON_ACCESS_TOKEN": "master-SECRET-1",
            "BULUTFON_CLIENT_ID": "visible-id",
            "BULUTFON_CLIENT_SECRET": "client-SECRET-2",
            "BULUTFON_REFRESH_TOKEN": "refresh-SECRET-3",
        }
    )
    text = repr(config)
    assert "visible-id" in text
    assert "SECRET" not in text


def test_auth_mode(tmp_path: Path) -> None:
    oauth_env = {"BULUTFON_CLIENT_ID": "id", "BULUTFON_CLIENT_SECRET": "secret-x"}
    # client id + secret alone cannot authenticate
    assert ClientConfig.from_env(oauth_env, data_dir=tmp_path).auth_mode is None
    # ... with a refresh token from the environment they can
    with_refresh = {**oauth_env, "BULUTFON_REFRESH_TOKEN": "r-123456"}
    assert ClientConfig.from_env(with_refresh, data_dir=tmp_path).auth_mode == "oauth"
    # ... or with a token file left by `bulutfon-pipeline auth`
    TokenStore(tmp_path / settings.TOKEN_FILE_NAME).save(
        Token("a-123456", "r-654321", 7200, 1_700_000_000)
    )
    assert ClientConfig.from_env(oauth_env, data_dir=tmp_path).auth_mode == "oauth"
    # a master token wins
    master = {**with_refresh, "BULUTFON_ACCESS_TOKEN": "m-123456"}
    assert ClientConfig.from_env(master, data_dir=tmp_path).auth_mode == "master"


def test_no_credentials_message(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        ClientConfig.from_env({}, data_dir=tmp_path).require_auth_mode()
    assert str(info.value) == (
        "No Bulutfon credentials: set BULUTFON_ACCESS_TOKEN, or BULUTFON_CLIENT_ID, "
        "BULUTFON_CLIENT_SECRET and BULUTFON_REFRESH_TOKEN (see .env.example)"
    )


def test_default_user_agent_names_project_and_version() -> None:
    agent = default_user_agent()
    assert agent.startswith("bulutfon-pipeline/")
    assert "python-httpx/" in agent
