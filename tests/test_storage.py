"""Storage options: halfvec (half the size) and binary (a Hamming index over the signs, re-ranked
by the full vectors), chosen at creation or changed in place, searched like any collection."""

from __future__ import annotations

import numpy as np
import psycopg
import pytest

from pyembed.db import database
from pyembed.search import indexes, recall
from tests.helpers import embed, random_vector_collection, run_worker

ROWS = 2000


def exact_top10(data: np.ndarray, query: np.ndarray) -> set[int]:
    return {int(i) + 1 for i in np.argsort(-(data @ query))[:10]}


def search_ids(conn: psycopg.Connection, query: np.ndarray, filter: str | None = None) -> set[int]:
    rows = conn.execute(
        "SELECT (pk->>0)::int FROM pyembed.search('docs', %s::vector, 10, filter => %s)",
        (query, filter),
    ).fetchall()
    return {row[0] for row in rows}


def set_storage(conn: psycopg.Connection, options: str) -> None:
    conn.execute("SELECT pyembed.alter_collection('docs', index_options => %s)", (options,))


def store_facts(conn: psycopg.Connection) -> tuple[str, int]:
    row = conn.execute(
        "SELECT format_type(atttypid, atttypmod), pg_table_size('pyembed_store.docs_v1') "
        "FROM pg_attribute WHERE attrelid = 'pyembed_store.docs_v1'::regclass "
        "AND attname = 'embedding'"
    ).fetchone()
    assert row is not None
    return row[0], row[1]


def index_definitions(conn: psycopg.Connection) -> list[str]:
    return [
        row[0]
        for row in conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'docs_v1' "
            "AND indexdef ~ 'USING (hnsw|ivfflat)'"
        )
    ]


def index_scans(conn: psycopg.Connection) -> int:
    # This session's own scans are counted once its statistics are flushed (at commit, now).
    conn.execute("SELECT pg_stat_force_next_flush()")
    row = conn.execute(
        "SELECT coalesce(sum(idx_scan), 0) FROM pg_stat_user_indexes "
        "WHERE relname = 'docs_v1' AND indexrelname ~ '_(hnsw|ivfflat)$'"
    ).fetchone()
    assert row is not None
    return int(row[0])


def mean_recall(conn: psycopg.Connection, data: np.ndarray, n: int = 20) -> float:
    hits = [len(search_ids(conn, data[i]) & exact_top10(data, data[i])) / 10 for i in range(n)]
    return float(np.mean(hits))


def test_halfvec_halves_the_store_and_keeps_the_answers(
    db: psycopg.Connection, db_dsn: str
) -> None:
    data = random_vector_collection(db, ROWS)
    indexes.create(database.Database(db_dsn), "docs", recall_queries=10)
    kind, vector_size = store_facts(db)
    assert kind == "vector(384)"
    # In place: the vector index goes, the column is rewritten, the chunk view comes back.
    set_storage(db, '{"storage": "halfvec"}')
    kind, halfvec_size = store_facts(db)
    assert kind == "halfvec(384)" and halfvec_size < 0.65 * vector_size
    assert index_definitions(db) == []
    assert db.execute("SELECT status FROM pyembed.index_builds").fetchall() == [("dropped",)]
    assert db.execute(
        "SELECT count(*) FROM pyembed_store.docs_chunks WHERE pyembed_embedding IS NOT NULL"
    ).fetchone() == (ROWS,)
    assert mean_recall(db, data) == 1.0  # exact scan over half-precision vectors
    built = indexes.create(database.Database(db_dsn), "docs", recall_queries=20)
    assert built.recall_at_10 is not None and built.recall_at_10 >= 0.8
    [definition] = index_definitions(db)
    assert "halfvec_cosine_ops" in definition
    before = index_scans(db)
    assert mean_recall(db, data) >= 0.8
    assert index_scans(db) > before


def test_binary_searches_the_bits_and_reranks_by_the_full_vectors(
    db: psycopg.Connection, db_dsn: str
) -> None:
    data = random_vector_collection(db, ROWS)
    vector_index = indexes.create(database.Database(db_dsn), "docs", recall_queries=10)
    set_storage(db, '{"ef_search": 80}')
    set_storage(db, '{"storage": "binary"}')
    # What was tuned for the vector index goes with it.
    assert db.execute("SELECT index_options FROM pyembed.collections").fetchone() == (
        {"storage": "binary"},
    )
    kind, _ = store_facts(db)
    assert kind == "vector(384)"  # the full vectors stay, for re-ranking
    built = indexes.create(database.Database(db_dsn), "docs", recall_queries=20)
    [definition] = index_definitions(db)
    assert "binary_quantize(embedding)" in definition and "bit_hamming_ops" in definition
    assert built.size_bytes < vector_index.size_bytes / 4
    before = index_scans(db)
    # The re-ranked distances are the full vectors' own: the first result is the row itself.
    first = db.execute(
        "SELECT (pk->>0)::int, distance FROM pyembed.search('docs', %s::vector, 1)", (data[41],)
    ).fetchone()
    assert first is not None and first[0] == 42 and first[1] == pytest.approx(0.0, abs=1e-5)
    default_recall = mean_recall(db, data)
    # Random directions are the hardest case for sign bits (real embeddings: benchmarks/scale.py).
    assert default_recall >= 0.6
    assert index_scans(db) > before
    # Fewer candidates to re-rank cost recall: the setting is live.
    set_storage(db, '{"rerank": 1}')
    assert mean_recall(db, data) < default_recall
    # A filter joins the source inside the scan; the index keeps being read until k rows pass.
    db.execute("UPDATE docs SET body = 'even' WHERE id % 2 = 0")
    db.execute("DELETE FROM pyembed.queue")
    found = search_ids(db, data[41], filter='{"body": "even"}')
    assert len(found) == 10 and all(i % 2 == 0 for i in found)


