"""The README's SQL and Python examples, run as written, so the documentation cannot drift.

Every ```sql and ```python block of the README is preceded by a marker: ``<!-- example: NAME -->``
(run here, after the setup of the same name gives it the world it talks about) or
``<!-- fragment: WHY -->`` (not runnable alone; WHY names the test that covers it). A block
without a marker fails the first test. ``$1`` in SQL is the query vector, bound as a parameter.
"""

from __future__ import annotations

import re
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import orm as sa_orm

from pyembed.db import database
from pyembed.models import canaries, registry
from tests.conftest import PACKAGE
from tests.helpers import embed, run_worker

README = Path(__file__).resolve().parent.parent / "README.md"
_BLOCK = re.compile(
    r"^<!-- (?P<kind>example|fragment): (?P<name>[^>]*?) -->\n```(?P<lang>sql|python)\n"
    r"(?P<code>.*?)^```",
    re.MULTILINE | re.DOTALL,
)


def _blocks(lang: str) -> list[tuple[str, str, str]]:
    text = README.read_text(encoding="utf-8")
    return [(m["kind"], m["name"], m["code"]) for m in _BLOCK.finditer(text) if m["lang"] == lang]


def test_every_example_block_is_marked() -> None:
    text = README.read_text(encoding="utf-8")
    fences = len(re.findall(r"^```(?:sql|python)$", text, re.MULTILINE))
    marked = len(_blocks("sql")) + len(_blocks("python"))
    assert marked == fences, "mark each ```sql/```python block with <!-- example: --> or fragment"


def _statements(code: str) -> list[str]:
    """The block split at top-level semicolons (not inside quotes or comments)."""
    statements, current, i, quoted = [], [], 0, False
    while i < len(code):
        char = code[i]
        if not quoted and code.startswith("--", i):
            end = code.find("\n", i)
            i = len(code) if end < 0 else end
            continue
        if char == "'":
            quoted = not quoted
        if char == ";" and not quoted:
            statements.append("".join(current).strip())
            current = []
        else:
            current.append(char)
        i += 1
    tail = "".join(current).strip()
    return [s for s in [*statements, tail] if s]


def _run_sql(conn: psycopg.Connection, code: str, vector: np.ndarray) -> None:
    for statement in _statements(code):
        if "$1" in statement:
            conn.execute(statement.replace("$1", "%(q)s"), {"q": vector}).fetchall()
        else:
            conn.execute(statement, prepare=False)


def _docs(conn: psycopg.Connection, dsn: str) -> None:
    """docs with 50 embedded rows (id 42 among them) and an application's 20 logged searches."""
    conn.execute("ALTER TABLE docs ADD COLUMN IF NOT EXISTS lang text NOT NULL DEFAULT 'en'")
    conn.execute("ALTER TABLE docs ADD COLUMN IF NOT EXISTS domain text DEFAULT 'finance'")
    conn.execute("ALTER TABLE docs ADD COLUMN IF NOT EXISTS kind text DEFAULT 'article'")
    if conn.execute("SELECT count(*) FROM docs").fetchone() == (0,):
        conn.execute(
            "INSERT INTO docs (id, title, body) SELECT i, 'doc ' || i, "
            "(ARRAY['stone for walls', 'a pump gasket XR-7731', 'tea'])[i % 3 + 1] || ' ' || i "
            "FROM generate_series(1, 50) AS i"
        )
    if conn.execute("SELECT FROM pyembed.collections WHERE name = 'docs'").fetchone() is None:
        conn.execute("SELECT pyembed.create_collection('docs', 'docs', ARRAY['title', 'body'])")
    run_worker(dsn)
    vector = embed(conn, "stone for walls")[0]
    for _ in range(20):
        conn.execute("SELECT * FROM pyembed.search('docs', %s, 5)", (vector,)).fetchall()


def _canary(conn: psycopg.Connection, dsn: str) -> None:
    """docs (as _docs) with a second version of its model on live traffic as a canary."""
    _docs(conn, dsn)
    db = database.Database(dsn)
    canaries.start(db, "docs", registry.register(db, "all-MiniLM-L6-v2", PACKAGE).id)


def _drop_docs(conn: psycopg.Connection, dsn: str) -> None:
    conn.execute("SELECT pyembed.drop_collection('docs', keep_store => true)")


SQL_SETUP: dict[str, Callable[[psycopg.Connection, str], None]] = {
    "collections": lambda conn, dsn: conn.execute(
        "CREATE SCHEMA app; CREATE TABLE app.notes (id int PRIMARY KEY, subject text, body text)"
    ),
    "collection-status": lambda conn, dsn: None,
    "adopt": lambda conn, dsn: None,
    "search": _docs,
    "filters": _docs,
    "hybrid": _docs,
    "similarity": _docs,
    "roles": lambda conn, dsn: None,
    "index-builds": lambda conn, dsn: None,
    "auto-index": _drop_docs,
    "storage": _drop_docs,
    "deployments": lambda conn, dsn: None,
    "training-runs": lambda conn, dsn: None,
    "learning-policy": _docs,
    "canaries": _canary,
    "learning-canary": lambda conn, dsn: None,
    "eval-runs": lambda conn, dsn: None,
    "judge": _docs,
    "eval-views": lambda conn, dsn: None,
    "embed-settings": lambda conn, dsn: None,
    "endpoint-models": lambda conn, dsn: None,
}


