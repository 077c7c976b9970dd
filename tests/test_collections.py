"""create_collection and friends: validation, change capture by statement triggers, status."""

from __future__ import annotations

import psycopg
import pytest

from tests.helpers import run_worker


def queue_keys(db: psycopg.Connection) -> list[tuple[list[object], str]]:
    return [tuple(r) for r in db.execute("SELECT pk, operation FROM pyembed.queue ORDER BY pk")]  # type: ignore[misc]


@pytest.fixture
def docs(db: psycopg.Connection) -> psycopg.Connection:
    db.execute("CREATE TABLE docs (id bigint PRIMARY KEY, title text, body text, views int)")
    db.execute("INSERT INTO docs VALUES (1, 'Alpha', 'first body', 0), (2, 'Beta', 'second', 0)")
    db.execute("SELECT pyembed.create_collection('docs', 'docs', ARRAY['title', 'body'])")
    return db


def test_registration_creates_store_view_triggers_and_enqueues(docs: psycopg.Connection) -> None:
    assert queue_keys(docs) == [([1], "upsert"), ([2], "upsert")]
    assert docs.execute("SELECT to_regclass('pyembed_store.docs_v1')").fetchone() != (None,)
    options = docs.execute(
        "SELECT reloptions FROM pg_class WHERE oid = 'pyembed_store.docs_chunks'::regclass"
    ).fetchone()
    assert options == (["security_invoker=true"],)
    triggers = docs.execute(
        "SELECT tgname, tgtype & 1 FROM pg_trigger WHERE tgrelid = 'docs'::regclass ORDER BY 1"
    ).fetchall()
    # tgtype bit 0 = FOR EACH ROW: all four must be statement-level.
    assert [t[1] for t in triggers] == [0, 0, 0, 0]
    assert docs.execute(
        "SELECT embedding_type FROM (SELECT format_type(atttypid, atttypmod) "
        "AS embedding_type FROM pg_attribute WHERE attrelid = "
        "'pyembed_store.docs_v1'::regclass AND attname = 'embedding') t"
    ).fetchone() == ("vector(384)",)


@pytest.mark.parametrize(
    ("call", "message", "hint"),
    [
        ("'t', 'nope'", 'relation "nope" does not exist', None),
        ("'t', 'nokey', ARRAY['body']", "has no primary key", "ADD PRIMARY KEY"),
        ("'t', 'docs', ARRAY['title', 'missing']", "column(s) missing do not exist", "id, title"),
        ("'t', 'docs', template => '{title} {nope}'", "column(s) nope do not exist", None),
        ("'t', 'docs', template => 'no placeholders'", "names no column", "braces"),
        ("'t', 'docs', ARRAY['title'], '{title}'", "exactly one of", None),
        ("'t', 'docs'", "exactly one of", None),
        ("'Bad Name', 'docs', ARRAY['title']", "invalid collection name", "lower-case"),
        ("'docs', 'docs', ARRAY['title']", "already exists", None),
        ("'t', 'docs', ARRAY['title'], model => 'gpt'", 'model "gpt" is not registered', "MiniLM"),
        ("'t', 'docs', ARRAY['title'], distance => 'hamming'", "unknown distance", None),
        (
            "'t', 'docs', ARRAY['title'], chunk_tokens => 10, chunk_overlap => 10",
            "cannot work",
            None,
        ),
        ("'t', 'docs', ARRAY[]::text[]", "text_columns is empty", None),
    ],
)
def test_bad_registrations_are_refused_clearly(
    docs: psycopg.Connection, call: str, message: str, hint: str | None
) -> None:
    docs.execute("CREATE TABLE nokey (body text)")
    with pytest.raises(psycopg.Error) as caught:
        docs.execute(f"SELECT pyembed.create_collection({call})")
    assert message in caught.value.diag.message_primary
    if hint:
        assert hint in (caught.value.diag.message_hint or "")
    assert docs.execute("SELECT count(*) FROM pyembed.collections").fetchone() == (1,)


def test_updates_enqueue_only_when_the_text_changes(docs: psycopg.Connection) -> None:
    docs.execute("DELETE FROM pyembed.queue")
    docs.execute("UPDATE docs SET views = views + 1")
    docs.execute("UPDATE docs SET title = title")
    assert queue_keys(docs) == []
    docs.execute("UPDATE docs SET body = 'new body' WHERE id = 2")
    assert queue_keys(docs) == [([2], "upsert")]


def test_key_change_deletes_the_old_key_and_adds_the_new(docs: psycopg.Connection) -> None:
    docs.execute("DELETE FROM pyembed.queue")
    docs.execute("UPDATE docs SET id = 10 WHERE id = 1")
    assert queue_keys(docs) == [([1], "delete"), ([10], "upsert")]


