"""Fixtures of the attack suite: login roles in pyembed's group roles, connections as them, and
a source table shared by two tenants under row-level security."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector
from psycopg.types.json import Jsonb

from tests.conftest import dsn_for
from tests.helpers import run_worker

Role = Callable[..., str]
Connect = Callable[[str], psycopg.Connection]


@pytest.fixture
def make_role(db: psycopg.Connection) -> Iterator[Role]:
    """Login roles, members of the given pyembed group roles (none: a plain application role)."""
    made: list[str] = []

    def make(*groups: str) -> str:
        name = f"t_{uuid.uuid4().hex[:8]}"
        member = f" IN ROLE {', '.join(groups)}" if groups else ""
        db.execute(f'CREATE ROLE "{name}" LOGIN{member}')
        made.append(name)
        return name

    yield make
    # Collections hold the login roles' tables (their stores' policies and views name them).
    db.execute("SELECT pyembed.drop_collection(name) FROM pyembed.collections")
    for name in made:
        db.execute(f'DROP OWNED BY "{name}"')
        db.execute(f'DROP ROLE "{name}"')


@pytest.fixture
def connect_as(db: psycopg.Connection, pg_port: int) -> Iterator[Connect]:
    """Connections to the test database as a login role, closed after the test."""
    opened: list[psycopg.Connection] = []

    def connect(role: str) -> psycopg.Connection:
        conn = psycopg.connect(
            dsn_for(pg_port, db.info.dbname).replace("postgres@", f"{role}@"), autocommit=True
        )
        register_vector(conn)
        opened.append(conn)
        return conn

    yield connect
    for conn in opened:
        conn.close()


@pytest.fixture
def tenants(db: psycopg.Connection, db_dsn: str) -> psycopg.Connection:
    """Collection `notes` over a table whose RLS policy shows each tenant (app.tenant) its rows."""
    db.execute("CREATE TABLE notes (id int PRIMARY KEY, tenant text NOT NULL, body text)")
    db.execute("""INSERT INTO notes VALUES
        (1, 'a', 'quarterly revenue report'), (2, 'a', 'hiring plan for engineering'),
        (3, 'b', 'quarterly revenue forecast'), (4, 'b', 'office party schedule')""")
    db.execute("ALTER TABLE notes ENABLE ROW LEVEL SECURITY")
    db.execute(
        "CREATE POLICY by_tenant ON notes USING (tenant = current_setting('app.tenant', true))"
    )
    db.execute("SELECT pyembed.create_collection('notes', 'notes', ARRAY['body'])")
    db.execute(
        "SELECT pyembed.alter_collection('notes', settings => %s)",
        (Jsonb({"tenant_setting": "app.tenant"}),),
    )
    run_worker(db_dsn)  # as the table owner, which bypasses RLS
    db.execute("GRANT SELECT ON notes TO pyembed_reader")
    return db


def note_vector(db: psycopg.Connection, note_id: int) -> np.ndarray:
    """The stored embedding of a note, as a query vector."""
    row = db.execute("SELECT embedding FROM pyembed_store.notes_v1 WHERE id = %s", (note_id,))
    found = row.fetchone()
    assert found is not None
    return np.asarray(found[0].to_numpy(), dtype=np.float32)


def as_tenant(conn: psycopg.Connection, tenant: str) -> psycopg.Connection:
    conn.execute("SELECT set_config('app.tenant', %s, false)", (tenant,))
    return conn
