"""The DuckDB schema is generated from the SQLAlchemy metadata and matches it (PostgreSQL's:
``test_postgres.py``)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from bulutfon_pipeline.warehouse import Warehouse, WarehouseError
from bulutfon_pipeline.warehouse.duckdb_backend import create_table_statements
from bulutfon_pipeline.warehouse.schema import (
    UNENFORCED_KEY_TABLES,
    key_columns,
    metadata,
)
from bulutfon_pipeline.warehouse.views import view_names

#: Every table but ``_views_state`` starts with ``account`` and so does its key (issue 14).
EXPECTED_TYPES = {
    "cdr_listing": {
        "account": "VARCHAR",
        "uuid": "VARCHAR", "call_time": "TIMESTAMP WITH TIME ZONE", "call_date": "DATE",
        "direction": "VARCHAR", "caller": "VARCHAR", "callee": "VARCHAR",
        "first_seen_at": "TIMESTAMP WITH TIME ZONE", "last_seen_at": "TIMESTAMP WITH TIME ZONE",
    },
    "cdrs": {
        "account": "VARCHAR",
        "uuid": "VARCHAR", "call_type": "VARCHAR", "direction": "VARCHAR", "caller": "VARCHAR",
        "callee": "VARCHAR", "extension": "VARCHAR", "call_time": "TIMESTAMP WITH TIME ZONE",
        "answer_time": "TIMESTAMP WITH TIME ZONE", "hangup_time": "TIMESTAMP WITH TIME ZONE",
        "call_date": "DATE", "answered": "BOOLEAN", "ring_seconds": "INTEGER",
        "talk_seconds": "INTEGER", "call_record": "VARCHAR", "has_recording": "BOOLEAN",
        "hangup_cause": "VARCHAR", "hangup_cause_code": "VARCHAR", "hangup_state": "VARCHAR",
        "hangup_state_code": "VARCHAR", "missing_call": "BOOLEAN",
        "call_price": "DECIMAL(12,4)", "loaded_at": "TIMESTAMP WITH TIME ZONE",
    },
    "call_flow_steps": {
        "account": "VARCHAR",
        "cdr_uuid": "VARCHAR", "step_index": "INTEGER", "callee": "VARCHAR",
        "start_time": "TIMESTAMP WITH TIME ZONE", "answer_time": "TIMESTAMP WITH TIME ZONE",
        "hangup_time": "TIMESTAMP WITH TIME ZONE", "redirection": "VARCHAR",
        "redirection_kind": "VARCHAR", "redirection_target": "VARCHAR",
    },
    "originations": {
        "account": "VARCHAR",
        "cdr_uuid": "VARCHAR", "step_index": "INTEGER", "attempt_index": "INTEGER",
        "destination": "VARCHAR", "start_time": "TIMESTAMP WITH TIME ZONE",
        "answer_time": "TIMESTAMP WITH TIME ZONE", "hangup_time": "TIMESTAMP WITH TIME ZONE",
        "result": "VARCHAR", "outcome": "VARCHAR", "answered": "BOOLEAN",
    },
    "raw_cdr_details": {
        "account": "VARCHAR",
        "uuid": "VARCHAR", "fetched_at": "TIMESTAMP WITH TIME ZONE", "payload": "JSON",
    },
    "load_rejects": {
        "account": "VARCHAR",
        "uuid": "VARCHAR", "stage": "VARCHAR", "reason": "VARCHAR", "payload": "VARCHAR",
        "rejected_at": "TIMESTAMP WITH TIME ZONE",
    },
    "_pipeline_state": {
        "account": "VARCHAR",
        "key": "VARCHAR", "value": "VARCHAR", "updated_at": "TIMESTAMP WITH TIME ZONE",
    },
    "call_recordings": {
        "account": "VARCHAR",
        "cdr_uuid": "VARCHAR", "path": "VARCHAR", "content_type": "VARCHAR", "bytes": "BIGINT",
        "sha256": "VARCHAR", "downloaded_at": "TIMESTAMP WITH TIME ZONE",
    },
    "_cdr_listing_stage": {
        "account": "VARCHAR",
        "scan_id": "VARCHAR", "page": "INTEGER", "uuid": "VARCHAR",
        "call_time": "TIMESTAMP WITH TIME ZONE", "call_date": "DATE", "direction": "VARCHAR",
        "caller": "VARCHAR", "callee": "VARCHAR",
    },
    "cdr_changes": {
        "account": "VARCHAR",
        "uuid": "VARCHAR", "call_date": "DATE", "field": "VARCHAR", "old_value": "VARCHAR",
        "new_value": "VARCHAR", "detected_at": "TIMESTAMP WITH TIME ZONE",
        "seen_at": "TIMESTAMP WITH TIME ZONE",
    },
    "_cdr_refetch": {
        "account": "VARCHAR",
        "uuid": "VARCHAR", "call_date": "DATE", "fields": "VARCHAR",
        "detected_at": "TIMESTAMP WITH TIME ZONE",
    },
    "_views_state": {
        "key": "VARCHAR", "fingerprint": "VARCHAR", "updated_at": "TIMESTAMP WITH TIME ZONE",
    },
    "extensions": {
        "account": "VARCHAR", "extension_id": "VARCHAR",
        "valid_from": "TIMESTAMP WITH TIME ZONE", "valid_to": "TIMESTAMP WITH TIME ZONE",
        "number": "VARCHAR", "caller_name": "VARCHAR", "email": "VARCHAR", "did": "VARCHAR",
        "voice_mail": "BOOLEAN", "redirection_type": "VARCHAR", "destination_type": "VARCHAR",
        "destination_number": "VARCHAR", "external_number": "VARCHAR", "acl": "VARCHAR",
    },
    "ring_groups": {
        "account": "VARCHAR", "group_id": "VARCHAR",
        "valid_from": "TIMESTAMP WITH TIME ZONE", "valid_to": "TIMESTAMP WITH TIME ZONE",
        "number": "VARCHAR", "name": "VARCHAR", "timeout": "INTEGER", "delay_time": "INTEGER",
        "ring_duration": "INTEGER",
    },
    "ring_group_members": {
        "account": "VARCHAR", "group_id": "VARCHAR", "extension_id": "VARCHAR",
        "valid_from": "TIMESTAMP WITH TIME ZONE", "valid_to": "TIMESTAMP WITH TIME ZONE",
        "extension_number": "VARCHAR",
    },
    "phone_numbers": {
        "account": "VARCHAR", "did_id": "VARCHAR",
        "valid_from": "TIMESTAMP WITH TIME ZONE", "valid_to": "TIMESTAMP WITH TIME ZONE",
        "number": "VARCHAR", "state": "VARCHAR", "destination_type": "VARCHAR",
        "destination_id": "VARCHAR", "destination_number": "VARCHAR", "working_hour": "BOOLEAN",
    },
    "phone_number_hours": {
        "account": "VARCHAR", "did_id": "VARCHAR",
        "valid_from": "TIMESTAMP WITH TIME ZONE", "valid_to": "TIMESTAMP WITH TIME ZONE",
        "weekday": "INTEGER", "open": "BOOLEAN", "shift_start": "TIME", "shift_finish": "TIME",
        "lunch_break_start": "TIME", "lunch_break_finish": "TIME",
    },
}  # fmt: skip

EXPECTED_KEYS = {
    "cdr_listing": ["account", "uuid"],
    "cdrs": ["account", "uuid"],
    "call_flow_steps": ["account", "cdr_uuid", "step_index"],
    "originations": ["account", "cdr_uuid", "step_index", "attempt_index"],
    "raw_cdr_details": ["account", "uuid"],
    "load_rejects": [],
    "_pipeline_state": ["account", "key"],
    "call_recordings": ["account", "cdr_uuid"],
    "_cdr_listing_stage": [],
    "cdr_changes": ["account", "uuid", "field", "seen_at"],
    "_cdr_refetch": ["account", "uuid"],
    "_views_state": ["key"],
    "extensions": ["account", "extension_id", "valid_from"],
    "ring_groups": ["account", "group_id", "valid_from"],
    "ring_group_members": ["account", "group_id", "extension_id", "valid_from"],
    "phone_numbers": ["account", "did_id", "valid_from"],
    "phone_number_hours": ["account", "did_id", "valid_from", "weekday"],
}


def describe(path: Path) -> dict[str, dict[str, str]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        rows = con.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'main' ORDER BY table_name, ordinal_position"
        ).fetchall()
    finally:
        con.close()
    out: dict[str, dict[str, str]] = {}
    for table, column, data_type in rows:
        out.setdefault(table, {})[column] = data_type
    return out


@pytest.fixture
def warehouse(duckdb_warehouse: Warehouse) -> Warehouse:
    """The DuckDB catalog (``describe``) is read here."""
    return duckdb_warehouse


def test_schema_created_from_metadata_matches(warehouse: Warehouse) -> None:
    described = describe(warehouse.path)
    tables = {name: cols for name, cols in described.items() if name in EXPECTED_TYPES}
    assert tables == EXPECTED_TYPES
    # column order = metadata order (the loader's insert order)
    for table in metadata.sorted_tables:
        assert list(described[table.name]) == [c.name for c in table.columns]
    # views exist too
    assert set(view_names()) <= set(described)


def test_primary_keys(warehouse: Warehouse) -> None:
    con = duckdb.connect(str(warehouse.path), read_only=True)
    try:
        rows = con.execute(
            "SELECT table_name, constraint_column_names FROM duckdb_constraints() "
            "WHERE constraint_type = 'PRIMARY KEY'"
        ).fetchall()
    finally:
        con.close()
    keys = {table: list(columns) for table, columns in rows}
    assert keys.pop("alembic_version") == ["version_num"]  # Alembic's own (migrations)
    # The bulk tables' keys are the loader's to keep (see schema.UNENFORCED_KEY_TABLES).
    unenforced = {"cdrs", "call_flow_steps", "originations", "raw_cdr_details"}
    assert keys == {t: k for t, k in EXPECTED_KEYS.items() if k and t not in unenforced}
    declared = {t.name: key_columns(t) for t in metadata.sorted_tables}
    assert declared == EXPECTED_KEYS
    assert {t.name for t in UNENFORCED_KEY_TABLES} == unenforced


def test_ddl_is_generated_with_if_not_exists() -> None:
    statements = create_table_statements()
    assert len(statements) == len(EXPECTED_TYPES)
    assert all(s.startswith("CREATE TABLE IF NOT EXISTS ") for s in statements)
    assert any("call_price NUMERIC(12, 4)" in s for s in statements)


def test_ensure_schema_is_idempotent(warehouse: Warehouse) -> None:
    before = describe(warehouse.path)
    warehouse.ensure_schema()
    assert describe(warehouse.path) == before


def test_missing_folder_raises_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "bulutfon.duckdb"
    with pytest.raises(WarehouseError, match=r"nowhere") as info:
        Warehouse(path).ensure_schema()
    assert str(path.parent) in str(info.value)
    assert not path.parent.exists()
