"""Defaults in one place: URLs, paths, page size, timeouts, retry limits, file locations.

Every value here can be overridden by the environment variable named next to it
(see `.env.example`). This module is plain Python and imports no dagster, so the API
client, the simulator and the warehouse layer share it.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

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

DEFAULT_PAGE_SIZE = 100  # BULUTFON_PAGE_SIZE
DEFAULT_TIMEOUT_S = 30.0  # BULUTFON_TIMEOUT_S (read/write/pool)
DEFAULT_CONNECT_TIMEOUT_S = 10.0  # BULUTFON_CONNECT_TIMEOUT_S
DEFAULT_MAX_CONCURRENCY = 16  # BULUTFON_MAX_CONCURRENCY (in-flight detail requests)
DEFAULT_MAX_RETRIES = 8  # BULUTFON_MAX_RETRIES (per request)
DEFAULT_RETRY_AFTER_CAP_S = 60.0  # BULUTFON_RETRY_AFTER_CAP_S
DEFAULT_BACKOFF_BASE_S = 0.25  # first backoff step; doubles per attempt (full jitter)
DEFAULT_BACKOFF_MAX_S = 20.0
DEFAULT_MAX_RPS: float | None = None  # BULUTFON_MAX_RPS (optional fixed cap)
#: Refresh the access token this many seconds before it expires.
TOKEN_REFRESH_MARGIN_S = 60.0
TOKEN_FILE_NAME = "bulutfon_token.json"
ERROR_BODY_MAX_CHARS = 500

# --- Pipeline -------------------------------------------------------------------------
DEFAULT_DATA_DIR = "data"  # BULUTFON_DATA_DIR
DEFAULT_DUCKDB_PATH = "data/bulutfon.duckdb"  # BULUTFON_DUCKDB_PATH
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
#: at 634 MB RSS, against 293 MB with this limit at the same speed (BENCHMARKS.md).
#: Larger queries spill to disk instead.
DUCKDB_MEMORY_LIMIT = "64MB"
#: The WAL size at which DuckDB checkpoints on its own (default 16 MiB). A load of many
#: batches releases its connection every few seconds (``Warehouse.session``), and closing
#: checkpoints anyway; checkpoints at 16 MiB in between cost 4.4 s of a 100,000-call
#: load's 44 s and bought nothing: the WAL is as durable (BENCHMARKS.md).
DUCKDB_CHECKPOINT_THRESHOLD = "256MB"
DEFAULT_SCHEDULE_CRON = "*/15 * * * *"  # BULUTFON_SCHEDULE_CRON
#: The weekly reconcile: Sundays 03:30 local (BULUTFON_RECONCILE_CRON), over these days.
DEFAULT_RECONCILE_CRON = "30 3 * * 0"
RECONCILE_DAYS = 90
DEFAULT_REJECT_RATE_WARN = 0.01  # BULUTFON_REJECT_RATE_WARN
