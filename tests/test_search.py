"""pyembed.search: nearest rows through the store, logging, feedback, filters and bad input."""

from __future__ import annotations

import numpy as np
import psycopg
import pytest

from pyembed.db import database, migrate
from tests.helpers import embed, run_worker

DOCS = [
    (1, "a stone block used in building walls", "construction"),
    (2, "a city block between four streets", "city"),
    (3, "a block of wood for the fire", "construction"),
    (4, "the harbour where ships anchor", "sea"),
    (5, "a recipe for apple pie", "food"),
]


@pytest.fixture
def docs(db: psycopg.Connection, db_dsn: str) -> psycopg.Connection:
    db.execute("CREATE TABLE docs (id int PRIMARY KEY, body text, topic text)")
    with db.cursor() as cur:
        cur.executemany("INSERT INTO docs VALUES (%s, %s, %s)", DOCS)
    db.execute("SELECT pyembed.create_collection('docs', 'docs', ARRAY['body'])")
    run_worker(db_dsn)
    return db


def search(db: psycopg.Connection, *args: object, **kwargs: object) -> list[tuple[object, ...]]:
    names = "".join(f", {name} => %({name})s" for name in kwargs)
    return db.execute(
        f"SELECT * FROM pyembed.search('docs', %(q)s, %(k)s{names})",  # noqa: S608 - test names
        {"q": args[0], "k": args[1] if len(args) > 1 else 10, **kwargs},
    ).fetchall()


def test_search_ranks_rows_and_logs_the_query(docs: psycopg.Connection) -> None:
    query = embed(docs, "masonry stones for a wall")[0]
    rows = search(docs, query, 3, query_text="masonry stones for a wall")
    query_id = rows[0][0]
    assert rows[0][2] == [1]
    assert [r[1] for r in rows] == [1, 2, 3]
    distances = [r[4] for r in rows]
    assert distances == sorted(distances)
    # Cosine: similarity = 1 - distance, and it matches the model's own cosine.
    doc = embed(docs, DOCS[0][1])[0]
    assert rows[0][5] == pytest.approx(float(np.dot(query, doc)), abs=1e-4)
    log = docs.execute(
        "SELECT query_text, k, result_count, model_version_id FROM pyembed.query_log WHERE id = %s",
        (query_id,),
    ).fetchone()
    assert log == ("masonry stones for a wall", 3, 3, 1)
    logged = docs.execute(
        "SELECT rank, pk FROM pyembed.query_results WHERE query_id = %s ORDER BY rank", (query_id,)
    ).fetchall()
    assert logged == [(r[1], r[2]) for r in rows]


def test_feedback_is_recorded_against_the_search(docs: psycopg.Connection) -> None:
    rows = search(docs, embed(docs, "pie")[0], 2)
    feedback_id = docs.execute(
        "SELECT pyembed.record_feedback(%s, %s::jsonb, 'purchase', 2.5)", (rows[0][0], "5")
    ).fetchone()
    assert feedback_id is not None
    assert docs.execute("SELECT pk, signal, weight FROM pyembed.feedback").fetchone() == (
        [5],
        "purchase",
        2.5,
    )
    with pytest.raises(psycopg.Error, match="no logged search has id"):
        docs.execute("SELECT pyembed.record_feedback(999999, '[1]')")


def test_one_row_per_source_row_even_with_many_chunks(
    docs: psycopg.Connection, db_dsn: str
) -> None:
    long_text = " ".join(["stone walls and masonry blocks"] * 400)
    docs.execute("INSERT INTO docs VALUES (6, %s, 'construction')", (long_text,))
    run_worker(db_dsn)
    assert docs.execute("SELECT count(*) FROM pyembed_store.docs_v1 WHERE id = 6").fetchone()[0] > 5  # type: ignore[index]
    rows = search(docs, embed(docs, "stone masonry walls")[0], 3)
    keys = [r[2][0] for r in rows]
    assert len(keys) == len(set(keys)) == 3
    assert 6 in keys  # its many chunks crowd the top, yet the other rows are still found


def test_filter_on_source_columns(docs: psycopg.Connection) -> None:
    rows = search(
        docs, embed(docs, "block")[0], 5, filter=psycopg.types.json.Jsonb({"topic": "construction"})
    )
    assert sorted(r[2][0] for r in rows) == [1, 3]
    with pytest.raises(psycopg.Error, match="filter names column"):
        search(docs, embed(docs, "block")[0], 5, filter=psycopg.types.json.Jsonb({"colour": "red"}))


