"""Roles at work: row-level security through search, what each role may do, no injection."""

from __future__ import annotations

import numpy as np
import psycopg
import pytest

from pyembed.db import database
from pyembed.search import indexes, stores
from tests.helpers import run_worker
from tests.security.conftest import Connect, Role


def test_row_level_security_filters_search_and_view(
    tenants: psycopg.Connection, make_role: Role, connect_as: Connect
) -> None:
    query = tenants.execute("SELECT embedding FROM pyembed_store.notes_v1 WHERE id = 1").fetchone()
    for tenant, visible in (("a", {1, 2}), ("b", {3, 4})):
        with connect_as(make_role("pyembed_reader")) as app:
            app.execute("SELECT set_config('app.tenant', %s, false)", (tenant,))
            rows = app.execute("SELECT pk FROM pyembed.search('notes', %s, 10)", query).fetchall()
            assert {r[0][0] for r in rows} == visible
            view = app.execute("SELECT DISTINCT id FROM pyembed_store.notes_chunks").fetchall()
            assert {r[0] for r in view} == visible


def test_reader_cannot_manage_and_worker_can_embed(
    tenants: psycopg.Connection, make_role: Role, connect_as: Connect, db_dsn: str
) -> None:
    with connect_as(make_role("pyembed_reader")) as reader:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            reader.execute("SELECT pyembed.drop_collection('notes')")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            reader.execute("DELETE FROM pyembed.queue")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            reader.execute("DELETE FROM pyembed_store.notes_v1")
    worker_role = make_role("pyembed_worker")
    tenants.execute("GRANT SELECT ON notes TO pyembed_worker")
    tenants.execute("ALTER TABLE notes NO FORCE ROW LEVEL SECURITY")
    tenants.execute(
        "CREATE POLICY worker_reads_all ON notes FOR SELECT TO pyembed_worker USING (true)"
    )
    tenants.execute("INSERT INTO notes VALUES (5, 'a', 'new note about revenue')")
    stats = run_worker(db_dsn.replace("postgres@", f"{worker_role}@"))
    assert (stats.rows, stats.failures) == (1, 0)
    with (
        connect_as(worker_role) as worker,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        worker.execute("SELECT pyembed.drop_collection('notes')")


def test_writer_creates_collections_on_its_own_tables(
    db: psycopg.Connection, make_role: Role, connect_as: Connect
) -> None:
    writer = make_role("pyembed_writer")
    db.execute(f'GRANT CREATE ON SCHEMA public TO "{writer}"')  # the app's own schema
    with connect_as(writer) as conn:
        conn.execute("CREATE TABLE public.mine (id int PRIMARY KEY, body text)")
        conn.execute("SELECT pyembed.create_collection('mine', 'public.mine', ARRAY['body'])")
        conn.execute("INSERT INTO public.mine VALUES (1, 'hello')")
        assert conn.execute("SELECT pending FROM pyembed.collection_status").fetchone() == (1,)


@pytest.mark.parametrize(
    "name",
    ["docs'; DROP TABLE pyembed.queue; --", 'docs"; DROP TABLE pyembed.queue; --', "Docs", ""],
)
def test_injected_collection_names_are_refused(db: psycopg.Connection, name: str) -> None:
    db.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
    with pytest.raises(psycopg.Error, match="invalid collection name"):
        db.execute("SELECT pyembed.create_collection(%s, 'docs', ARRAY['body'])", (name,))
    with pytest.raises(psycopg.Error, match="does not exist"):
        db.execute("SELECT * FROM pyembed.search(%s, %s)", (name, np.ones(384, dtype=np.float32)))
    assert db.execute("SELECT to_regclass('pyembed.queue')").fetchone() != (None,)


def test_hostile_identifiers_are_quoted_not_executed(db: psycopg.Connection, db_dsn: str) -> None:
    table = 'odd"; DROP TABLE pyembed.queue; --'
    column = "body'); DROP TABLE pyembed.workers; --"
    db.execute(
        f'CREATE TABLE "{table.replace(chr(34), chr(34) * 2)}" '
        f'(id int PRIMARY KEY, "{column}" text, tag text)'
    )
    source = psycopg.sql.Identifier(table).as_string(db)
    db.execute(
        psycopg.sql.SQL("INSERT INTO {} VALUES (1, 'text', 'x')").format(
            psycopg.sql.Identifier(table)
        )
    )
    db.execute("SELECT pyembed.create_collection('odd', %s, ARRAY[%s])", (source, column))
    stats = run_worker(db_dsn)
    assert (stats.rows, stats.failures) == (1, 0)
    bad_filter = psycopg.types.json.Jsonb({"tag') OR true; --": "x"})
    with pytest.raises(psycopg.Error, match="filter names column"):
        db.execute(
            "SELECT * FROM pyembed.search('odd', %s, 5, %s)",
            (np.ones(384, dtype=np.float32), bad_filter),
        )
    for relation in ("pyembed.queue", "pyembed.workers"):
        assert db.execute("SELECT to_regclass(%s)", (relation,)).fetchone() != (None,)


def test_unprivileged_worker_and_writer_build_and_drop_indexes(
    db: psycopg.Connection, make_role: Role, db_dsn: str
) -> None:
    db.execute("CREATE TABLE notes (id int PRIMARY KEY, body text)")
    db.execute(
        "SELECT pyembed.create_collection('notes', 'notes', ARRAY['body'], "
        "auto_index_min_rows => 30)"
    )
    db.execute("INSERT INTO notes SELECT g, 'note number ' || g FROM generate_series(1, 40) g")
    db.execute("GRANT SELECT ON notes TO pyembed_worker, pyembed_reader")
    worker_role = make_role("pyembed_worker")
    run_worker(db_dsn.replace("postgres@", f"{worker_role}@"))
    built = stores.list_indexes(db)
    assert [(i["index_name"], i["valid"]) for i in built] == [("notes_v1_hnsw", True)]
    writer_dsn = db_dsn.replace("postgres@", f"{make_role('pyembed_writer')}@")
    assert indexes.drop(database.Database(writer_dsn), "notes") == ["notes_v1_hnsw"]
    result = indexes.create(
        database.Database(writer_dsn), "notes", method="ivfflat", lists=2, recall_queries=5
    )
    assert result.index == "notes_v1_ivfflat" and result.recall_at_10 is not None
    owners = db.execute(
        "SELECT DISTINCT tableowner FROM pg_indexes JOIN pg_tables USING "
        "(schemaname, tablename) WHERE schemaname = 'pyembed_store'"
    ).fetchall()
    assert owners == [("pyembed_owner",)]
    statuses = db.execute("SELECT index_name, status FROM pyembed.index_builds ORDER BY id")
    assert statuses.fetchall() == [("notes_v1_hnsw", "dropped"), ("notes_v1_ivfflat", "ready")]


def test_a_writer_runs_a_blue_green_switch_and_rolls_it_back(
    tenants: psycopg.Connection, make_role: Role, connect_as: Connect, db_dsn: str
) -> None:
    tenants.execute("GRANT SELECT ON notes TO pyembed_worker")
    tenants.execute("ALTER TABLE notes FORCE ROW LEVEL SECURITY")
    writer = make_role("pyembed_writer")
    tenants.execute(f'CREATE POLICY writer_all ON notes FOR SELECT TO "{writer}" USING (true)')
    tenants.execute("""INSERT INTO pyembed.model_versions (model_id, version, parent_version_id,
        kind, status, artifact_source, artifact_sha256, artifact_size)
        SELECT model_id, 2, id, 'fine_tuned', 'ready', artifact_source, artifact_sha256,
               artifact_size FROM pyembed.model_versions WHERE id = 1""")
    with connect_as(writer) as conn:
        queued = conn.execute("SELECT pyembed.begin_switch('notes', 2, reason => 'try')")
        assert queued.fetchone() == (4,)
        assert conn.execute("SELECT pyembed.switch_backlog('notes')").fetchone() == (4,)
        run_worker(db_dsn)
        assert conn.execute("SELECT pyembed.finish_switch('notes')").fetchone() == (2,)
        assert conn.execute("SELECT pyembed.rollback('notes')").fetchone() == (1,)
        history = conn.execute(
            "SELECT action, performed_by FROM pyembed.deployments ORDER BY id"
        ).fetchall()
    assert history == [("switch_started", writer), ("promote", writer), ("rollback", writer)]