def test_sql_examples(db: psycopg.Connection, db_dsn: str, clean_cache: Path) -> None:
    examples = [(name, code) for kind, name, code in _blocks("sql") if kind == "example"]
    assert {name for name, _ in examples} == set(SQL_SETUP)
    vector = np.zeros(384, dtype=np.float32)
    for name, code in examples:
        SQL_SETUP[name](db, db_dsn)
        if name in ("search", "hybrid", "similarity"):
            vector = embed(db, "stone for walls")[0]
        if name == "roles":  # roles are global to the cluster: look, then take them back
            with db.transaction(force_rollback=True):
                _run_sql(db, code, vector)
                db.execute("SET ROLE app")
                found = db.execute("SELECT count(*) FROM pyembed.search('docs', %s, 3)", (vector,))
                assert found.fetchone() == (3,)  # the app login searches through its group
                db.execute("RESET ROLE")
            continue
        try:
            _run_sql(db, code, vector)
        except psycopg.Error as exc:
            pytest.fail(f"README example {name!r} failed: {exc}")
        if name == "search":  # its click on search 17 is recorded
            assert db.execute("SELECT query_id FROM pyembed.feedback").fetchall() == [(17,)]
    assert db.execute("SELECT count(*) FROM pyembed.collections").fetchone() == (3,)


def _python(name: str) -> str:
    (code,) = [c for kind, n, c in _blocks("python") if kind == "example" and n == name]
    return code


@pytest.fixture
def docs_world(db: psycopg.Connection, db_dsn: str, clean_cache: Path) -> psycopg.Connection:
    db.execute("CREATE TABLE docs (id bigint PRIMARY KEY, title text, body text)")
    _docs(db, db_dsn)
    return db


def test_python_handle_example(docs_world: psycopg.Connection, db_dsn: str) -> None:
    exec(_python("handle"), {"dsn": db_dsn})
    built = docs_world.execute("SELECT count(*) FROM pyembed.index_builds WHERE status = 'ready'")
    assert built.fetchone() == (1,)


def test_python_sqlalchemy_example(docs_world: psycopg.Connection, db_dsn: str) -> None:
    class Base(sa_orm.DeclarativeBase):
        pass

    class Doc(Base):
        __tablename__ = "docs"
        id: sa_orm.Mapped[int] = sa_orm.mapped_column(sa.BigInteger, primary_key=True)
        title: sa_orm.Mapped[str]

    given: dict[str, Any] = {
        "select": sa.select,
        "Doc": Doc,
        "query_vector": embed(docs_world, "stone for walls")[0].tolist(),
        "text": "stone for walls",
    }
    exec(_python("sqlalchemy"), given)
    engine = sa.create_engine(db_dsn.replace("postgresql://", "postgresql+psycopg://"))
    with sa_orm.Session(engine) as session:
        rows = session.execute(given["stmt"]).all()
    engine.dispose()
    assert len(rows) == 5 and all(isinstance(doc, Doc) for doc, _, _ in rows)
    assert rows[0][1] >= rows[-1][1]  # by rank: most similar first
    assert rows[0][0].id % 3 == 0  # a "stone for walls" document (ids 3, 6, ...)


def test_python_client_example(docs_world: psycopg.Connection, db_dsn: str) -> None:
    # Here the "replica" is the primary itself, so its search logs there, committed at once.
    with (
        psycopg.connect(db_dsn, autocommit=True) as replica_conn,
        psycopg.connect(db_dsn) as primary_conn,
    ):
        from pgvector.psycopg import register_vector

        register_vector(replica_conn)
        given = {
            "replica_conn": replica_conn,
            "primary_conn": primary_conn,
            "query_vector": embed(docs_world, "stone for walls")[0],
            "text": "stone for walls",
        }
        exec(_python("client"), given)
        primary_conn.commit()
    assert docs_world.execute("SELECT count(*) FROM pyembed.feedback").fetchone() == (1,)


def test_python_alembic_example(db: psycopg.Connection, db_dsn: str) -> None:
    db.execute("CREATE TABLE docs (id bigint PRIMARY KEY, title text, body text)")
    configured: dict[str, Any] = {}
    context = types.SimpleNamespace(configure=lambda *a, **kw: configured.update(kw))
    engine = sa.create_engine(db_dsn.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as connection:
        namespace: dict[str, Any] = {
            "context": context,
            "op": Operations(MigrationContext.configure(connection)),
        }
        exec(_python("alembic"), namespace)
        namespace["upgrade"]()
        registered = connection.exec_driver_sql(
            "SELECT text_columns FROM pyembed.collections WHERE name = 'docs'"
        ).scalar()
        namespace["downgrade"]()
        left = connection.exec_driver_sql("SELECT count(*) FROM pyembed.collections").scalar()
    engine.dispose()
    assert configured["include_name"]("pyembed", "schema", {}) is False
    assert registered == ["title", "body"] and left == 0