def test_bulk_insert_enqueues_in_one_statement(docs: psycopg.Connection) -> None:
    docs.execute("DELETE FROM pyembed.queue")
    docs.execute(
        "INSERT INTO docs SELECT g, 't' || g, 'b', 0 FROM generate_series(100, 10099) AS g"
    )
    assert docs.execute("SELECT count(*), max(revision) FROM pyembed.queue").fetchone() == (
        10000,
        1,
    )


def test_repeated_changes_coalesce_into_one_item(docs: psycopg.Connection) -> None:
    before = docs.execute("SELECT revision FROM pyembed.queue WHERE pk = '[1]'").fetchone()
    docs.execute("UPDATE docs SET title = 'A2' WHERE id = 1")
    docs.execute("UPDATE docs SET title = 'A3' WHERE id = 1")
    rows = docs.execute("SELECT revision FROM pyembed.queue WHERE pk = '[1]'").fetchall()
    assert before is not None
    assert rows == [(before[0] + 2,)]


def test_composite_keys_and_templates_work_end_to_end(db: psycopg.Connection, db_dsn: str) -> None:
    db.execute(
        "CREATE TABLE notes (tenant text, n int, subject text, body text, PRIMARY KEY (tenant, n))"
    )
    db.execute("INSERT INTO notes VALUES ('a', 1, 'Hello', 'world'), ('b', 1, NULL, 'only body')")
    template = "Subject: {subject}\n{body}"
    db.execute("SELECT pyembed.create_collection('notes', 'notes', template => %s)", (template,))
    stats = run_worker(db_dsn)
    assert stats.rows == 2 and stats.failures == 0
    chunks = db.execute(
        "SELECT tenant, n, pyembed_chunk FROM pyembed_store.notes_chunks ORDER BY tenant"
    ).fetchall()
    assert chunks == [("a", 1, "Subject: Hello\nworld"), ("b", 1, "Subject: \nonly body")]
    db.execute("DELETE FROM notes WHERE tenant = 'a'")
    run_worker(db_dsn)
    assert db.execute("SELECT tenant FROM pyembed_store.notes_v1").fetchall() == [("b",)]


def test_truncate_clears_store_and_queue(docs: psycopg.Connection, db_dsn: str) -> None:
    run_worker(db_dsn)
    assert docs.execute("SELECT count(*) FROM pyembed_store.docs_v1").fetchone() == (2,)
    docs.execute("INSERT INTO docs VALUES (3, 'C', 'c', 0)")
    docs.execute("TRUNCATE docs")
    assert docs.execute("SELECT count(*) FROM pyembed_store.docs_v1").fetchone() == (0,)
    assert queue_keys(docs) == []


def test_status_view_counts(docs: psycopg.Connection, db_dsn: str) -> None:
    docs.execute("INSERT INTO docs VALUES (3, NULL, NULL, 0)")
    status = docs.execute(
        "SELECT source_rows, embedded_rows, pending, failed, active_model_version "
        "FROM pyembed.collection_status WHERE collection = 'docs'"
    ).fetchone()
    assert status == (3, 0, 3, 0, "all-MiniLM-L6-v2 v1")
    run_worker(db_dsn)
    status = docs.execute(
        "SELECT source_rows, embedded_rows, skipped_rows, pending, oldest_pending_age "
        "FROM pyembed.collection_status"
    ).fetchone()
    assert status == (3, 2, 1, 0, None)


def test_alter_collection_rechunks_everything(docs: psycopg.Connection, db_dsn: str) -> None:
    run_worker(db_dsn)
    docs.execute("SELECT pyembed.alter_collection('docs', chunk_tokens => 64, chunk_overlap => 8)")
    assert len(queue_keys(docs)) == 2
    stats = run_worker(db_dsn)
    assert stats.rows == 2 and stats.unchanged == 0
    with pytest.raises(psycopg.Error, match="cannot work"):
        docs.execute("SELECT pyembed.alter_collection('docs', chunk_overlap => 64)")


def test_drop_collection_with_and_without_store(docs: psycopg.Connection, db_dsn: str) -> None:
    run_worker(db_dsn)
    docs.execute("SELECT pyembed.drop_collection('docs', keep_store => true)")
    assert docs.execute("SELECT to_regclass('pyembed_store.docs_v1')").fetchone() != (None,)
    assert docs.execute(
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'docs'::regclass AND NOT tgisinternal"
    ).fetchone() == (0,)
    # Re-created over the kept store: rows whose text did not change are not re-embedded.
    docs.execute("SELECT pyembed.create_collection('docs', 'docs', ARRAY['title', 'body'])")
    stats = run_worker(db_dsn)
    assert (stats.rows, stats.unchanged, stats.chunks) == (2, 2, 0)
    docs.execute("SELECT pyembed.drop_collection('docs')")
    assert docs.execute("SELECT to_regclass('pyembed_store.docs_v1')").fetchone() == (None,)
    with pytest.raises(psycopg.Error, match='collection "docs" does not exist'):
        docs.execute("SELECT pyembed.drop_collection('docs')")
