"""The accounts file (``BULUTFON_ACCOUNTS_FILE``): what it yields, and every way it is refused."""

from __future__ import annotations

import datetime as dt
import socket
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from bulutfon_pipeline.account_threads import accounts_loading
from bulutfon_pipeline.accounts import (
    ACCOUNTS_FILE_ENV,
    DEFAULT_ACCOUNT,
    Account,
    AccountsError,
    load_accounts,
    parse_accounts,
)
from bulutfon_pipeline.api.client import BulutfonClient
from bulutfon_pipeline.api.errors import ConfigError, ConnectError
from bulutfon_pipeline.cli import main
from bulutfon_pipeline.runner.accounts import even_rounds, run_each
from bulutfon_pipeline.settings import (
    DUCKDB_OTHER_THREADS,
    Settings,
    SettingsError,
)
from bulutfon_pipeline.warehouse import duckdb_connect
from bulutfon_pipeline_tests.helpers import environment

TWO = """
[accounts.izmir-office]
access_token_env = "BULUTFON_TOKEN_IZMIR"
api_url = "https://izmir.example/"
start_date = "2024-01-01"
max_rps = 20

[accounts.ankara_hq]
client_id_env = "ANKARA_ID"
client_secret_env = "ANKARA_SECRET"
refresh_token_env = "ANKARA_REFRESH"
start_date = 2023-06-15
"""


def test_without_the_file_one_default_account_reads_todays_variables(tmp_path: Path) -> None:
    env = {"BULUTFON_ACCESS_TOKEN": "tok-1", "BULUTFON_API_URL": "https://api.example"}
    [account] = load_accounts(env)
    assert (account.name, account.auth, account.from_file) == (DEFAULT_ACCOUNT, None, False)
    assert account.token_file(tmp_path) == tmp_path / "bulutfon_token.json"  # as today
    config = account.client_config(env)
    assert (config.access_token, config.api_url) == ("tok-1", "https://api.example")
    assert load_accounts({ACCOUNTS_FILE_ENV: "  "}) == [account]  # empty counts as unset


def test_the_file_yields_each_account_in_order_with_its_overrides(tmp_path: Path) -> None:
    path = tmp_path / "accounts.toml"
    path.write_text(TWO)
    izmir, ankara = load_accounts({ACCOUNTS_FILE_ENV: str(path)})
    assert (izmir.name, izmir.auth, izmir.api_url) == (
        "izmir-office",
        "master",
        "https://izmir.example",
    )
    assert (izmir.start_date, izmir.max_rps) == (dt.date(2024, 1, 1), 20.0)
    assert (ankara.name, ankara.auth, ankara.api_url, ankara.max_rps) == (
        "ankara_hq",
        "oauth",
        None,
        None,
    )
    assert ankara.start_date == dt.date(2023, 6, 15)  # a TOML date as well as a string
    assert izmir.token_file(tmp_path) == tmp_path / "tokens" / "izmir-office.json"
    assert ankara.credential_vars == {"client_id": "ANKARA_ID", "client_secret": "ANKARA_SECRET",
                                      "refresh_token": "ANKARA_REFRESH"}  # fmt: skip


def test_each_account_gets_only_its_own_credentials() -> None:
    izmir, ankara = parse_accounts(TWO)
    env = {
        "BULUTFON_ACCESS_TOKEN": "the-global-token",  # must not leak into either account
        "BULUTFON_API_URL": "https://api.example",
        "BULUTFON_MAX_RPS": "50",
        "BULUTFON_TOKEN_IZMIR": "izmir-token",
        "ANKARA_ID": "ankara-id",
        "ANKARA_SECRET": "ankara-secret",
    }
    one = izmir.client_config(env)
    assert (one.access_token, one.client_id, one.client_secret) == ("izmir-token", None, None)
    assert (one.api_url, one.max_rps) == ("https://izmir.example", 20.0)
    two = ankara.client_config(env)
    assert (two.access_token, two.client_id, two.client_secret, two.refresh_token) == (
        None, "ankara-id", "ankara-secret", None)  # fmt: skip
    assert (two.api_url, two.max_rps) == ("https://api.example", 50.0)  # the shared ones


