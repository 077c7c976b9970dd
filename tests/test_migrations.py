"""Migrations: one head, reversible, idempotent, serialized, and equal however they were reached."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from pyembed import errors
from pyembed.db import database, migrate, sql_files
from tests.helpers import schema_dump

MakeDb = Callable[[], str]


def test_single_head() -> None:
    assert len(migrate.heads()) == 1


def test_every_revision_has_its_sql_files_named_by_what_it_does() -> None:
    sql_dir = sql_files.sql_dir()
    for rev in migrate.script_directory().walk_revisions():
        assert Path(rev.path).stem.startswith(f"{rev.revision}_"), rev.path
        for down in (False, True):
            assert (sql_dir / migrate.revision_sql(rev.path, down=down)).is_file(), rev.path


def test_released_migrations_are_frozen() -> None:
    folder = sql_files.sql_dir() / "migrations"
    lines = (folder / "frozen.txt").read_text().splitlines()
    frozen = dict(reversed(line.split()) for line in lines if line and not line.startswith("#"))
    files = {path.name: path for path in folder.glob("*.sql")}
    for name, path in files.items():
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert name in frozen, f"add the released {name} to frozen.txt: {digest}  {name}"
        assert frozen[name] == digest, f"{name} is frozen: put the change in a new revision"
    assert set(frozen) <= set(files)


def test_base_head_base_head(make_empty_db: MakeDb) -> None:
    dsn = make_empty_db()
    head = migrate.heads()[0]
    assert migrate.current(database.Database(dsn)) is None
    assert migrate.upgrade(database.Database(dsn)) == head
    first = schema_dump(dsn)
    assert "CREATE TABLE pyembed.queue" in first
    assert migrate.downgrade(database.Database(dsn), "base") is None
    with psycopg.connect(dsn) as conn:
        schemas = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'pyembed%'"
        ).fetchall()
    assert schemas == []
    assert migrate.upgrade(database.Database(dsn)) == head
    assert schema_dump(dsn) == first


def test_fresh_install_equals_stepwise_upgrade(make_empty_db: MakeDb) -> None:
    fresh, stepwise = make_empty_db(), make_empty_db()
    # The schema a fresh install has at each revision.
    expected: dict[str, str] = {"base": schema_dump(fresh)}
    for rev in migrate.history():
        migrate.upgrade(database.Database(fresh), rev.revision)
        expected[rev.revision] = schema_dump(fresh)
    for rev in migrate.history():
        migrate.upgrade(database.Database(stepwise), rev.revision)
        assert schema_dump(stepwise) == expected[rev.revision]
        # Going back one revision lands exactly where a fresh install of it would be.
        migrate.downgrade(database.Database(stepwise), rev.down_revision or "base")
        assert schema_dump(stepwise) == expected[rev.down_revision or "base"]
        migrate.upgrade(database.Database(stepwise), rev.revision)
    assert schema_dump(stepwise) == expected[migrate.heads()[0]]


def test_upgrading_twice_is_a_no_op(make_empty_db: MakeDb) -> None:
    dsn = make_empty_db()
    migrate.upgrade(database.Database(dsn))
    before = schema_dump(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO pyembed.workers (id, hostname, pid) VALUES ('w1', 'h', 1)")
    migrate.upgrade(database.Database(dsn))
    assert schema_dump(dsn) == before
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM pyembed.workers").fetchone() == (1,)


def test_concurrent_upgrades_are_serialized(make_empty_db: MakeDb) -> None:
    dsn, reference = make_empty_db(), make_empty_db()
    migrate.upgrade(database.Database(reference))
    failures: list[BaseException] = []
    start = threading.Barrier(4)

    def run() -> None:
        start.wait()
        try:
            migrate.upgrade(database.Database(dsn))
        except BaseException as exc:  # collected and asserted below
            failures.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []
    assert schema_dump(dsn) == schema_dump(reference)


def test_database_migrated_by_newer_pyembed_is_refused(make_empty_db: MakeDb) -> None:
    dsn = make_empty_db()
    migrate.upgrade(database.Database(dsn))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE public.pyembed_alembic_version SET version_num = '9999_future'")
    before = schema_dump(dsn)
    for action in (
        lambda: migrate.upgrade(database.Database(dsn)),
        lambda: migrate.downgrade(database.Database(dsn), "base"),
    ):
        with pytest.raises(errors.MigrationError, match="newer pyembed") as caught:
            action()
        assert "upgrade the pyembed package" in str(caught.value)
    assert schema_dump(dsn) == before


def test_idempotent_sql_is_reapplied(make_empty_db: MakeDb) -> None:
    dsn = make_empty_db()
    migrate.upgrade(database.Database(dsn))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP VIEW pyembed.worker_status")
    migrate.upgrade(database.Database(dsn))
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT pyembed.schema_revision()").fetchone() == (migrate.heads()[0],)
        assert conn.execute("SELECT count(*) FROM pyembed.worker_status").fetchone() == (0,)


def test_upgrade_drops_overloads_the_sql_files_no_longer_define(make_empty_db: MakeDb) -> None:
    # What an older pyembed leaves behind when a function gains an argument: the old signature.
    dsn = make_empty_db()
    migrate.upgrade(database.Database(dsn))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION pyembed.max_results(legacy integer) RETURNS integer "
            "LANGUAGE sql AS 'SELECT 1'"
        )
        conn.execute(
            "CREATE FUNCTION pyembed.not_from_a_file() RETURNS integer LANGUAGE sql AS 'SELECT 2'"
        )
    migrate.upgrade(database.Database(dsn))
    with psycopg.connect(dsn) as conn:
        left = {
            row[0]
            for row in conn.execute(
                "SELECT p.oid::regprocedure::text FROM pg_proc AS p "
                "WHERE p.pronamespace = 'pyembed'::regnamespace "
                "AND p.proname IN ('max_results', 'not_from_a_file')"
            )
        }
    # Only what a file re-defined survives; a function no file names is not pyembed's to judge.
    assert left == {"pyembed.max_results()", "pyembed.not_from_a_file()"}


def test_missing_or_old_extension_is_named(db: psycopg.Connection) -> None:
    with pytest.raises(errors.ExtensionMissing, match="no 'not_pgvector' extension") as caught:
        migrate.check_extension(db, name="not_pgvector")
    assert "install pgvector" in str(caught.value)
    with pytest.raises(errors.ExtensionMissing, match=r"needs 99\.0"):
        migrate.check_extension(db, min_version="99.0")
    migrate.check_extension(db)


def test_server_without_pgvector_is_refused_and_untouched(make_empty_db: MakeDb) -> None:
    # PostgreSQL 18's extension_control_path hides every extension from this connection:
    # to pyembed it is a server without pgvector.
    empty = tempfile.mkdtemp(prefix="pyembed-no-extensions-")
    os.chmod(empty, 0o755)
    dsn = make_empty_db() + f"?options=-c%20extension_control_path%3D{empty}"
    with pytest.raises(errors.ExtensionMissing, match="pgvector") as caught:
        migrate.upgrade(database.Database(dsn))
    assert "install pgvector" in (caught.value.hint or "")
    with psycopg.connect(dsn) as conn:
        assert conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'pyembed%'"
        ).fetchone() == (0,)
        assert conn.execute("SELECT to_regclass('public.pyembed_alembic_version')").fetchone() == (
            None,
        )
    shutil.rmtree(empty, ignore_errors=True)


def test_downgrade_to_base_with_collections_keeps_the_application_tables(
    make_empty_db: MakeDb,
) -> None:
    dsn = make_empty_db()
    migrate.upgrade(database.Database(dsn))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
        conn.execute("INSERT INTO docs VALUES (1, 'kept'), (2, 'kept too')")
        conn.execute("SELECT pyembed.create_collection('docs', 'docs', ARRAY['body'])")
    assert migrate.downgrade(database.Database(dsn), "base") is None
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM docs").fetchone() == (2,)
        triggers = conn.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'docs'::regclass")
        assert triggers.fetchone() == (0,)
        conn.execute("INSERT INTO docs VALUES (3, 'the table works without pyembed')")
    assert migrate.upgrade(database.Database(dsn)) == migrate.heads()[0]


def test_downgrade_refuses_when_application_objects_depend_on_pyembed(
    make_empty_db: MakeDb,
) -> None:
    dsn = make_empty_db()
    migrate.upgrade(database.Database(dsn))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
        conn.execute("SELECT pyembed.create_collection('docs', 'docs', ARRAY['body'])")
        conn.execute("CREATE VIEW public.my_models AS SELECT name FROM pyembed.models")
    with pytest.raises(errors.MigrationError, match="view my_models"):
        migrate.downgrade(database.Database(dsn), "base")
    assert migrate.current(database.Database(dsn)) == migrate.heads()[0]
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM pyembed.collections").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM public.my_models").fetchone() == (1,)


def test_logged_results_move_into_the_log_row_and_back(make_empty_db: MakeDb) -> None:
    dsn = make_empty_db()
    migrate.upgrade(database.Database(dsn), "0013")
    results = [(1, [7], 0, 0.25), (2, ["a", 2], 3, 0.5)]
    listed = (
        "SELECT rank, pk, chunk_seq, distance FROM pyembed.query_results "
        "WHERE query_id = %s ORDER BY rank"
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO pyembed.query_log (collection_id, k, params, result_count, latency_ms, "
            "searched_by) VALUES (1, 2, '{}', 2, 0, 'someone') RETURNING id"
        ).fetchone()
        assert row is not None
        for rank, pk, chunk_seq, distance in results:
            conn.execute(
                "INSERT INTO pyembed.query_results VALUES (%s, %s, %s, %s, %s)",
                (row[0], rank, psycopg.types.json.Jsonb(pk), chunk_seq, distance),
            )
    migrate.upgrade(database.Database(dsn))
    with psycopg.connect(dsn, autocommit=True) as conn:
        arrays = conn.execute(
            "SELECT result_pks::text, result_chunk_seqs, result_distances FROM pyembed.query_log"
        ).fetchone()
        assert arrays == ('{[7],"[\\"a\\", 2]"}', [0, 3], [0.25, 0.5])
        assert conn.execute(listed, (row[0],)).fetchall() == results
        # Holes or misaligned arrays are refused, as the results table's NOT NULL columns were.
        for pks, chunk_seqs in (([None], [0]), ([], [0])):
            with pytest.raises(psycopg.errors.CheckViolation):
                conn.execute(
                    "INSERT INTO pyembed.query_log (collection_id, k, params, result_count, "
                    "latency_ms, searched_by, result_pks, result_chunk_seqs, result_distances) "
                    "VALUES (1, 1, '{}', 1, 0, 'x', %s::jsonb[], %s, '{0}')",
                    (pks, chunk_seqs),
                )
    migrate.downgrade(database.Database(dsn), "0013")
    with psycopg.connect(dsn, autocommit=True) as conn:
        kind = conn.execute(
            "SELECT relkind FROM pg_class WHERE oid = 'pyembed.query_results'::regclass"
        )
        assert kind.fetchone() == ("r",)
        assert conn.execute(listed, (row[0],)).fetchall() == results