def test_tuning_binary_storage_chooses_how_many_candidates_to_rerank(
    db: psycopg.Connection, db_dsn: str
) -> None:
    random_vector_collection(db, ROWS)
    set_storage(db, '{"storage": "binary"}')
    indexes.create(database.Database(db_dsn), "docs", recall_queries=10)
    curve = recall.tune(database.Database(db_dsn), "docs", queries_n=20, target_recall=0.9)
    assert [p["rerank"] for p in curve] == list(recall.BINARY_RERANK)
    # More candidates, more recall: 1 candidate per result finds far fewer than 64.
    assert curve[0]["recall_at_10"] < curve[-1]["recall_at_10"]
    chosen = recall.choose(curve, 0.9)
    assert chosen is not None
    options = db.execute("SELECT index_options FROM pyembed.collections").fetchone()
    assert options == ({"storage": "binary", "rerank": chosen["rerank"]},)


def test_a_collection_created_with_halfvec_is_embedded_into_it(
    db: psycopg.Connection, db_dsn: str
) -> None:
    db.execute("CREATE TABLE notes (id int PRIMARY KEY, body text)")
    db.execute(
        "INSERT INTO notes VALUES (1, 'a recipe for bread'), (2, 'the rules of chess'), "
        "(3, 'how to repair a bicycle tyre')"
    )
    db.execute(
        "SELECT pyembed.create_collection('notes', 'notes', ARRAY['body'], "
        'index_options => \'{"storage": "halfvec"}\')'
    )
    run_worker(db_dsn)
    [query] = embed(db, "baking a loaf")
    found = db.execute(
        "SELECT pk->>0 FROM pyembed.search('notes', %s::vector, 1)", (query,)
    ).fetchone()
    assert found == ("1",)
    assert db.execute(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = 'pyembed_store.notes_v1'::regclass AND attname = 'embedding'"
    ).fetchone() == ("halfvec(384)",)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ('{"storage": "int8"}', r"storage = \"int8\""),
        ('{"storage": 2}', r"storage = 2"),
        ('{"rerank": 0}', r"rerank = 0"),
        ('{"rerank": 1000}', r"rerank = 1000"),
    ],
)
def test_bad_storage_options_are_refused(
    db: psycopg.Connection, db_dsn: str, options: str, message: str
) -> None:
    db.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=message) as caught:
        db.execute(
            "SELECT pyembed.create_collection('docs', 'docs', ARRAY['body'], index_options => %s)",
            (options,),
        )
    assert caught.value.diag.message_hint is not None
    assert '"halfvec"' in caught.value.diag.message_hint


def test_a_kept_store_taken_up_with_another_storage_follows_it(
    db: psycopg.Connection, db_dsn: str
) -> None:
    data = random_vector_collection(db, 200)
    indexes.create(database.Database(db_dsn), "docs", recall_queries=5)
    db.execute("SELECT pyembed.drop_collection('docs', keep_store => true)")
    db.execute(
        "SELECT pyembed.create_collection('docs', 'docs', ARRAY['body'], "
        'enqueue_existing => false, index_options => \'{"storage": "halfvec"}\')'
    )
    kind, _ = store_facts(db)
    assert kind == "halfvec(384)"
    assert index_definitions(db) == []  # the vector index keyed another type
    assert search_ids(db, data[7]) == exact_top10(data, data[7])
    assert db.execute("SELECT count(*) FROM pyembed_store.docs_chunks").fetchone() == (200,)


def test_many_candidates_are_planned_for_their_own_count(
    db: psycopg.Connection, db_dsn: str
) -> None:
    # k 1,000 with rerank 8 asks the Hamming index for 16,384 candidates: above the counts the
    # search function keeps plans for, so that statement is planned per call, and still exact.
    data = random_vector_collection(db, ROWS)
    set_storage(db, '{"storage": "binary"}')
    indexes.create(database.Database(db_dsn), "docs", recall_queries=5)
    rows = db.execute(
        "SELECT (pk->>0)::int FROM pyembed.search('docs', %s::vector, 1000, log => false)",
        (data[0],),
    ).fetchall()
    exact = np.argsort(-(data @ data[0]))[:1000] + 1
    assert len(rows) == 1000 and rows[0][0] == 1
    assert len({r[0] for r in rows} & set(exact.tolist())) / 1000 > 0.95
