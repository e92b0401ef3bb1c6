"""Defaults in one place: URLs, paths, page size, timeouts, retry limits, file locations.

Every value here can be overridden by the environment variable named next to it
(see `.env.example`). :class:`Settings` reads and validates the pipeline's variables, in
one place. This module is plain Python and imports nothing of the project, so every layer
(the API client, the simulator, the warehouse, the assets) can use it.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy.engine import url as sa_url
from sqlalchemy.exc import ArgumentError

#: The PBX's clock. API times without an offset are local time here (DST until 2016).
LOCAL_TZ_NAME = "Europe/Istanbul"
LOCAL_TZ = ZoneInfo(LOCAL_TZ_NAME)

# --- API (env BULUTFON_*) -------------------------------------------------------------
DEFAULT_API_URL = "https://api.bulutfon.com"  # BULUTFON_API_URL
DEFAULT_TOKEN_URL = "https://bulutfon.com/oauth/token"  # BULUTFON_TOKEN_URL
DEFAULT_CDR_LIST_PATH = "/cdr.json"  # BULUTFON_CDR_LIST_PATH
DEFAULT_CDR_DETAIL_PATH = "/cdr/{uuid}.json"  # BULUTFON_CDR_DETAIL_PATH
DEFAULT_RECORDING_PATH = "/call-records/{uuid}"  # BULUTFON_RECORDING_PATH
DEFAULT_REDIRECT_URI = "urn:ietf:wg:oauth:2.0:oob"  # BULUTFON_REDIRECT_URI

# --- API v2 (BULUTFON_API_VERSION=v2; section 7 of bulutfon-api.md, the rest inferred) --
DEFAULT_API_VERSION = "v1"  # BULUTFON_API_VERSION: v1 (seed and v1 paths) or v2
DEFAULT_V2_LIST_PATH = "/v2/cdr/list"  # BULUTFON_V2_CDR_LIST_PATH
#: The call's LOCAL (Europe/Istanbul) date fills {yyyy}, {mm} and {dd}.
DEFAULT_V2_DETAIL_PATH = "/v2/cdr/{yyyy}/{mm}/{dd}/{uuid}"  # BULUTFON_V2_CDR_DETAIL_PATH
DEFAULT_V2_AUTH = "header"  # BULUTFON_V2_AUTH: header or query (leaks into access logs)
DEFAULT_V2_KEY_NAME = "apikey"  # BULUTFON_V2_KEY_NAME: the header / query parameter
DEFAULT_V2_PAGE_PARAM = "page"  # BULUTFON_V2_PAGE_PARAM
DEFAULT_V2_LIMIT_PARAM = "limit"  # BULUTFON_V2_LIMIT_PARAM
DEFAULT_V2_DATA_KEY = "data"  # BULUTFON_V2_DATA_KEY: the listing's items, the detail's call
DEFAULT_V2_PAGINATION_KEY = "pagination"  # BULUTFON_V2_PAGINATION_KEY
DEFAULT_V2_TIME_FIELD = "call_time"  # BULUTFON_V2_TIME_FIELD (empty: no time filter)
DEFAULT_V2_TIME_OP = "ge"  # BULUTFON_V2_TIME_OP: gt or ge
#: v2 field -> the v1 name the normaliser reads (BULUTFON_V2_FIELD_MAP, "a=b,c=d").
DEFAULT_V2_FIELD_MAP = "caller_extension=extension"

DEFAULT_PAGE_SIZE = 100  # BULUTFON_PAGE_SIZE
DEFAULT_TIMEOUT_S = 30.0  # BULUTFON_TIMEOUT_S (read/write/pool)
DEFAULT_CONNECT_TIMEOUT_S = 10.0  # BULUTFON_CONNECT_TIMEOUT_S
DEFAULT_MAX_CONCURRENCY = 16  # BULUTFON_MAX_CONCURRENCY (in-flight detail requests)
DEFAULT_MAX_RETRIES = 8  # BULUTFON_MAX_RETRIES (per request)
DEFAULT_RETRY_AFTER_CAP_S = 60.0  # BULUTFON_RETRY_AFTER_CAP_S
DEFAULT_BACKOFF_BASE_S = 0.25  # first backoff step; doubles per attempt (equal jitter)
DEFAULT_BACKOFF_MAX_S = 20.0
DEFAULT_MAX_RPS: float | None = None  # BULUTFON_MAX_RPS (optional fixed cap)
#: Refresh the access token this many seconds before it expires.
TOKEN_REFRESH_MARGIN_S = 60.0
#: The one PBX account of a deployment without ``BULUTFON_ACCOUNTS_FILE`` (issue 14); the
#: ``account`` of every row it loads.
DEFAULT_ACCOUNT = "default"
TOKEN_FILE_NAME = "bulutfon_token.json"
ERROR_BODY_MAX_CHARS = 500

# --- Pipeline -------------------------------------------------------------------------
DEFAULT_DATA_DIR = "data"  # BULUTFON_DATA_DIR
DEFAULT_DUCKDB_PATH = "data/bulutfon.duckdb"  # BULUTFON_DUCKDB_PATH
#: The analysts' read-only copy (BULUTFON_ANALYTICS_PATH); empty: beside the warehouse,
#: ``<name>.analytics.duckdb`` (``analytics_path_for``).
ANALYTICS_SUFFIX = ".analytics.duckdb"
#: How long a sync waits for another sync's writer lock before it exits 3
#: (BULUTFON_LOCK_TIMEOUT_S).
DEFAULT_LOCK_TIMEOUT_S = 600.0
#: BULUTFON_WAREHOUSE_URL unset: the DuckDB file. BULUTFON_WAREHOUSE_SCHEMA's default:
DEFAULT_WAREHOUSE_SCHEMA = "public"
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")
DEFAULT_LOOKBACK_HOURS = 48  # BULUTFON_LOOKBACK_HOURS
DEFAULT_START_DATE = dt.date(2015, 1, 1)  # BULUTFON_START_DATE
#: Details per DuckDB transaction (BULUTFON_DETAIL_BATCH_SIZE). Each batch pays fixed costs
#: (pandas frames, Arrow conversion, statements, a commit): 1,000 loaded 100,000 calls in
#: 32-36 s against 42 s at 500; a 100,000-call sync peaked at 396 MB against 380 MB
#: (BENCHMARKS.md). Set 500 where memory matters more than speed.
DEFAULT_DETAIL_BATCH_SIZE = 1000
#: Listing rows a scan gathers before it stages them in the warehouse (bounds its memory).
DEFAULT_LISTING_CHUNK_ROWS = 5000  # BULUTFON_LISTING_CHUNK_ROWS
#: DuckDB's memory limit per pipeline connection. DuckDB's default (80 % of RAM) let its
#: cache and the primary-key indexes grow with the warehouse: a 100,000-call load peaked
#: at 634 MB RSS, against 293 MB with this limit at the same speed; larger queries spill.
DUCKDB_MEMORY_LIMIT = "64MB"
#: PBX accounts one ``sync`` loads at once (BULUTFON_ACCOUNTS_AT_ONCE), each in a thread
#: with its own runs and API client, in even rounds: 50 x 400 calls at 20 req/s into
#: DuckDB took one round of 33-41 s at 385-399 MB.
DEFAULT_ACCOUNTS_AT_ONCE = 50
#: DuckDB's memory limit per connection off the main thread outside a ``sync``'s accounts,
#: for ``DUCKDB_OTHER_THREADS`` sharing the instance (64 MB for 8 at once ran out).
DUCKDB_ACCOUNT_MEMORY_MB = 64
DUCKDB_OTHER_THREADS = 20
#: The limit of the instance a ``sync``'s accounts in threads share: one load's 64 MB and
#: a margin for reads beside a write (ran out at 64 once; ``benchmarks/ANALYSIS.md``, 39).
DUCKDB_ACCOUNTS_MEMORY_LIMIT = "80MB"


def duckdb_threads_memory_limit(accounts_in_threads: bool) -> str:
    """DuckDB's memory limit off the main thread: ``DUCKDB_ACCOUNTS_MEMORY_LIMIT`` while
    accounts load in threads of a ``sync``, else ``DUCKDB_ACCOUNT_MEMORY_MB`` for each of
    ``DUCKDB_OTHER_THREADS``."""
    if accounts_in_threads:
        return DUCKDB_ACCOUNTS_MEMORY_LIMIT
    return f"{DUCKDB_ACCOUNT_MEMORY_MB * DUCKDB_OTHER_THREADS}MB"


#: The WAL size at which DuckDB checkpoints on its own (default 16 MiB). A load of many
#: batches releases its connection every few seconds (``Warehouse.session``), and closing
#: checkpoints anyway; checkpoints at 16 MiB in between cost 4.4 s of a 100,000-call
#: load's 44 s and bought nothing: the WAL is as durable (BENCHMARKS.md).
DUCKDB_CHECKPOINT_THRESHOLD = "256MB"
#: The same while several accounts load in threads of one process, DuckDB's default: their
#: connections overlap, so the database is never closed (which checkpoints) while they
#: load, and every row since the last checkpoint stays in memory. At 256 MB, 50 accounts
#: x 400 calls held 83 MB of tables in memory by the end; at 16 MB, 25 (ANALYSIS.md).
DUCKDB_THREADS_CHECKPOINT_THRESHOLD = "16MB"
#: The threads that run the DuckDB work of all the accounts loading in threads of one
#: process (``warehouse.duckdb_connect``): DuckDB keeps memory per thread that works in it.
DUCKDB_WORK_THREADS = 2
DEFAULT_SCHEDULE_CRON = "*/15 * * * *"  # BULUTFON_SCHEDULE_CRON
#: The weekly reconcile: Sundays 03:30 local (BULUTFON_RECONCILE_CRON), over these days.
DEFAULT_RECONCILE_CRON = "30 3 * * 0"
RECONCILE_DAYS = 90
DEFAULT_REJECT_RATE_WARN = 0.01  # BULUTFON_REJECT_RATE_WARN
#: How Dagster runs a run's steps (BULUTFON_EXECUTOR): ``multiprocess``, Dagster's
#: multiprocess executor (each step in a child process of the run's worker, forked from a
#: ``forkserver``; in-process for ``sync``), or
#: ``celery``: each step as a task of a Celery queue, run by `dagster-celery worker`
#: processes on any machine (deploy/celery.yaml; docs/deploy.md).
EXECUTORS = ("multiprocess", "celery")
DEFAULT_EXECUTOR = "multiprocess"


# --- The pipeline's settings object -----------------------------------------------------
#
# Read from the environment here and nowhere else (the API client's own variables are read
# by ``api.config.ClientConfig.from_env``, which the API package owns). In Dagster these
# values reach the assets, checks and schedule through ``resources.SettingsResource``, so
# the launchpad shows them and a run can override them.

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class SettingsError(ValueError):
    """A setting is malformed; the message is one line naming the variable."""


@dataclass(frozen=True)
class Settings:
    """Every knob of the pipeline outside the API client, validated once.

    Build it with :meth:`from_env` (the environment) or directly (tests, the resource).
    """

    data_dir: Path = Path(DEFAULT_DATA_DIR)
    duckdb_path: Path = Path(DEFAULT_DUCKDB_PATH)
    lookback_hours: float = DEFAULT_LOOKBACK_HOURS
    start_date: dt.date = DEFAULT_START_DATE
    detail_batch_size: int = DEFAULT_DETAIL_BATCH_SIZE
    listing_chunk_rows: int = DEFAULT_LISTING_CHUNK_ROWS
    reject_rate_warn: float = DEFAULT_REJECT_RATE_WARN
    download_recordings: bool = False
    #: Delete our copy of a recording the source removed (BULUTFON_MIRROR_RECORDING_DELETES).
    mirror_recording_deletes: bool = True
    schedule_cron: str = DEFAULT_SCHEDULE_CRON
    reconcile_cron: str = DEFAULT_RECONCILE_CRON
    #: ``None``: beside the warehouse (:func:`analytics_path_for`).
    analytics_path_setting: Path | None = None
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S
    #: A SQLAlchemy URL of a PostgreSQL warehouse (BULUTFON_WAREHOUSE_URL); ``None``: the
    #: DuckDB file at ``duckdb_path``. May hold a password: never print it, use
    #: :meth:`warehouse_location`.
    warehouse_url: str | None = None
    #: The PostgreSQL schema of the warehouse's tables (BULUTFON_WAREHOUSE_SCHEMA).
    warehouse_schema: str = DEFAULT_WAREHOUSE_SCHEMA
    #: Dagster's executor for the code location's jobs (BULUTFON_EXECUTOR, ``EXECUTORS``).
    executor: str = DEFAULT_EXECUTOR
    #: How many accounts ``sync`` and ``backfill`` load at once in one process
    #: (BULUTFON_ACCOUNTS_AT_ONCE).
    accounts_at_once: int = DEFAULT_ACCOUNTS_AT_ONCE

    @property
    def warehouse_location(self) -> str:
        """Where the warehouse is, fit for messages: the DuckDB path, or the URL with its
        password hidden."""
        if self.warehouse_url is None:
            return str(self.duckdb_path)
        return redact_url(self.warehouse_url)

    @property
    def analytics_path(self) -> Path:
        """The analysts' read-only copy of the warehouse, published after each load."""
        if self.analytics_path_setting is not None:
            return self.analytics_path_setting
        return analytics_path_for(self.duckdb_path)

    @property
    def lookback(self) -> dt.timedelta:
        """How far behind the high-water mark a scan looks for late calls."""
        return dt.timedelta(hours=self.lookback_hours)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the ``BULUTFON_*`` pipeline variables; empty ones count as unset.

        Raises:
            SettingsError: a value is malformed (one line naming the variable).
        """
        env = os.environ if env is None else env

        def raw(name: str) -> str:
            return env.get(name, "").strip()

        return cls(
            data_dir=Path(raw("BULUTFON_DATA_DIR") or DEFAULT_DATA_DIR),
            duckdb_path=Path(raw("BULUTFON_DUCKDB_PATH") or DEFAULT_DUCKDB_PATH),
            lookback_hours=_positive(env, "BULUTFON_LOOKBACK_HOURS", DEFAULT_LOOKBACK_HOURS),
            start_date=parse_start_date(raw("BULUTFON_START_DATE")),
            detail_batch_size=int(
                _positive(env, "BULUTFON_DETAIL_BATCH_SIZE", DEFAULT_DETAIL_BATCH_SIZE)
            ),
            listing_chunk_rows=int(
                _positive(env, "BULUTFON_LISTING_CHUNK_ROWS", DEFAULT_LISTING_CHUNK_ROWS)
            ),
            reject_rate_warn=_positive(
                env, "BULUTFON_REJECT_RATE_WARN", DEFAULT_REJECT_RATE_WARN, zero_ok=True
            ),
            download_recordings=raw("BULUTFON_DOWNLOAD_RECORDINGS").lower() in _TRUE,
            mirror_recording_deletes=_switch(env, "BULUTFON_MIRROR_RECORDING_DELETES", True),
            schedule_cron=raw("BULUTFON_SCHEDULE_CRON") or DEFAULT_SCHEDULE_CRON,
            reconcile_cron=raw("BULUTFON_RECONCILE_CRON") or DEFAULT_RECONCILE_CRON,
            analytics_path_setting=(
                Path(raw("BULUTFON_ANALYTICS_PATH")) if raw("BULUTFON_ANALYTICS_PATH") else None
            ),
            lock_timeout_s=_positive(
                env, "BULUTFON_LOCK_TIMEOUT_S", DEFAULT_LOCK_TIMEOUT_S, zero_ok=True
            ),
            warehouse_url=parse_warehouse_url(raw("BULUTFON_WAREHOUSE_URL")),
            warehouse_schema=parse_schema_name(raw("BULUTFON_WAREHOUSE_SCHEMA")),
            executor=parse_executor(env),
            accounts_at_once=_whole(env, "BULUTFON_ACCOUNTS_AT_ONCE", DEFAULT_ACCOUNTS_AT_ONCE),
        )

    @classmethod
    def from_env_or_defaults(cls, env: Mapping[str, str] | None = None) -> Settings:
        """:meth:`from_env`, or the defaults when the environment is malformed.

        For what must load whatever the environment holds (the Dagster definitions); the
        CLI validates with :meth:`from_env` first and reports the error in one line.
        """
        try:
            return cls.from_env(env)
        except SettingsError:
            return cls()


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for messages and metadata)."""
    try:
        return sa_url.make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "<malformed URL>"


