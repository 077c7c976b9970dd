"""A table that already holds its application's vectors: adopted without re-embedding, kept in
step with the application's writes, searched, logged, evaluated, and switched blue/green to a
version pyembed embeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import psycopg
import pytest
import sqlalchemy as sa
from pgvector.psycopg import register_vector

from pyembed.db import database
from pyembed.evaluation import eval_sets, retrieval
from pyembed.integrations import alembic_ops
from pyembed.models import registry, switches
from tests.conftest import PACKAGE
from tests.helpers import embed, run_worker
from tests.switch_fixtures import DOCS


def app_vectors(db: psycopg.Connection, texts: list[str], seed: int) -> np.ndarray:
    """Vectors as the application's own code made them: the model's, nudged, so a copy is told
    apart from what pyembed would compute."""
    model = embed(db, *texts)
    noisy = model + 0.05 * np.random.default_rng(seed).normal(size=model.shape)
    return (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype(np.float32)


def stored(db: psycopg.Connection, version: int) -> dict[int, np.ndarray]:
    rows = db.execute(
        psycopg.sql.SQL("SELECT id, embedding FROM {} WHERE chunk_seq = 0").format(
            psycopg.sql.Identifier("pyembed_store", f"docs_v{version}")
        )
    ).fetchall()
    return {pk: np.asarray(v.to_numpy()) for pk, v in rows if v is not None}


def test_an_adopted_vector_column_is_copied_searched_evaluated_and_switched_away_from(
    db: psycopg.Connection, db_dsn: str, clean_cache: Path
) -> None:
    register_vector(db)
    texts = [body for _, body in DOCS]
    vectors = app_vectors(db, texts, seed=1)
    db.execute("CREATE TABLE docs (id int PRIMARY KEY, body text, embedding vector(384))")
    with db.cursor() as cur:
        cur.executemany(
            "INSERT INTO docs VALUES (%s, %s, %s)",
            [(i, body, None if i == 5 else vectors[i]) for i, body in DOCS],
        )
    db.execute(
        "SELECT pyembed.create_collection('docs', 'docs', ARRAY['body'], "
        "embedding_column => 'embedding')"
    )
    assert run_worker(db_dsn).failures == 0
    copies = stored(db, 1)
    assert set(copies) == {i for i, _ in DOCS}
    for i, _ in DOCS:
        expected = embed(db, texts[i])[0] if i == 5 else vectors[i]
        # Copied exactly; the row without a vector embedded by the model (as a document).
        if i == 5:
            assert float(copies[i] @ expected) > 0.95
        else:
            np.testing.assert_allclose(copies[i], expected, atol=1e-6)
    # The application writes a new vector alone: the row is queued and copied again.
    newer = app_vectors(db, [texts[3]], seed=2)[0]
    db.execute("UPDATE docs SET embedding = %s WHERE id = 3", (newer,))
    assert db.execute("SELECT count(*) FROM pyembed.queue").fetchone() == (1,)
    run_worker(db_dsn)
    np.testing.assert_allclose(stored(db, 1)[3], newer, atol=1e-6)
    db.execute("UPDATE docs SET body = body WHERE id = 4")  # nothing changed: nothing queued
    assert db.execute("SELECT count(*) FROM pyembed.queue").fetchone() == (0,)
    # Searched and logged like any collection; queries embedded by the named model.
    query = embed(db, "stone walls")[0]
    found = db.execute(
        "SELECT query_id, pk FROM pyembed.search('docs', %s, 5, query_text => 'stone walls')",
        (query,),
    ).fetchall()
    assert {pk[0] % 4 for _, pk in found[:3]} == {0}
    logged = db.execute(
        "SELECT model_version_id, query_text FROM pyembed.query_log WHERE id = %s",
        (found[0][0],),
    ).fetchone()
    assert logged == (1, "stone walls")
    # Evaluated from its store (the application's vectors) ...
    judged = [
        (topic, {(i,): 1.0 for i, _ in DOCS if i % 4 == t})
        for t, topic in enumerate(["stone walls", "harbours", "apple pie", "city blocks"])
    ]
    eval_sets.create_set(db, "docs", "topics", "manual", judged)
    adopted = retrieval.evaluate(database.Database(db_dsn), "docs", eval_set="topics")
    assert {r.mode for r in adopted} == {"exact", "deployed"} and adopted[0].metrics[
        "ndcg@10"
    ] > 0.5
    # ... and switched to a version pyembed embeds itself: re-embedded beside, then flipped.
    v2 = registry.register(database.Database(db_dsn), "all-MiniLM-L6-v2", PACKAGE)
    switches.promote(database.Database(db_dsn), "docs", v2.id)
    fresh = stored(db, v2.id)
    model = embed(db, *texts, version=v2.id)  # query embeddings: close to the documents'
    for i, _ in DOCS:
        assert float(fresh[i] @ vectors[i]) < 0.9999  # not a copy
        assert float(fresh[i] @ model[i]) > 0.95
    active = db.execute("SELECT active_version_id FROM pyembed.collections").fetchone()
    assert active == (v2.id,)


def test_bad_vector_columns_are_refused_with_the_fix(
    db: psycopg.Connection, db_dsn: str, clean_cache: Path
) -> None:
    db.execute(
        "CREATE TABLE docs (id int PRIMARY KEY, body text, small vector(8), plain vector, "
        "words text)"
    )
    for column, error, message in [
        ("nope", psycopg.errors.UndefinedColumn, 'column "nope" does not exist'),
        ("words", psycopg.errors.DatatypeMismatch, "not a pgvector vector"),
        ("small", psycopg.errors.DatatypeMismatch, "embeds into 384 dimensions"),
    ]:
        with pytest.raises(error, match=message):
            db.execute(
                "SELECT pyembed.create_collection('docs', 'docs', ARRAY['body'], "
                "embedding_column => %s)",
                (column,),
            )
    # An unconstrained column: a row of the wrong size fails alone, saying what to do.
    db.execute("INSERT INTO docs (id, body, plain) VALUES (1, 'a', '[1,2,3]'), (2, 'b', NULL)")
    db.execute(
        "SELECT pyembed.create_collection('docs', 'docs', ARRAY['body'], "
        "embedding_column => 'plain')"
    )
    run_worker(db_dsn, max_attempts=1)
    failed = db.execute("SELECT pk, last_error FROM pyembed.failed_items").fetchall()
    assert len(failed) == 1 and failed[0][0] == [1]
    assert "holds 3 dimensions for this row" in failed[0][1] and "set it to NULL" in failed[0][1]
    # Which column is adopted is decided when the collection is created, never altered.
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="set by create_collection"):
        db.execute(
            "SELECT pyembed.alter_collection('docs', settings => '{\"embedding_column\": \"x\"}')"
        )


def test_an_alembic_migration_adopts_the_column_and_reads_it_back(
    db: psycopg.Connection, db_dsn: str, clean_cache: Path
) -> None:
    db.execute("CREATE TABLE docs (id int PRIMARY KEY, body text, embedding vector(384))")
    spec = alembic_ops.CollectionSpec(
        "docs", "public.docs", text_columns=["body"], chunk_tokens=256, embedding_column="embedding"
    )
    engine = sa.create_engine(db_dsn.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.begin() as conn:
            conn.execute(spec.call())
            found = alembic_ops._existing_collections(conn)
    finally:
        engine.dispose()
    assert [existing for _, existing, _, _ in found] == [spec]  # autogenerate sees no change