def test_logging_can_be_turned_off(docs: psycopg.Connection) -> None:
    rows = search(docs, embed(docs, "harbour")[0], 1, log=False)
    assert rows[0][0] is None and rows[0][2] == [4]
    docs.execute("SELECT pyembed.alter_collection('docs', settings => '{\"log_queries\": false}')")
    assert search(docs, embed(docs, "harbour")[0], 1)[0][0] is None
    assert docs.execute("SELECT count(*) FROM pyembed.query_log").fetchone() == (0,)


@pytest.mark.parametrize(
    ("query", "k", "message"),
    [
        (None, 5, "the query vector is NULL"),
        (np.ones(3, dtype=np.float32), 5, "has 3 dimensions"),
        (np.ones(384, dtype=np.float32), 0, "out of range"),
        (np.ones(384, dtype=np.float32), 100000, "out of range"),
    ],
)
def test_bad_queries_are_refused(
    docs: psycopg.Connection, query: np.ndarray | None, k: int, message: str
) -> None:
    with pytest.raises(psycopg.Error, match=message):
        docs.execute("SELECT * FROM pyembed.search('docs', %s::vector, %s)", (query, k))


def test_unknown_collection_and_text_without_embedder(docs: psycopg.Connection) -> None:
    with pytest.raises(psycopg.Error, match='collection "nope" does not exist'):
        docs.execute("SELECT * FROM pyembed.search('nope', %s)", (np.ones(384, dtype=np.float32),))
    with pytest.raises(psycopg.Error, match="cannot embed query text") as caught:
        docs.execute("SELECT * FROM pyembed.search('docs', 'stone wall')")
    assert "::vector" in (caught.value.diag.message_hint or "")


def test_empty_collection_returns_nothing(db: psycopg.Connection) -> None:
    db.execute("CREATE TABLE empty (id int PRIMARY KEY, body text)")
    db.execute("SELECT pyembed.create_collection('empty', 'empty', ARRAY['body'])")
    rows = db.execute(
        "SELECT * FROM pyembed.search('empty', %s)", (np.ones(384, dtype=np.float32),)
    ).fetchall()
    assert rows == []


def test_deleted_rows_never_appear_even_before_the_worker_runs(docs: psycopg.Connection) -> None:
    docs.execute("DELETE FROM docs WHERE id = 1")
    rows = search(docs, embed(docs, DOCS[0][1])[0], 5)
    assert [1] not in [r[2] for r in rows]


def test_prune_query_log(docs: psycopg.Connection) -> None:
    old = search(docs, embed(docs, "pie")[0], 2)[0][0]
    docs.execute("SELECT pyembed.record_feedback(%s, '[5]', 'click')", (old,))
    docs.execute("UPDATE pyembed.query_log SET created_at = now() - interval '100 days'")
    search(docs, embed(docs, "pie")[0], 3)
    counts = (
        "SELECT (SELECT count(*) FROM pyembed.query_log), (SELECT count(*) FROM"
        " pyembed.query_results), (SELECT count(*) FROM pyembed.feedback)"
    )
    assert docs.execute(counts).fetchone() == (2, 5, 1)
    assert docs.execute("SELECT pyembed.prune_query_log()").fetchone() == (1,)
    # Its results and feedback go with it; a dropped collection takes its whole log along.
    assert docs.execute(counts).fetchone() == (1, 3, 0)
    # A search logged while its collection was being dropped is pruned too.
    docs.execute(
        "INSERT INTO pyembed.query_log (collection_id, k, params, result_count, latency_ms,"
        " searched_by) VALUES (999, 1, '{}', 0, 1, 'gone')"
    )
    assert docs.execute("SELECT pyembed.prune_query_log()").fetchone() == (1,)
    docs.execute("SELECT pyembed.drop_collection('docs')")
    assert docs.execute(counts).fetchone() == (0, 0, 0)


def test_a_search_locks_no_row(docs: psycopg.Connection) -> None:
    # The log has no foreign keys: a search does not lock its collection's row (FOR KEY SHARE),
    # which concurrent searches of one collection would otherwise share through multixacts.
    query = embed(docs, "pie")[0]
    with docs.transaction(force_rollback=True):
        search(docs, query, 2)
        # A row lock would leave the locking transaction's id in the row's xmax.
        row = docs.execute("SELECT xmax FROM pyembed.collections WHERE name = 'docs'").fetchone()
        mine = docs.execute("SELECT pg_current_xact_id()::xid").fetchone()
        assert row != mine