def parse_warehouse_url(raw: str) -> str | None:
    """``BULUTFON_WAREHOUSE_URL``: a SQLAlchemy URL of a PostgreSQL database, or unset.

    Raises:
        SettingsError: not a URL, or not a PostgreSQL one (the message never shows the
            URL's password).
    """
    if not raw:
        return None
    try:
        url = sa_url.make_url(raw)
    except (ArgumentError, ValueError):
        raise SettingsError(
            "BULUTFON_WAREHOUSE_URL is not a SQLAlchemy URL; use e.g. "
            "postgresql+psycopg://loader@db.internal/calls"
        ) from None
    if url.get_backend_name() != "postgresql":
        raise SettingsError(
            f"BULUTFON_WAREHOUSE_URL names a {url.get_backend_name()!r} database; only "
            "PostgreSQL is supported there (postgresql+psycopg://...); unset it to use "
            "the DuckDB file at BULUTFON_DUCKDB_PATH"
        )
    if url.get_driver_name() not in ("psycopg", "postgresql"):
        raise SettingsError(
            f"BULUTFON_WAREHOUSE_URL uses the {url.get_driver_name()!r} driver; the "
            "warehouse loads through psycopg 3's COPY: use postgresql+psycopg://..."
        )
    return raw


def parse_executor(env: Mapping[str, str]) -> str:
    """``BULUTFON_EXECUTOR`` (default ``multiprocess``), checked against the warehouse.

    Reads only BULUTFON_EXECUTOR and whether BULUTFON_WAREHOUSE_URL is set, so the
    definitions can check it alone (another malformed variable must not hide it).

    Raises:
        SettingsError: an unknown executor, or ``celery`` on a DuckDB warehouse.
    """
    raw = env.get("BULUTFON_EXECUTOR", "").strip().lower()
    if not raw:
        return DEFAULT_EXECUTOR
    if raw not in EXECUTORS:
        raise SettingsError(
            f"BULUTFON_EXECUTOR={raw!r} is not one of {', '.join(EXECUTORS)} (unset: "
            f"{DEFAULT_EXECUTOR})"
        )
    if raw == "celery" and not env.get("BULUTFON_WAREHOUSE_URL", "").strip():
        # Celery runs steps in worker processes, possibly on several machines at once; a
        # DuckDB file takes one writing process and lives on one machine's disk.
        raise SettingsError(
            "BULUTFON_EXECUTOR=celery needs a PostgreSQL warehouse: set "
            "BULUTFON_WAREHOUSE_URL (a DuckDB file takes one writing process, and Celery "
            "runs steps in several)"
        )
    return raw


