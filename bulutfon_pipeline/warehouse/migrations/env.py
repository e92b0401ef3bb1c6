"""Alembic's environment for the warehouse migrations.

Run by :func:`bulutfon_pipeline.warehouse.migrate.upgrade` with the caller's connection in
``config.attributes["connection"]`` (and the warehouse schema in
``config.attributes["schema"]``), or by ``python -m bulutfon_pipeline.warehouse.migrate``
with a URL (``config.attributes["url"]``) to write a new revision. Migrations run in the
connection's transaction; operations name no schema: on PostgreSQL the ``search_path`` of
that transaction is the warehouse schema, where ``alembic_version`` lives too.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

import bulutfon_pipeline.warehouse.migrations  # noqa: F401  (registers DuckDB's Alembic impl)
from bulutfon_pipeline.warehouse import schema


def _run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        # What `revision --autogenerate` compares the database with: the live metadata.
        target_metadata=schema.metadata,
        version_table_schema=context.config.attributes.get("schema"),
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    engine = sa.create_engine(context.config.attributes["url"])
    try:
        with engine.begin() as own_connection:
            _run(own_connection)
    finally:
        engine.dispose()
