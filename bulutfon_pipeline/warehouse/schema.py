"""The warehouse schema: one SQLAlchemy Core ``MetaData``, the single source of truth.

The migrations (``warehouse/migrations``) bring a database to it, a guard test keeps
them equal, and each backend types its bulk writes by it
(``backend.to_arrow``). Declarative: no database is touched here. Tables and columns
are those of ``docs/architecture.md``.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Integer,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    Time,
)

__all__ = [
    "ACCOUNT_COLUMN",
    "ACCOUNT_TABLES",
    "DIRECTORY_BEGINNING",
    "DIRECTORY_TABLES",
    "HIGH_WATER_MARK_KEY",
    "REJECT_STAGES",
    "UNENFORCED_KEY_TABLES",
    "call_flow_steps",
    "call_recordings",
    "cdr_changes",
    "cdr_listing",
    "cdr_listing_stage",
    "cdr_refetch",
    "cdrs",
    "extensions",
    "key_columns",
    "load_rejects",
    "metadata",
    "originations",
    "phone_number_hours",
    "phone_numbers",
    "pipeline_state",
    "raw_cdr_details",
    "ring_group_members",
    "ring_groups",
    "views_state",
]

#: ``_pipeline_state`` key holding the ISO instant of the newest listed ``call_time``.
HIGH_WATER_MARK_KEY = "listing_high_water_mark"
REJECT_STAGES = ("listing", "detail", "normalize", "recording", "directory")


def _instant(name: str, **kwargs: bool) -> Column[object]:
    """A TIMESTAMPTZ column (UTC instants)."""
    return Column(name, DateTime(timezone=True), **kwargs)  # type: ignore[arg-type]


#: The PBX account a row belongs to (issue 14): the first column of every table but
#: ``_views_state``, and the first column of every key. ``settings.DEFAULT_ACCOUNT``
#: (``default``) in a single-account deployment; migration 0003 gave it to the rows
#: loaded before.
ACCOUNT_COLUMN = "account"


def _account(*, key: bool = False) -> Column[str]:
    """The ``account`` column (text, NOT NULL), first of its table and of its key."""
    return Column(ACCOUNT_COLUMN, String, nullable=False, primary_key=key)


metadata = MetaData()

cdr_listing = Table(
    "cdr_listing",
    metadata,
    _account(key=True),
    Column("uuid", String, primary_key=True),
    _instant("call_time", nullable=False),
    Column("call_date", Date, nullable=False),
    Column("direction", String),
    Column("caller", String),
    Column("callee", String),
    _instant("first_seen_at", nullable=False),
    _instant("last_seen_at", nullable=False),
)

# Internal: the rows of listing scans in progress. A scan stages its pages here in chunks
# (each chunk its own short transaction), so its memory is bounded by a chunk, not by the
# listing; the transaction that moves the high-water mark merges the scan's rows into
# ``cdr_listing`` and deletes them. What a killed scan left is deleted when the next
# scan starts. No key: a uuid may sit on two pages of a live listing (``page`` decides).
cdr_listing_stage = Table(
    "_cdr_listing_stage",
    metadata,
    _account(key=False),
    Column("scan_id", String, nullable=False),
    Column("page", Integer, nullable=False),
    Column("uuid", String, nullable=False),
    _instant("call_time", nullable=False),
    Column("call_date", Date, nullable=False),
    Column("direction", String),
    Column("caller", String),
    Column("callee", String),
)

cdrs = Table(
    "cdrs",
    metadata,
    _account(key=True),
    Column("uuid", String, primary_key=True),
    Column("call_type", String),
    Column("direction", String),
    Column("caller", String),
    Column("callee", String),
    Column("extension", String),
    _instant("call_time", nullable=False),
    _instant("answer_time"),
    _instant("hangup_time"),
    Column("call_date", Date, nullable=False),
    Column("answered", Boolean, nullable=False),
    Column("ring_seconds", Integer),
    Column("talk_seconds", Integer),
    Column("call_record", String),
    Column("has_recording", Boolean, nullable=False),
    Column("hangup_cause", String),
    Column("hangup_cause_code", String),
    Column("hangup_state", String),
    Column("hangup_state_code", String),
    Column("missing_call", Boolean, nullable=False),
    Column("call_price", Numeric(12, 4)),
    _instant("loaded_at", nullable=False),
)

call_flow_steps = Table(
    "call_flow_steps",
    metadata,
    _account(key=False),
    Column("cdr_uuid", String, nullable=False),
    Column("step_index", Integer, nullable=False),
    Column("callee", String),
    _instant("start_time"),
    _instant("answer_time"),
    _instant("hangup_time"),
    Column("redirection", String),
    Column("redirection_kind", String, nullable=False),
    Column("redirection_target", String),
    PrimaryKeyConstraint(ACCOUNT_COLUMN, "cdr_uuid", "step_index"),
)

originations = Table(
    "originations",
    metadata,
    _account(key=False),
    Column("cdr_uuid", String, nullable=False),
    Column("step_index", Integer, nullable=False),
    Column("attempt_index", Integer, nullable=False),
    Column("destination", String),
    _instant("start_time"),
    _instant("answer_time"),
    _instant("hangup_time"),
    Column("result", String),
    Column("outcome", String, nullable=False),
    Column("answered", Boolean, nullable=False),
    PrimaryKeyConstraint(ACCOUNT_COLUMN, "cdr_uuid", "step_index", "attempt_index"),
)

raw_cdr_details = Table(
    "raw_cdr_details",
    metadata,
    _account(key=True),
    Column("uuid", String, primary_key=True),
    _instant("fetched_at", nullable=False),
    Column("payload", JSON, nullable=False),
)

# No primary key: a reject may have no uuid (e.g. a record missing it).
load_rejects = Table(
    "load_rejects",
    metadata,
    _account(key=False),
    Column("uuid", String),
    Column("stage", String, nullable=False),
    Column("reason", String, nullable=False),
    Column("payload", String),
    _instant("rejected_at", nullable=False),
)

# One row per downloaded recording; ``path`` is relative to BULUTFON_DATA_DIR so the
# data folder can move. Written in the same transaction as the batch's recording rejects.
call_recordings = Table(
    "call_recordings",
    metadata,
    _account(key=True),
    Column("cdr_uuid", String, primary_key=True),
    Column("path", String, nullable=False),
    Column("content_type", String),
    Column("bytes", BigInteger, nullable=False),
    Column("sha256", String, nullable=False),
    _instant("downloaded_at", nullable=False),
)

# One row per field of a loaded call that a later detail changed (a recording removed, a
# price set or corrected, a time corrected), and one per recording file deleted because
# the source removed it. Written in the transaction that updates the call. Values are
# text: times as UTC ISO-8601 (``2015-04-16T13:17:00Z``), prices as decimals, booleans
# as ``true``/``false``; NULL is NULL.
cdr_changes = Table(
    "cdr_changes",
    metadata,
    _account(key=False),
    Column("uuid", String, nullable=False),
    Column("call_date", Date, nullable=False),
    Column("field", String, nullable=False),
    Column("old_value", String),
    Column("new_value", String),
    _instant("detected_at"),
    _instant("seen_at", nullable=False),
    PrimaryKeyConstraint(ACCOUNT_COLUMN, "uuid", "field", "seen_at"),
)

# Internal: loaded calls whose listing differs from their ``cdrs`` row, waiting for their
# detail to be fetched again. Written before the listing scan's last transaction; the
# detail load that re-fetches a call deletes its row in the same transaction.
cdr_refetch = Table(
    "_cdr_refetch",
    metadata,
    _account(key=True),
    Column("uuid", String, primary_key=True),
    Column("call_date", Date, nullable=False),
    Column("fields", String, nullable=False),
    _instant("detected_at", nullable=False),
)

pipeline_state = Table(
    "_pipeline_state",
    metadata,
    _account(key=True),
    Column("key", String, primary_key=True),
    Column("value", String),
    _instant("updated_at", nullable=False),
)

# Internal: the fingerprint of the views in place (``schema_setup.ensure_views``), so that
# they are recreated only when their SQL changes. Migration 0002. The one table without
# an ``account``: the views are the warehouse's, shared by every account's rows.
views_state = Table(
    "_views_state",
    metadata,
    Column("key", String, primary_key=True),
    Column("fingerprint", String, nullable=False),
    _instant("updated_at", nullable=False),
)


# --- The PBX's directory (issue 15, migration 0004) ----------------------------------------
# Slowly changing: each table keeps one row per version of an entity, valid from
# ``valid_from`` (inclusive) to ``valid_to`` (exclusive; NULL: the version in force). A
# change closes the version in force (its ``valid_to`` becomes the new one's
# ``valid_from``) and opens a new one; an entity gone from the API has its version closed
# and none opened. The first version of an entity a warehouse sees is valid from
# DIRECTORY_BEGINNING, so that calls loaded before the directory join a name; later ones
# from the instant the change was seen (the API response's ``Date``). A fact joins the
# version valid at its call's time:
#   ON d.account = f.account AND d.number = f.extension
#      AND f.call_time >= d.valid_from AND (d.valid_to IS NULL OR f.call_time < d.valid_to)
# Ids and numbers are text, as everywhere (the API sends numbers or strings).

#: ``valid_from`` of the first version of every directory entity.
DIRECTORY_BEGINNING = "1970-01-01T00:00:00+00:00"


def _validity() -> list[Column[object]]:
    return [_instant("valid_from", nullable=False, primary_key=True), _instant("valid_to")]


extensions = Table(
    "extensions",
    metadata,
    _account(key=True),
    Column("extension_id", String, primary_key=True),
    *_validity(),
    Column("number", String),
    Column("caller_name", String),
    Column("email", String),
    Column("did", String),
    Column("voice_mail", Boolean),
    Column("redirection_type", String),
    Column("destination_type", String),
    Column("destination_number", String),
    Column("external_number", String),
    # the allowed call classes, as received, joined by commas ("domestic,gsm")
    Column("acl", String),
)

ring_groups = Table(
    "ring_groups",
    metadata,
    _account(key=True),
    Column("group_id", String, primary_key=True),
    *_validity(),
    Column("number", String),
    Column("name", String),
    Column("timeout", Integer),
    Column("delay_time", Integer),
    Column("ring_duration", Integer),
)

# A member's row opens when the extension joins the group and closes when it leaves.
ring_group_members = Table(
    "ring_group_members",
    metadata,
    _account(key=True),
    Column("group_id", String, primary_key=True),
    Column("extension_id", String, primary_key=True),
    *_validity(),
    Column("extension_number", String),
)

# The DIDs. ``destination_type`` as received (``Auto attendant``, ``Group``,
# ``Extension``); ``working_hour``: whether the number follows its working hours.
phone_numbers = Table(
    "phone_numbers",
    metadata,
    _account(key=True),
    Column("did_id", String, primary_key=True),
    *_validity(),
    Column("number", String),
    Column("state", String),
    Column("destination_type", String),
    Column("destination_id", String),
    Column("destination_number", String),
    Column("working_hour", Boolean),
)

# A number's weekly working hours, one row per ISO weekday (1 Monday .. 7 Sunday), local
# Europe/Istanbul wall-clock times; versioned with the number: a version of
# ``phone_numbers`` and its seven rows share ``valid_from`` and ``valid_to``.
phone_number_hours = Table(
    "phone_number_hours",
    metadata,
    _account(key=True),
    Column("did_id", String, primary_key=True),
    *_validity(),
    Column("weekday", Integer, primary_key=True),
    Column("open", Boolean, nullable=False),
    Column("shift_start", Time),
    Column("shift_finish", Time),
    Column("lunch_break_start", Time),
    Column("lunch_break_finish", Time),
)

#: The directory's tables, in the order a load writes them.
DIRECTORY_TABLES = (extensions, ring_groups, ring_group_members, phone_numbers, phone_number_hours)


# The four tables a detail load writes keep their primary key in this metadata (the
# loader upserts by it and the docs name it) but not in DuckDB's DDL: DuckDB checks a key
# through an ART index that every COMMIT updates, and with the index outgrowing the
# memory limit a batch's commit cost grew with the table (100,000 calls: 38 s of load
# CPU with the keys, 28 s without; benchmarks/ANALYSIS.md). The loader keeps the keys
# unique itself (one writer at a time holds the file, every batch is deduplicated and
# upserted by key) and the ``*_unique`` asset checks verify it after every load.
# DuckDB files created before keep their constraints, which stay correct, only slower.
# PostgreSQL declares and enforces them: its B-tree indexes cost little, its upserts
# (``INSERT ... ON CONFLICT``) need them, and concurrent loads rely on them.
UNENFORCED_KEY_TABLES = (cdrs, call_flow_steps, originations, raw_cdr_details)


def _not_on_duckdb(*_args: object, dialect: object = None, **_kwargs: object) -> bool:
    return getattr(dialect, "name", None) != "duckdb"


for _table in UNENFORCED_KEY_TABLES:
    _table.primary_key.ddl_if(callable_=_not_on_duckdb)


def key_columns(table: Table) -> list[str]:
    """The columns of ``table``'s key, enforced by the DDL or not."""
    return [column.name for column in table.primary_key.columns]


#: Every table that holds an account's rows: all but ``_views_state``.
ACCOUNT_TABLES = tuple(t for t in metadata.sorted_tables if ACCOUNT_COLUMN in t.c)