def parse_schema_name(raw: str) -> str:
    """``BULUTFON_WAREHOUSE_SCHEMA`` (default ``public``): a plain SQL identifier.

    Raises:
        SettingsError: not a plain identifier (letters, digits, underscores).
    """
    if not raw:
        return DEFAULT_WAREHOUSE_SCHEMA
    if not _IDENTIFIER.fullmatch(raw):
        raise SettingsError(
            f"BULUTFON_WAREHOUSE_SCHEMA={raw!r} is not a plain SQL identifier "
            "(lower-case letters, digits and underscores, not starting with a digit)"
        )
    return raw


def analytics_path_for(duckdb_path: Path) -> Path:
    """The default analysts' file beside a warehouse: ``bulutfon.duckdb`` ->
    ``bulutfon.analytics.duckdb``."""
    stem = duckdb_path.name.removesuffix(".duckdb")
    return duckdb_path.with_name(stem + ANALYTICS_SUFFIX)


def parse_start_date(raw: str) -> dt.date:
    """``BULUTFON_START_DATE`` (YYYY-MM-DD; empty: 2015-01-01).

    Raises:
        SettingsError: with a one-line message when the value is not a date.
    """
    if not raw:
        return DEFAULT_START_DATE
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise SettingsError(
            f"BULUTFON_START_DATE={raw!r} is not a date; use YYYY-MM-DD, e.g. 2015-01-01"
        ) from None


def _switch(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in _TRUE | _FALSE:
        raise SettingsError(f"{name}={raw!r} must be 1/true/yes/on or 0/false/no/off")
    return raw in _TRUE


def _whole(env: Mapping[str, str], name: str, default: int) -> int:
    """A positive whole number (``default`` when unset or empty)."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not re.fullmatch(r"[0-9]+", raw) or int(raw) < 1:
        raise SettingsError(f"{name}={raw!r} must be a positive whole number (e.g. {default})")
    return int(raw)


def _positive(env: Mapping[str, str], name: str, default: float, *, zero_ok: bool = False) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if not (value >= 0 if zero_ok else value > 0) or value == float("inf"):
        kind = "a non-negative" if zero_ok else "a positive"
        raise SettingsError(f"{name}={raw!r} must be {kind} number")
    return value