def test_k_above_ef_search_still_fills_k(db: psycopg.Connection, db_dsn: str) -> None:
    db.execute("CREATE TABLE many (id int PRIMARY KEY, body text)")
    db.execute("SELECT pyembed.create_collection('many', 'many', ARRAY['body'])")
    db.execute("INSERT INTO many SELECT g, 'note ' || g FROM generate_series(1, 120) g")
    run_worker(db_dsn)
    db.execute("CREATE INDEX ON pyembed_store.many_v1 USING hnsw (embedding vector_cosine_ops)")
    rows = db.execute(
        "SELECT pk FROM pyembed.search('many', %s, 100, ef_search => 10)",
        (embed(db, "note 7")[0],),
    ).fetchall()
    assert len({r[0][0] for r in rows}) == 100


def test_a_search_runs_its_stores_generated_function(docs: psycopg.Connection, db_dsn: str) -> None:
    query = embed(docs, "stone walls")[0]
    first = search(docs, query, 3, log=False)
    # Static SQL in functions of the store (plans kept per session), as their caller, owned by
    # pyembed's owner, with their search_path pinned: the whole search, and its index scan.
    function = "pyembed_store.docs_v1_nearest"
    attributes = (
        "SELECT prosecdef, proowner::regrole::text, proconfig, provolatile FROM pg_proc "
        "WHERE oid = to_regproc(%s)"
    )
    settings = [
        "search_path=pg_catalog, pg_temp",
        "hnsw.iterative_scan=relaxed_order",
        "ivfflat.iterative_scan=relaxed_order",
    ]
    row = docs.execute(attributes, (function,)).fetchone()
    assert row == (False, "pyembed_owner", settings, "s")
    row = docs.execute(attributes, ("pyembed_store.docs_v1_search",)).fetchone()
    assert row == (False, "pyembed_owner", settings, "v")
    assert search(docs, query, 3, log=False) == first
    for k in range(1, 31):  # candidates come in powers of two, several rounds for a large k
        assert len(search(docs, query, k, log=False)) == min(k, len(DOCS))
    # Without it a search says what to do; an upgrade generates it again.
    docs.execute("DROP FUNCTION pyembed_store.docs_v1_search")
    with pytest.raises(psycopg.errors.UndefinedFunction, match="db upgrade"):
        search(docs, query, 3, log=False)
    migrate.upgrade(database.Database(db_dsn))
    assert search(docs, query, 3, log=False) == first
    # One an earlier release made returns other columns, which CREATE OR REPLACE cannot change:
    # the upgrade replaces it all the same.
    docs.execute(
        f"DROP FUNCTION {function}; CREATE FUNCTION {function}(vector, jsonb, integer, integer, "
        "integer, boolean, OUT results jsonb, OUT found_rows bigint, OUT found_chunks bigint) "
        "LANGUAGE sql AS $$ SELECT '[]'::jsonb, 0::bigint, 0::bigint $$"
    )
    migrate.upgrade(database.Database(db_dsn))
    assert search(docs, query, 3, log=False) == first
    overloads = "SELECT count(*) FROM pg_proc WHERE proname = 'docs_v1_nearest'"
    assert docs.execute(overloads).fetchone() == (1,)
    # A dropped collection takes it along.
    docs.execute("SELECT pyembed.drop_collection('docs')")
    assert docs.execute("SELECT to_regproc(%s)", (function,)).fetchone() == (None,)


def test_a_logged_search_does_not_wait_for_its_wal_flush_unless_told(
    docs: psycopg.Connection,
) -> None:
    query = embed(docs, "stone walls")[0]
    show = "SELECT current_setting('synchronous_commit')"
    with docs.transaction(force_rollback=True):
        search(docs, query, 3)
        assert docs.execute(show).fetchone() == ("off",)
    # A transaction that wrote before searching keeps its own durability.
    with docs.transaction(force_rollback=True):
        docs.execute("INSERT INTO docs VALUES (50, 'a new row', 'x')")
        search(docs, query, 3)
        assert docs.execute(show).fetchone() == ("on",)
    docs.execute(
        "SELECT pyembed.alter_collection('docs', settings => '{\"log_synchronous_commit\": true}')"
    )
    with docs.transaction(force_rollback=True):
        search(docs, query, 3)
        assert docs.execute(show).fetchone() == ("on",)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="log_synchronous_commit"):
        docs.execute(
            "SELECT pyembed.alter_collection('docs', settings => '{\"log_synchronous_commit\": 1}')"
        )
