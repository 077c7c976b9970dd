"""An application's own Alembic project manages a collection with op.create_collection."""

from __future__ import annotations

import textwrap
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

ENV_PY = """
import sqlalchemy as sa
from alembic import context

from pyembed.integrations import alembic_ops

metadata = sa.MetaData()
sa.Table(
    "docs", metadata, sa.Column("id", sa.Integer, primary_key=True), sa.Column("title", sa.Text)
)
if context.config.attributes.get("declare"):
    alembic_ops.declare_collection(metadata, "docs", "public.docs", text_columns=["title"])

engine = sa.create_engine(context.config.get_main_option("sqlalchemy.url"))
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        include_schemas=True,
        include_name=alembic_ops.include_name,
    )
    with context.begin_transaction():
        context.run_migrations()
"""

SCRIPT_MAKO = '''"""${message}"""
from alembic import op
import sqlalchemy as sa
from pyembed.integrations import alembic_ops

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}


def upgrade():
    ${upgrades if upgrades else "pass"}


def downgrade():
    ${downgrades if downgrades else "pass"}
'''

REVISIONS = {
    "a1_docs.py": """
        revision = "a1"
        down_revision = None
        from alembic import op
        import sqlalchemy as sa

        def upgrade():
            op.create_table("docs", sa.Column("id", sa.Integer, primary_key=True),
                            sa.Column("title", sa.Text))
            op.execute("INSERT INTO docs VALUES (1, 'hello'), (2, 'world')")

        def downgrade():
            op.drop_table("docs")
    """,
    "a2_collection.py": """
        revision = "a2"
        down_revision = "a1"
        from alembic import op

        def upgrade():
            op.create_collection("docs", "public.docs", text_columns=["title"], chunk_overlap=8,
                                 index_options={"storage": "halfvec"})

        def downgrade():
            op.drop_collection("docs")
    """,
}


@pytest.fixture
def app_project(tmp_path: Path, db_dsn: str) -> Config:
    (tmp_path / "versions").mkdir()
    (tmp_path / "env.py").write_text(ENV_PY)
    (tmp_path / "script.py.mako").write_text(SCRIPT_MAKO)
    for name, body in REVISIONS.items():
        (tmp_path / "versions" / name).write_text(textwrap.dedent(body))
    cfg = Config()
    cfg.set_main_option("script_location", str(tmp_path))
    cfg.set_main_option("sqlalchemy.url", db_dsn.replace("postgresql://", "postgresql+psycopg://"))
    return cfg


def collections(db: psycopg.Connection) -> list[tuple[str, int]]:
    return db.execute("SELECT name, chunk_overlap FROM pyembed.collections").fetchall()


def test_app_migrations_create_and_drop_a_collection(
    app_project: Config, db: psycopg.Connection
) -> None:
    command.upgrade(app_project, "head")
    assert collections(db) == [("docs", 8)]
    assert db.execute("SELECT count(*) FROM pyembed.queue").fetchone() == (2,)
    assert db.execute(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = 'pyembed_store.docs_v1'::regclass AND attname = 'embedding'"
    ).fetchone() == ("halfvec(384)",)
    # The app's history and pyembed's are separate tables.
    assert db.execute("SELECT version_num FROM alembic_version").fetchone() == ("a2",)
    command.downgrade(app_project, "a1")
    assert collections(db) == []
    assert db.execute("SELECT to_regclass('pyembed_store.docs_v1')").fetchone() == (None,)
    command.upgrade(app_project, "head")
    assert collections(db) == [("docs", 8)]


def test_autogenerate_emits_collection_ops_and_ignores_pyembed(
    app_project: Config, db: psycopg.Connection, tmp_path: Path
) -> None:
    (tmp_path / "versions" / "a2_collection.py").unlink()  # autogenerate writes its own
    command.upgrade(app_project, "a1")
    app_project.attributes["declare"] = True
    script = command.revision(app_project, message="add collection", autogenerate=True, rev_id="a3")
    text = Path(script.path).read_text()  # type: ignore[union-attr]
    assert "op.create_collection('docs', 'public.docs', text_columns=['title'])" in text
    assert "op.drop_collection(" in text  # the downgrade
    assert "pyembed_store" not in text and "model_versions" not in text  # nothing of pyembed's
    command.upgrade(app_project, "head")
    assert collections(db) == [("docs", 32)]
    # Undeclared again: autogenerate proposes the (reversible) drop.
    app_project.attributes["declare"] = False
    script = command.revision(app_project, message="drop it", autogenerate=True, rev_id="a4")
    text = Path(script.path).read_text()  # type: ignore[union-attr]
    assert "op.drop_collection('docs', 'public.docs', text_columns=['title']" in text
    assert "op.create_collection('docs', 'public.docs', text_columns=['title']" in text


def test_drop_without_definition_cannot_be_reversed() -> None:
    from pyembed.integrations import alembic_ops

    with pytest.raises(ValueError, match="cannot be reversed"):
        alembic_ops.DropCollectionOp("docs").reverse()


def test_sqlalchemy_url_is_valid(db_dsn: str) -> None:
    engine = sa.create_engine(db_dsn.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.pyembed.schema_revision())).scalar()
    engine.dispose()