def test_an_api_key_account_speaks_v2_with_its_own_key() -> None:
    (bursa,) = parse_accounts("[accounts.bursa]\napi_key_env = 'BURSA_KEY'\n")
    env = {"BULUTFON_ACCESS_TOKEN": "the-global-token", "BURSA_KEY": "bursa-key"}
    config = bursa.client_config(env)
    assert bursa.auth == "apikey"
    assert (config.api_version, config.api_key, config.access_token) == ("v2", "bursa-key", None)
    assert config.credentials_hint == "check BURSA_KEY (account 'bursa' of BULUTFON_ACCOUNTS_FILE)"


def test_a_variable_the_environment_lacks_fails_only_that_account() -> None:
    izmir, ankara = parse_accounts(TWO)
    env = {"ANKARA_ID": "id", "ANKARA_SECRET": "secret"}
    with pytest.raises(ConfigError) as caught:
        izmir.client_config(env)
    assert str(caught.value) == (
        "account 'izmir-office': its access_token_env names BULUTFON_TOKEN_IZMIR, which is not set"
    )
    assert ankara.client_config(env).client_id == "id"


A = "[accounts.a]\naccess_token_env = 'X'\n"  # a valid account, to add a bad key to


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[accounts", "F: not valid TOML"),
        ("", "F: no account; add an [accounts.<name>] table"),
        ("accounts = 3", "F: no account"),
        ("[account.a]\naccess_token_env = 'X'", "F: unknown top-level key(s) account;"),
        ("[accounts.Izmir]\naccess_token_env = 'X'", "F: account 'Izmir': a name is 1-63"),
        ("[accounts.a]\naccess_token = 'abc123'",
         "F: account 'a': access_token would put a secret in the file; put it in an "
         "environment variable and name that variable with access_token_env"),
        ("[accounts.a]\nclient_secret = 's'", "name that variable with client_secret_env"),
        (A + "max_rsp = 3", "F: account 'a': unknown key 'max_rsp'"),
        ("[accounts.a]\naccess_token_env = 'a var'", "access_token_env must name an environment"),
        ("[accounts.a]\napi_url = 'https://x'", "give access_token_env (a master token), or"),
        (A + "client_id_env = 'I'\nclient_secret_env = 'S'", "exactly one of them"),
        (A + "api_key_env = 'K'", "or api_key_env (a v2 API key): exactly one of them"),
        ("[accounts.a]\napi_key = 'abc123'", "name that variable with api_key_env"),
        ("[accounts.a]\nclient_id_env = 'I'", "give access_token_env"),
        (A + "api_url = 'ftp://x'", "api_url must be an http(s) URL"),
        (A + "start_date = '2024-13-01'", "start_date must be a date, YYYY-MM-DD"),
        (A + "max_rps = 0", "max_rps must be a positive number"),
        (A + "max_rps = 'fast'", "max_rps must be a number"),
    ],
)  # fmt: skip
def test_a_malformed_file_is_refused_in_one_line_naming_the_fix(text: str, message: str) -> None:
    with pytest.raises(AccountsError) as caught:
        parse_accounts(text, source="F")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert "abc123" not in str(caught.value)  # a secret written in the file is not echoed


def test_a_file_that_cannot_be_read_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(AccountsError, match=r"BULUTFON_ACCOUNTS_FILE=.*nope\.toml: cannot read it"):
        load_accounts({ACCOUNTS_FILE_ENV: str(missing)})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(None, 50), ("", 50), (" ", 50), ("1", 1), ("24", 24), (" 20 ", 20), ("007", 7)],
)
def test_accounts_at_once_reads_a_positive_whole_number(raw: str | None, expected: int) -> None:
    env = {} if raw is None else {"BULUTFON_ACCOUNTS_AT_ONCE": raw}
    assert Settings.from_env(env).accounts_at_once == expected


@pytest.mark.parametrize("raw", ["0", "-3", "2.5", "eight", "1e3", "+4"])
def test_a_bad_accounts_at_once_is_refused_naming_the_variable(raw: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"BULUTFON_ACCOUNTS_AT_ONCE": raw})
    assert str(caught.value) == (
        f"BULUTFON_ACCOUNTS_AT_ONCE={raw!r} must be a positive whole number (e.g. 50)"
    )


