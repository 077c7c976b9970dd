"""Similarity functions of any dimension and domain-aware ranking."""

from __future__ import annotations

import numpy as np
import psycopg
import pytest

from tests.helpers import run_worker


def scalar(db: psycopg.Connection, sql: str, *params: object) -> object:
    row = db.execute(sql, params).fetchone()
    assert row is not None
    return row[0]


def test_cosine_any_dimension(db: psycopg.Connection) -> None:
    assert scalar(db, "SELECT pyembed.cosine_similarity('[1,0]', '[0,1]')") == pytest.approx(0)
    assert scalar(db, "SELECT pyembed.cosine_similarity('[1,2,3]', '[2,4,6]')") == pytest.approx(1)
    a, b = np.random.default_rng(1).normal(size=(2, 1536)).astype(np.float32)
    expected = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    assert scalar(db, "SELECT pyembed.cosine_similarity(%s, %s)", a, b) == pytest.approx(
        expected, abs=1e-5
    )
    assert scalar(db, "SELECT pyembed.cosine_similarity('[0,0]', '[1,1]')") is None
    with pytest.raises(psycopg.Error, match="different vector dimensions"):
        db.execute("SELECT pyembed.cosine_similarity('[1,2]', '[1,2,3]')")


def test_weighted_cosine(db: psycopg.Connection) -> None:
    # Weight only the first dimension: the vectors agree there.
    got = scalar(db, "SELECT pyembed.weighted_cosine_similarity('[1,5]', '[2,-5]', '[1,0]')")
    assert got == pytest.approx(1.0)
    a, b, w = np.random.default_rng(2).random(size=(3, 64)).astype(np.float32)
    expected = float((w * a * b).sum() / np.sqrt((w * a * a).sum()) / np.sqrt((w * b * b).sum()))
    got = scalar(db, "SELECT pyembed.weighted_cosine_similarity(%s, %s, %s)", a, b, w)
    assert got == pytest.approx(expected, abs=1e-5)
    with pytest.raises(psycopg.Error, match="one weight per dimension"):
        db.execute("SELECT pyembed.weighted_cosine_similarity('[1,2]', '[1,2]', '[1,2,3]')")
    with pytest.raises(psycopg.Error, match="must not be negative"):
        db.execute("SELECT pyembed.weighted_cosine_similarity('[1,2]', '[1,2]', '[1,-1]')")


def test_domain_aware_boosts_come_from_the_table_and_cap_at_one(db: psycopg.Connection) -> None:
    base = "SELECT pyembed.domain_aware_similarity('[1,0]', '[1,1]', %s, %s, %s, %s)"
    cos = 1 / np.sqrt(2)
    assert scalar(db, base, "law", "tax", "memo", "post") == pytest.approx(cos, abs=1e-6)
    assert scalar(db, base, "law", "law", "memo", "post") == pytest.approx(cos + 0.10, abs=1e-6)
    assert scalar(db, base, "law", "law", "memo", "memo") == pytest.approx(cos + 0.15, abs=1e-6)
    db.execute(
        "INSERT INTO pyembed.similarity_boosts (rule, domain_a, domain_b, boost) "
        "VALUES ('related_domains', 'tax', 'law', 0.2)"
    )
    assert scalar(db, base, "law", "tax", "memo", "post") == pytest.approx(cos + 0.2, abs=1e-6)
    db.execute("UPDATE pyembed.similarity_boosts SET boost = 0.9 WHERE rule = 'same_domain'")
    assert scalar(db, base, "law", "law", None, None) == 1.0  # capped


def test_search_reranked_by_domain(db: psycopg.Connection, db_dsn: str) -> None:
    db.execute("CREATE TABLE items (id int PRIMARY KEY, body text, domain text, kind text)")
    db.execute("""INSERT INTO items VALUES
        (1, 'interest rates on savings accounts', 'finance', 'article'),
        (2, 'interest rates and the central bank', 'economics', 'article'),
        (3, 'a story about a savings account', 'fiction', 'story')""")
    db.execute("SELECT pyembed.create_collection('items', 'items', ARRAY['body'])")
    run_worker(db_dsn)
    # Between the finance and the fiction item, nearer the finance one: both are similar, neither
    # identical (exactly halfway would leave the plain order to rounding noise).
    finance, fiction = (
        np.array(row[0])
        for row in db.execute(
            "SELECT embedding::real[] FROM pyembed_store.items_v1 WHERE id IN (1, 3) ORDER BY id"
        ).fetchall()
    )
    query = (0.6 * finance + 0.4 * fiction,)
    db.execute("UPDATE pyembed.similarity_boosts SET boost = 0.3 WHERE rule = 'same_domain'")
    plain = db.execute("SELECT pk FROM pyembed.search('items', %s, 3, log => false)", query)
    assert plain.fetchone() == ([1],)  # without boosts the finance item is nearest
    rows = db.execute(
        "SELECT query_id, rank, pk, similarity, score FROM pyembed.search_domain_aware("
        "'items', %s, 'fiction', type_column => 'kind', k => 3)",
        query,
    ).fetchall()
    assert rows[0][2] == [3]  # the fiction item wins on its boost
    assert rows[0][4] == pytest.approx(min(1.0, rows[0][3] + 0.3), abs=1e-6)
    logged = db.execute(
        "SELECT pk FROM pyembed.query_results WHERE query_id = %s ORDER BY rank", (rows[0][0],)
    ).fetchall()
    assert [r[0] for r in logged] == [r[2] for r in rows]
    with pytest.raises(psycopg.Error, match='column "topic" does not exist'):
        db.execute(
            "SELECT * FROM pyembed.search_domain_aware('items', %s, 'x', domain_column => 'topic')",
            query,
        )
