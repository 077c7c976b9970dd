"""pyembed.hybrid_search: BM25 full-text ranking fused with the vector ranking by RRF."""

from __future__ import annotations

import math
import time

import numpy as np
import psycopg
import pytest
from psycopg.types.json import Jsonb

from pyembed.db import database, migrate
from tests.helpers import embed, run_worker

DOCS = [
    (1, "gasket XR7731 for the pump housing", "parts"),
    (2, "a rubber seal that keeps water out of a pump", "parts"),
    (3, "the harbour where ships anchor", "sea"),
    (4, "a pump pump pump for the garden well", "garden"),
    (5, "a recipe for apple pie", "food"),
    (6, "the garden shed and its tools", "garden"),
]


@pytest.fixture
def docs(db: psycopg.Connection, db_dsn: str) -> psycopg.Connection:
    db.execute("CREATE TABLE docs (id int PRIMARY KEY, body text, topic text)")
    with db.cursor() as cur:
        cur.executemany("INSERT INTO docs VALUES (%s, %s, %s)", DOCS)
    db.execute("SELECT pyembed.create_collection('docs', 'docs', ARRAY['body'])")
    run_worker(db_dsn)
    return db


def hybrid(db: psycopg.Connection, text: str, **kwargs: object) -> list[tuple[object, ...]]:
    names = "".join(f", {name} => %({name})s" for name in kwargs)
    return db.execute(
        f"SELECT query_id, rank, pk, score, dense_rank, text_rank, distance, similarity "  # noqa: S608
        f"FROM pyembed.hybrid_search('docs', %(text)s, %(q)s{names})",
        {"text": text, "q": embed(db, text)[0], **kwargs},
    ).fetchall()


def test_rrf_fuses_the_two_rankings(docs: psycopg.Connection) -> None:
    rows = hybrid(docs, "pump seal", k=6, rrf_k=60)
    vector = embed(docs, "pump seal")[0]
    dense = [
        r[0]
        for r in docs.execute(
            "SELECT pk FROM pyembed.search('docs', %s, 40, log => false)", (vector,)
        ).fetchall()
    ]
    for _, _, pk, score, dense_rank, text_rank, _, _ in rows:
        expected = (1 / (60 + dense_rank) if dense_rank else 0) + (
            1 / (60 + text_rank) if text_rank else 0
        )
        assert score == pytest.approx(expected)
        assert dense_rank == dense.index(pk) + 1  # the dense side is pyembed.search's order
    scores = [r[3] for r in rows]
    assert scores == sorted(scores, reverse=True)
    # Only rows 1, 2 and 4 contain "pump" or "seal": the others have no text rank.
    assert {r[2][0] for r in rows if r[5] is not None} == {1, 2, 4}  # type: ignore[index]


def test_text_side_alone_is_bm25(docs: psycopg.Connection) -> None:
    rows = hybrid(docs, "pump", dense_weight=0, k=5)
    # Pure text ranking: only matching rows, the one saying "pump" three times first.
    assert rows[0][2] == [4]
    assert {r[2][0] for r in rows} == {1, 2, 4}  # type: ignore[index]
    assert all(r[4] is None for r in rows)
    # A rare exact token that the model has no meaning for is found by the text side.
    code = hybrid(docs, "XR7731", k=1)
    assert code[0][2] == [1] and code[0][5] == 1
    # Every result still carries its distance and similarity to the query vector.
    assert all(r[6] is not None and r[7] == pytest.approx(1 - r[6]) for r in rows)  # type: ignore[operator]


def test_bm25_score_matches_a_hand_computation(docs: psycopg.Connection) -> None:
    # One lexeme "harbour" in 1 of 6 chunks: idf = ln(1 + (6 - 1 + 0.5) / (1 + 0.5)).
    stats = docs.execute(
        "SELECT documents, avg_length FROM pyembed._text_stats(pyembed.collection('docs'))"
    ).fetchone()
    assert stats is not None and stats[0] == 6
    length = docs.execute(
        "SELECT length(chunk_tsv) FROM pyembed_store.docs_v1 WHERE id = 3"
    ).fetchone()[0]  # type: ignore[index]
    idf = math.log(1 + (6 - 1 + 0.5) / 1.5)
    expected = idf * 1 * 2.2 / (1 + 1.2 * (0.25 + 0.75 * length / stats[1]))
    matches = docs.execute(
        "SELECT pyembed._text_matches(pyembed.collection('docs'), 'harbours', %s, 5, NULL)",
        (embed(docs, "harbours")[0],),
    ).fetchone()[0]  # type: ignore[index]
    assert [m["pk"] for m in matches] == [[3]]
    assert matches[0]["text_score"] == pytest.approx(expected, rel=1e-6)


