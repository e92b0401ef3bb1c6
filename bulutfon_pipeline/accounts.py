"""The PBX accounts of one deployment: ``BULUTFON_ACCOUNTS_FILE`` (groundwork of issue 14).

A TOML file with one table per account::

    [accounts.izmir-office]
    access_token_env = "BULUTFON_TOKEN_IZMIR"   # the variable that holds its master token
    # or client_id_env / client_secret_env / refresh_token_env for OAuth
    # or api_key_env for a v2 API key (the account then speaks v2)
    api_url = "https://api.bulutfon.com"         # optional: default BULUTFON_API_URL
    start_date = "2024-01-01"                    # optional: default BULUTFON_START_DATE
    max_rps = 20                                 # optional: this account's own cap

The file never holds a secret: it names the environment variables that do, and a key
that would hold one (``access_token``, ``client_secret``...) is refused with the name of
the ``*_env`` key to use instead. Without the file, one account named ``default`` comes
from today's variables (``BULUTFON_ACCESS_TOKEN``...), so a single-account setup needs
nothing new.

The file is checked as a whole when it is read (:func:`load_accounts`: one line naming the
file, the account and the key). A variable that an account names but the environment
lacks is not an error of the file: only that account's own work fails, when it asks for
its client configuration (:meth:`Account.client_config`), so a bad account never stops
the others.

At run time (issue 14) each account has its own API client (its credentials, its token
file :meth:`Account.token_file`, its own flow control), its own recordings folder
(:attr:`Account.recordings_folder`) and its own rows in the warehouse
(``Warehouse(account=...)``); :func:`select_accounts` narrows the deployment's accounts to
the names a command was given.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bulutfon_pipeline.api.config import ClientConfig
from bulutfon_pipeline.api.errors import ConfigError
from bulutfon_pipeline.settings import DEFAULT_ACCOUNT, TOKEN_FILE_NAME, SettingsError

log = logging.getLogger(__name__)

__all__ = [
    "ACCOUNTS_FILE_ENV",
    "DEFAULT_ACCOUNT",
    "Account",
    "AccountsError",
    "find_account",
    "load_accounts",
    "parse_accounts",
    "select_accounts",
]

#: The variable that names the accounts file.
ACCOUNTS_FILE_ENV = "BULUTFON_ACCOUNTS_FILE"
#: An account's name becomes a partition key, a file name and a column value: short,
#: lower-case, no separators of Dagster's multi-partition keys or of paths.
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: The credential keys: each names the variable that holds a ClientConfig field.
_CREDENTIALS = {
    "access_token_env": "access_token",
    "client_id_env": "client_id",
    "client_secret_env": "client_secret",
    "refresh_token_env": "refresh_token",
    "api_key_env": "api_key",
}
_KEYS = (*_CREDENTIALS, "api_url", "start_date", "max_rps")
#: Keys that would put a secret in the file.
_SECRETS = {"access_token", "token", "client_secret", "refresh_token", "password", "api_key"}


class AccountsError(SettingsError):
    """The accounts file is missing or malformed, or a command names an account it does
    not hold; the message is one line naming the file, the account and the key."""


@dataclass(frozen=True)
class Account:
    """One PBX account: where its credentials are, and what it overrides."""

    name: str
    #: ``ClientConfig`` credential field -> the environment variable that holds it
    #: (empty for the ``default`` account without a file: today's ``BULUTFON_*``).
    credential_vars: Mapping[str, str]
    api_url: str | None = None
    start_date: dt.date | None = None
    max_rps: float | None = None
    #: Whether it comes from an accounts file (``False``: the ``default`` account of a
    #: deployment without one, which keeps today's file locations).
    from_file: bool = True

    @property
    def auth(self) -> str | None:
        """``master`` (a master token), ``oauth`` (an OAuth client) or ``apikey`` (a v2 API
        key); ``None`` for the ``default`` account without a file, whose variables decide
        as they do today."""
        if not self.from_file:
            return None
        if "api_key" in self.credential_vars:
            return "apikey"
        return "master" if "access_token" in self.credential_vars else "oauth"

    @property
    def credentials_hint(self) -> str | None:
        """What to check when the API rejects its credentials: the variables it names
        (``None`` for the ``default`` account without a file: today's message)."""
        if not self.from_file:
            return None
        names = ", ".join(self.credential_vars.values())
        return f"check {names} (account {self.name!r} of {ACCOUNTS_FILE_ENV})"

    def token_file(self, data_dir: Path) -> Path:
        """Where its rotated OAuth tokens go: ``<data_dir>/tokens/<name>.json``; the
        ``default`` account without a file keeps today's ``<data_dir>/bulutfon_token.json``."""
        if not self.from_file:
            return data_dir / TOKEN_FILE_NAME
        return data_dir / "tokens" / f"{self.name}.json"

    @property
    def recordings_folder(self) -> str:
        """Its recordings' folder under ``BULUTFON_DATA_DIR``: ``recordings/<name>``; the
        ``default`` account without a file keeps today's ``recordings``."""
        return "recordings" if not self.from_file else f"recordings/{self.name}"

    def client_config(self, env: Mapping[str, str] | None = None, **overrides: Any) -> ClientConfig:
        """The API client's configuration for this account: the shared ``BULUTFON_*``
        variables, with this account's credentials, URL, cap and token file
        (:meth:`token_file`).

        Args:
            env: the environment; ``os.environ`` by default.
            **overrides: ``ClientConfig`` fields that win over the environment (e.g. a
                Dagster resource's run config); this account's own credentials, URL and
                cap win over them.

        Raises:
            ConfigError: a variable it names is unset or empty (one line naming the
                account and the variable, never a value).
        """
        env = os.environ if env is None else env
        if not self.from_file:
            return ClientConfig.from_env(env, **overrides)  # exactly today's configuration
        overrides = {**overrides, **dict.fromkeys(_CREDENTIALS.values())}
        for field_name, var in self.credential_vars.items():
            value = env.get(var, "").strip()
            if not value and field_name != "refresh_token":
                raise ConfigError(
                    f"account {self.name!r}: its {field_name}_env names {var}, which is not set"
                )
            overrides[field_name] = value or None
        if self.api_url is not None:
            overrides["api_url"] = self.api_url
            overrides["api_url_hint"] = f"api_url of account {self.name!r} in {ACCOUNTS_FILE_ENV}"
        if self.max_rps is not None:
            overrides["max_rps"] = self.max_rps
        if "api_key" in self.credential_vars:
            overrides["api_version"] = "v2"  # an API key is v2's credential only
        overrides["credentials_hint"] = self.credentials_hint
        config = ClientConfig.from_env(env, **overrides)
        token_path = self.token_file(config.data_dir)
        if self.name == DEFAULT_ACCOUNT:  # a single-account deployment moved to a file
            _carry_over_tokens(config.data_dir / TOKEN_FILE_NAME, token_path)
        return dataclasses.replace(config, token_path=token_path)


def _carry_over_tokens(before: Path, after: Path) -> None:
    """Move the rotated OAuth tokens of a deployment that loaded one account without a
    file (``before``) to the file's ``default`` account (``after``), the first time that
    account builds its client: the server rotated the refresh token since the variable was
    set, so the variable's is spent, and only the file holds one that works. Linked, then
    unlinked: a token file already at ``after`` is never overwritten."""
    if after.exists() or not before.is_file():
        return
    after.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(before, after)  # the same file: its 0600 mode too
    except OSError:  # another thread or process moved it first, or no hard links here
        return
    before.unlink(missing_ok=True)
    log.info("moved the OAuth tokens of %s to %s, account %r's token file",
             before, after, DEFAULT_ACCOUNT)  # fmt: skip


def _default_account() -> Account:
    """Today's variables, as one account."""
    return Account(DEFAULT_ACCOUNT, credential_vars={}, from_file=False)


def load_accounts(env: Mapping[str, str] | None = None) -> list[Account]:
    """The deployment's accounts: the file ``BULUTFON_ACCOUNTS_FILE`` names, in its order,
    or the ``default`` account alone when the variable is unset or empty.

    Raises:
        AccountsError: the file cannot be read or is malformed.
    """
    env = os.environ if env is None else env
    raw = env.get(ACCOUNTS_FILE_ENV, "").strip()
    if not raw:
        return [_default_account()]
    path = Path(raw)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise AccountsError(f"{ACCOUNTS_FILE_ENV}={raw}: cannot read it ({reason})") from None
    return parse_accounts(text, source=raw)


def find_account(name: str, env: Mapping[str, str] | None = None) -> Account:
    """The deployment's account called ``name``.

    Raises:
        AccountsError: the file is malformed, or holds no such account (the message lists
            the known ones).
    """
    (account,) = select_accounts([name], env)
    return account


def select_accounts(
    names: Sequence[str] | None, env: Mapping[str, str] | None = None
) -> list[Account]:
    """The deployment's accounts (:func:`load_accounts`), narrowed to ``names`` (in the
    file's order) when given.

    Raises:
        AccountsError: the file is malformed, or a name is not one of its accounts (one
            line listing the known ones).
    """
    accounts = load_accounts(env)
    if not names:
        return accounts
    known = {account.name: account for account in accounts}
    unknown = [name for name in dict.fromkeys(names) if name not in known]
    if unknown:
        raise AccountsError(
            f"unknown account(s) {', '.join(repr(n) for n in unknown)}; known: {', '.join(known)}"
        )
    wanted = set(names)
    return [account for account in accounts if account.name in wanted]


def parse_accounts(text: str, *, source: str = "the accounts file") -> list[Account]:
    """The accounts of a TOML document (see the module's docstring).

    Raises:
        AccountsError: malformed TOML, no account, an unknown key, a secret in the file,
            a bad name, URL, date or cap, or credentials that are neither a master token
            nor an OAuth client.
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise AccountsError(f"{source}: not valid TOML ({exc})") from None
    extra = sorted(set(document) - {"accounts"})
    if extra:
        raise AccountsError(
            f"{source}: unknown top-level key(s) {', '.join(extra)}; "
            "put each account in an [accounts.<name>] table"
        )
    tables = document.get("accounts")
    if not isinstance(tables, dict) or not tables:
        raise AccountsError(f"{source}: no account; add an [accounts.<name>] table")
    return [_account(name, table, source) for name, table in tables.items()]


def _account(name: str, table: Any, source: str) -> Account:
    where = f"{source}: account {name!r}"
    if not _NAME.fullmatch(name):
        raise AccountsError(
            f"{where}: a name is 1-63 lower-case letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    if not isinstance(table, dict):
        raise AccountsError(f"{where}: must be a table ([accounts.{name}])")
    for key in table:
        if key in _SECRETS:
            hint = f"{key}_env" if f"{key}_env" in _KEYS else "access_token_env"
            raise AccountsError(
                f"{where}: {key} would put a secret in the file; "
                f"put it in an environment variable and name that variable with {hint}"
            )
        if key not in _KEYS:
            raise AccountsError(f"{where}: unknown key {key!r}; known: {', '.join(_KEYS)}")
    credential_vars: dict[str, str] = {}
    for key, field_name in _CREDENTIALS.items():
        if key in table:
            var = table[key]
            if not isinstance(var, str) or not _ENV_NAME.fullmatch(var):
                raise AccountsError(f"{where}: {key} must name an environment variable")
            credential_vars[field_name] = var
    master = "access_token" in credential_vars
    key = "api_key" in credential_vars
    client = {"client_id", "client_secret"} <= set(credential_vars)
    if master + key + client != 1 or ((master or key) and len(credential_vars) > 1):
        raise AccountsError(
            f"{where}: give access_token_env (a master token), or client_id_env and "
            "client_secret_env (an OAuth client, with refresh_token_env or a token from "
            "`bulutfon-pipeline auth --account`), or api_key_env (a v2 API key): exactly one "
            "of them"
        )
    return Account(
        name,
        credential_vars=credential_vars,
        api_url=_url(table.get("api_url"), where),
        start_date=_date(table.get("start_date"), where),
        max_rps=_rps(table.get("max_rps"), where),
    )


def _url(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise AccountsError(f"{where}: api_url must be an http(s) URL")
    return value.rstrip("/")


def _date(value: Any, where: str) -> dt.date | None:
    if value is None or (isinstance(value, dt.date) and not isinstance(value, dt.datetime)):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise AccountsError(f"{where}: start_date must be a date, YYYY-MM-DD")


def _rps(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AccountsError(f"{where}: max_rps must be a number")
    if not (value > 0 and math.isfinite(value)):
        raise AccountsError(f"{where}: max_rps must be a positive number")
    return float(value)
