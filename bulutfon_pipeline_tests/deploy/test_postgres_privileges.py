"""The GRANT statements of docs/postgres.md, run as written against a real PostgreSQL.

The two ``sql`` blocks of the page's privileges section are executed, with fresh names for
the roles and the database (roles are cluster-wide, and the cluster is shared by the tests
of one worker). Then each role does what it is meant to and is refused the rest.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

import psycopg
import pytest
from psycopg import errors

from bulutfon_pipeline_tests.postgres import PostgresServer

DOC = Path(__file__).resolve().parents[2] / "docs" / "postgres.md"
SECTION = "## 2. Privileges"
#: The names the page uses, each replaced by a fresh one (whole words only).
DOC_NAMES = ("loader", "analysts", "alice", "calls")
ROWS = [("c-1", "ANSWERED"), ("c-2", "NO ANSWER"), ("c-3", "BUSY")]


def privilege_blocks() -> list[str]:
    """The ``sql`` blocks of the privileges section, in order."""
    text = DOC.read_text()
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    return re.findall(r"```sql\n(.*?)```", text[start:end], flags=re.DOTALL)


def statements(block: str, names: dict[str, str]) -> list[str]:
    """The block's statements, one each, with ``names`` substituted; comments dropped."""
    lines = [line for line in block.splitlines() if not line.lstrip().startswith("--")]
    sql = "\n".join(lines)
    for old, new in names.items():
        sql = re.sub(rf"\b{old}\b", new, sql)
    return [s.strip() for s in sql.split(";") if s.strip()]


@dataclass
class Roles:
    server: PostgresServer
    names: dict[str, str]  # the page's name -> the name used here

    def connect(self, role: str) -> psycopg.Connection:
        """A connection to the warehouse's database as ``role`` (trust authentication)."""
        conninfo = self.server.conninfo(self.names["calls"]).replace(
            "user=postgres", f"user={self.names.get(role, role)}"
        )
        return psycopg.connect(conninfo, autocommit=True)


@pytest.fixture
def roles(postgres_server: PostgresServer) -> Iterator[Roles]:
    """The page's two blocks run as the superuser; roles and database dropped afterwards."""
    suffix = uuid4().hex[:8]
    names = {name: f"{name}_{suffix}" for name in DOC_NAMES}
    server_block, database_block = privilege_blocks()
    try:
        # CREATE DATABASE cannot run in a transaction: one statement at a time, autocommit.
        with psycopg.connect(postgres_server.conninfo(), autocommit=True) as con:
            for statement in statements(server_block, names):
                con.execute(statement)
        with psycopg.connect(postgres_server.conninfo(names["calls"]), autocommit=True) as con:
            for statement in statements(database_block, names):
                con.execute(statement)
        yield Roles(postgres_server, names)
    finally:
        postgres_server.drop_database(names["calls"])
        with psycopg.connect(postgres_server.conninfo(), autocommit=True) as con:
            for role in ("alice", "analysts", "loader"):
                con.execute(f'DROP ROLE IF EXISTS "{names[role]}"')


def test_the_page_has_the_two_blocks_it_describes() -> None:
    server_block, database_block = privilege_blocks()
    assert "CREATE DATABASE calls" in server_block
    assert "ALTER DEFAULT PRIVILEGES FOR ROLE loader" in database_block


def test_loader_creates_and_loads_its_tables(roles: Roles) -> None:
    with roles.connect("loader") as con:
        con.execute("CREATE TABLE public.cdrs (uuid text PRIMARY KEY, status text NOT NULL)")
        with con.cursor().copy("COPY public.cdrs (uuid, status) FROM STDIN") as copy:
            for row in ROWS[:2]:
                copy.write_row(row)
        con.execute("INSERT INTO public.cdrs VALUES (%s, %s)", ROWS[2])
        con.execute("UPDATE public.cdrs SET status = 'ANSWERED' WHERE uuid = 'c-3'")
        con.execute("DELETE FROM public.cdrs WHERE uuid = 'c-2'")
        con.execute("CREATE INDEX cdrs_status ON public.cdrs (status)")
        con.execute("CREATE VIEW public.answered AS SELECT uuid FROM public.cdrs "
                    "WHERE status = 'ANSWERED'")  # fmt: skip
        # Staging in a temporary table, and the lock that keeps two syncs apart.
        con.execute("CREATE TEMP TABLE staging AS SELECT * FROM public.cdrs")
        assert con.execute("SELECT pg_try_advisory_lock(42)").fetchone() == (True,)
        got = con.execute("SELECT uuid, status FROM public.cdrs ORDER BY uuid").fetchall()
        owner = con.execute(
            "SELECT tableowner FROM pg_tables WHERE schemaname = 'public' AND tablename = 'cdrs'"
        ).fetchone()
    assert got == [("c-1", "ANSWERED"), ("c-3", "ANSWERED")]
    assert owner == (roles.names["loader"],)


def test_loader_owns_neither_the_database_nor_other_schemas(roles: Roles) -> None:
    with roles.connect("loader") as con:
        with pytest.raises(errors.InsufficientPrivilege):
            con.execute("CREATE SCHEMA elsewhere")
        with pytest.raises(errors.InsufficientPrivilege):
            con.execute(f'DROP DATABASE "{roles.names["calls"]}"')


def test_analysts_read_every_table_and_change_nothing(roles: Roles) -> None:
    with roles.connect("loader") as con:
        con.execute("CREATE TABLE public.cdrs (uuid text PRIMARY KEY, status text NOT NULL)")
        con.cursor().executemany("INSERT INTO public.cdrs VALUES (%s, %s)", ROWS)
        con.execute("CREATE VIEW public.busy AS SELECT uuid FROM public.cdrs "
                    "WHERE status = 'BUSY'")  # fmt: skip
    with roles.connect("alice") as con:
        # Made by the loader after the grants: readable through the default privileges.
        assert con.execute("SELECT uuid, status FROM public.cdrs ORDER BY uuid").fetchall() == ROWS
        assert con.execute("SELECT uuid FROM public.busy").fetchall() == [("c-3",)]
        refused = [
            "INSERT INTO public.cdrs VALUES ('c-9', 'BUSY')",
            "UPDATE public.cdrs SET status = 'BUSY'",
            "DELETE FROM public.cdrs",
            "TRUNCATE public.cdrs",
            "CREATE TABLE public.mine (x int)",
            "DROP TABLE public.cdrs",
            "ALTER TABLE public.cdrs ADD COLUMN x int",
        ]
        for statement in refused:
            with pytest.raises(errors.InsufficientPrivilege):
                con.execute(statement)
        con.execute("CREATE TEMP TABLE scratch AS SELECT * FROM public.cdrs")  # BI tools do
    with roles.connect("loader") as con:
        assert con.execute("SELECT uuid, status FROM public.cdrs ORDER BY uuid").fetchall() == ROWS


def test_a_role_outside_both_cannot_connect(roles: Roles, postgres_server: PostgresServer) -> None:
    stranger = f"stranger_{uuid4().hex[:8]}"
    with psycopg.connect(postgres_server.conninfo(), autocommit=True) as con:
        con.execute(f'CREATE ROLE "{stranger}" LOGIN')
    try:
        with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
            roles.connect(stranger)
    finally:
        with psycopg.connect(postgres_server.conninfo(), autocommit=True) as con:
            con.execute(f'DROP ROLE "{stranger}"')