def test_filter_applies_to_both_sides_and_search_is_logged(docs: psycopg.Connection) -> None:
    rows = hybrid(docs, "pump in the garden", k=5, filter=Jsonb({"topic": "garden"}))
    assert {r[2][0] for r in rows} == {4, 6}  # type: ignore[index]
    log = docs.execute(
        "SELECT query_text, params->>'rerank', result_count FROM pyembed.query_log WHERE id = %s",
        (rows[0][0],),
    ).fetchone()
    assert log == ("pump in the garden", "hybrid", 2)
    logged = docs.execute(
        "SELECT pk FROM pyembed.query_results WHERE query_id = %s ORDER BY rank", (rows[0][0],)
    ).fetchall()
    assert [r[0] for r in logged] == [r[2] for r in rows]


def test_stop_words_only_leave_the_dense_ranking(docs: psycopg.Connection) -> None:
    rows = hybrid(docs, "the and of", k=3)
    assert len(rows) == 3 and all(r[5] is None and r[4] == r[1] for r in rows)


def test_text_search_configuration_can_change(docs: psycopg.Connection) -> None:
    assert hybrid(docs, "the", dense_weight=0) == []  # a stop word in english
    docs.execute(
        "SELECT pyembed.alter_collection('docs', settings => %s)",
        (Jsonb({"text_search_config": "simple"}),),
    )
    with_the = {r[2][0] for r in hybrid(docs, "the", dense_weight=0)}  # type: ignore[index]
    assert with_the == {1, 3, 4, 6}
    with pytest.raises(psycopg.Error, match='text search configuration "klingon" does not exist'):
        docs.execute(
            "SELECT pyembed.alter_collection('docs', "
            'settings => \'{"text_search_config": "klingon"}\')'
        )
    config = docs.execute(
        "SELECT settings->>'text_search_config' FROM pyembed.collections WHERE name = 'docs'"
    ).fetchone()
    assert config == ("simple",)  # the failed change left nothing behind


def test_statistics_follow_the_store(docs: psycopg.Connection, db_dsn: str) -> None:
    hybrid(docs, "pump")
    with docs.cursor() as cur:
        cur.executemany(
            "INSERT INTO docs VALUES (%s, %s, 'bulk')",
            [(100 + i, f"bulk item number {i}") for i in range(200)],
        )
    run_worker(db_dsn)
    # The worker's backend reports its inserts to the statistics system as it exits.
    for _ in range(100):
        live = docs.execute(
            "SELECT pg_stat_get_live_tuples('pyembed_store.docs_v1'::regclass)"
        ).fetchone()
        if live is not None and live[0] >= 206:
            break
        time.sleep(0.1)
    hybrid(docs, "pump")
    assert docs.execute("SELECT documents FROM pyembed.text_search_stats").fetchone() == (206,)


@pytest.mark.parametrize(
    ("text", "kwargs", "message"),
    [
        (None, {}, "needs the query text"),
        ("  ", {}, "needs the query text"),
        ("pump", {"dense_weight": 0, "text_weight": 0}, "cannot rank anything"),
        ("pump", {"text_weight": -1}, "cannot rank anything"),
        ("pump", {"rrf_k": 0}, "rrf_k = 0 is out of range"),
        ("pump", {"k": 0}, "out of range"),
    ],
)
def test_bad_input_is_refused(
    docs: psycopg.Connection, text: str | None, kwargs: dict[str, object], message: str
) -> None:
    names = "".join(f", {name} => %({name})s" for name in kwargs)
    with pytest.raises(psycopg.Error, match=message):
        docs.execute(
            f"SELECT * FROM pyembed.hybrid_search('docs', %(text)s, %(q)s{names})",  # noqa: S608
            {"text": text, "q": np.ones(384, dtype=np.float32), **kwargs},
        )
    with pytest.raises(psycopg.Error, match="the query vector is NULL"):
        docs.execute("SELECT * FROM pyembed.hybrid_search('docs', 'pump')")