def test_sync_with_a_bad_accounts_at_once_exits_2_before_any_work(tmp_path: Path) -> None:
    env = {
        "BULUTFON_ACCOUNTS_AT_ONCE": "0",
        "BULUTFON_ACCESS_TOKEN": "tok-1",
        "BULUTFON_API_URL": "http://127.0.0.1:9",  # nothing listens: no request may go
        "BULUTFON_DUCKDB_PATH": str(tmp_path / "warehouse.duckdb"),
        "BULUTFON_DATA_DIR": str(tmp_path),
    }
    with environment(env):
        result = CliRunner().invoke(main, ["sync", "--no-progress"])
    assert result.exit_code == 2, result.output
    message = "BULUTFON_ACCOUNTS_AT_ONCE='0' must be a positive whole number (e.g. 50)"
    assert message in result.output
    assert not (tmp_path / "warehouse.duckdb").exists()


def test_run_each_runs_at_once_accounts_with_their_memory_between_them() -> None:
    # Six accounts, three at once: the barrier lets work go on only when three threads
    # wait at it together (fewer at once would time out, more would break the barrier's
    # rounds of three); the DuckDB limit is the accounts' meanwhile (80 MB: they write in
    # turns), and outside the block one load's for each of up to 20 other threads.
    accounts = [Account(f"a{i}", credential_vars={}, from_file=True) for i in range(6)]
    barrier = threading.Barrier(3, timeout=30)
    seen: dict[str, tuple[str, str]] = {}

    def work(account: Account) -> str:
        barrier.wait()
        seen[account.name] = (
            threading.current_thread().name,
            duckdb_connect._threads_memory_limit(),
        )
        if account.name == "a4":
            raise RuntimeError("its API is down")
        return account.name.upper()

    before = duckdb_connect._threads_memory_limit()
    results, failures = run_each(accounts, work, 3)
    assert results == {"a0": "A0", "a1": "A1", "a2": "A2", "a3": "A3", "a5": "A5"}
    assert failures == {"a4": "account 'a4': its API is down"}
    assert {limit for _, limit in seen.values()} == {"80MB"}
    assert len({thread for thread, _ in seen.values()}) == 3
    outside = f"{64 * DUCKDB_OTHER_THREADS}MB"  # no block: up to 20 other threads
    assert (before, duckdb_connect._threads_memory_limit()) == (outside, outside)


@pytest.mark.parametrize(
    ("accounts", "at_once", "threads"),
    [(50, 16, 13), (50, 20, 17), (50, 25, 25), (10, 20, 10), (21, 20, 11), (1, 20, 1), (5, 1, 1)],
)
def test_accounts_load_in_even_rounds_on_as_few_threads_as_the_same_rounds_take(
    accounts: int, at_once: int, threads: int
) -> None:
    assert even_rounds(accounts, at_once) == threads


def test_run_each_loads_five_accounts_at_up_to_four_in_two_rounds_of_three() -> None:
    accounts = [Account(f"a{i}", credential_vars={}, from_file=True) for i in range(5)]
    barrier = threading.Barrier(3, timeout=30)  # the first three run together
    seen: dict[str, tuple[str, int | None]] = {}

    def work(account: Account) -> str:
        if account.name in ("a0", "a1", "a2"):
            barrier.wait()
        seen[account.name] = (threading.current_thread().name, accounts_loading())
        return account.name

    results, failures = run_each(accounts, work, 4)
    assert (list(results), failures) == (["a0", "a1", "a2", "a3", "a4"], {})
    assert {loading for _, loading in seen.values()} == {3}
    assert len({thread for thread, _ in seen.values()}) == 3


def test_an_unreachable_api_names_the_accounts_api_url_or_the_variable(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    izmir, ankara = parse_accounts(
        f"[accounts.izmir]\naccess_token_env = 'T'\napi_url = '{url}'\n"
        "[accounts.ankara]\naccess_token_env = 'T'\n"
    )
    env = {"T": "token", "BULUTFON_API_URL": url, "BULUTFON_MAX_RETRIES": "0",
           "BULUTFON_DATA_DIR": str(tmp_path)}  # fmt: skip
    for account, hint in (
        (izmir, "api_url of account 'izmir' in BULUTFON_ACCOUNTS_FILE"),
        (ankara, "BULUTFON_API_URL"),  # its URL is the shared one
    ):
        want = f"Cannot reach {url}: connection refused — check {hint}"
        with BulutfonClient(account.client_config(env)) as client:
            with pytest.raises(ConnectError) as caught:  # the sync client (the listing)
                client.get_detail("a-call")
            assert str(caught.value) == want
            (fetched,) = client.fetch_details(["a-call"])  # the async fan-out
            assert str(fetched.error) == want