def test_stores_made_before_hybrid_search_get_their_tsvector(make_empty_db: object) -> None:
    dsn = make_empty_db()  # type: ignore[operator]
    migrate.upgrade(database.Database(dsn), "0006")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE notes (id int PRIMARY KEY, body text)")
        conn.execute("INSERT INTO notes VALUES (1, 'the harbour at night'), (2, 'apple pie')")
        conn.execute("SELECT pyembed.create_collection('notes', 'notes', ARRAY['body'])")
        # Chunks as a worker of that revision wrote them (this package's worker needs the head).
        conn.execute(
            "INSERT INTO pyembed_store.notes_v1 (id, chunk_seq, chunk, embedding, content_hash) "
            "SELECT id, 0, body, array_fill(0.1, ARRAY[384])::vector, '\\x00' FROM notes"
        )
    migrate.upgrade(database.Database(dsn))
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pk, text_rank FROM pyembed.hybrid_search('notes', 'harbour', "
            "array_fill(0.1, ARRAY[384])::vector, dense_weight => 0)"
        ).fetchall()
    assert rows == [([1], 1)]
    migrate.downgrade(database.Database(dsn), "0006")
    with psycopg.connect(dsn) as conn:
        columns = conn.execute(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'pyembed_store.notes_v1'::regclass "
            "AND attname = 'chunk_tsv' AND NOT attisdropped"
        ).fetchone()
    assert columns == (0,)


def test_the_text_side_scores_a_bounded_set_of_candidates(db: psycopg.Connection) -> None:
    budget = db.execute("SELECT pyembed.max_text_candidates()").fetchone()[0]  # type: ignore[index]
    rows = budget + 200
    db.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
    db.execute("SELECT pyembed.create_collection('docs', 'docs', ARRAY['body'])")
    db.execute(
        "INSERT INTO docs SELECT g, CASE WHEN g = %(n)s THEN 'harbour lighthouse' "
        "ELSE 'harbour crane ' || g END FROM generate_series(1, %(n)s) AS g",
        {"n": rows},
    )
    db.execute("DELETE FROM pyembed.queue")
    # Stored straight away (random vectors): this is about the text side alone.
    db.execute(
        "INSERT INTO pyembed_store.docs_v1 (id, chunk_seq, chunk, embedding, content_hash) "
        "SELECT id, 0, body, (SELECT array_agg(random() - 0.5) FROM generate_series(1, 384) "
        "WHERE id IS NOT NULL)::real[]::vector, '\\x00' FROM docs"
    )
    c = "pyembed.collection('docs')"
    # A word in every chunk is counted off the text index, not row by row.
    assert db.execute(
        f"SELECT pyembed._document_frequency({c}, 'harbour'::tsquery, 10)"
    ).fetchone() == (rows,)
    query = np.ones(384, dtype=np.float32)

    def matches(text: str, n: int) -> list[int]:
        found = db.execute(
            f"SELECT pyembed._text_matches({c}, %s, %s::vector, %s, NULL)",
            (text, query, n),
        ).fetchone()[0]  # type: ignore[index]
        return [m["pk"][0] for m in found]

    # The rare word's one chunk is the candidate; the frequent word scores it but brings in no
    # others while the rare matches are enough for the n rows asked for.
    assert matches("harbour lighthouse", 1) == [rows]
    # Asked for more rows than the rare word matches: the frequent word tops them up.
    topped = matches("harbour lighthouse", 5)
    assert len(topped) == 5 and topped[0] == rows
    # A word in more chunks than the budget: the text side still answers, from a bounded set.
    assert len(matches("harbour", 5)) == 5


def test_a_long_query_text_ranks_by_a_bounded_set_of_lexemes(docs: psycopg.Connection) -> None:
    text = " ".join(f"w{i}" for i in range(3000)) + " the harbour where ships anchor"
    kept = docs.execute(
        "SELECT pyembed._query_lexemes(pyembed.collection('docs'), %s), "
        "pyembed.max_query_lexemes()",
        (text,),
    ).fetchone()
    assert kept is not None
    lexemes, cap = kept
    assert len(lexemes) == cap == 32
    assert {"harbour", "anchor"} <= set(lexemes)  # the longest are kept: long words are rarer
    assert "ship" not in lexemes
    rows = hybrid(docs, text, k=3, dense_weight=0.0)
    assert rows[0][2] == [3]
    short = docs.execute(
        "SELECT pyembed._query_lexemes(pyembed.collection('docs'), 'the pumps')"
    ).fetchone()
    assert short == (["pump"],)
