"""The filter language of pyembed's searches: every operator against the same WHERE clause in
plain SQL, the errors that name what is wrong, the source's indexes serving a filter."""

from __future__ import annotations

from typing import Any

import numpy as np
import psycopg
import pytest
from psycopg.types.json import Jsonb

from pyembed.db import database
from pyembed.search import client, indexes
from tests.helpers import random_vector_collection

ROWS = 300


@pytest.fixture
def items(db: psycopg.Connection) -> np.ndarray:
    """docs (id, body) with typed columns to filter on, its store of random vectors."""
    vectors = random_vector_collection(db, ROWS)
    db.execute("CREATE DOMAIN grade AS integer CHECK (VALUE BETWEEN 1 AND 5)")
    db.execute("CREATE TYPE colour AS ENUM ('red', 'green', 'blue')")
    db.execute(
        "ALTER TABLE docs ADD COLUMN lang text, ADD COLUMN price numeric(8, 2),"
        " ADD COLUMN qty integer, ADD COLUMN tags varchar[], ADD COLUMN published date,"
        " ADD COLUMN meta jsonb, ADD COLUMN draft boolean, ADD COLUMN grade grade,"
        " ADD COLUMN colour colour"
    )
    db.execute(
        "UPDATE docs SET lang = (ARRAY['en', 'de', 'fr'])[id % 3 + 1], price = id * 0.25,"
        " qty = CASE WHEN id % 7 = 0 THEN NULL ELSE id % 50 END,"
        " tags = ARRAY['t' || id % 5, 'u' || id % 4], published = date '2024-01-01' + id,"
        " meta = jsonb_build_object('shade', (ARRAY['dark', 'light'])[id % 2 + 1], 'n', id % 10),"
        " draft = id % 2 = 0, grade = id % 5 + 1,"
        " colour = (enum_range(NULL::colour))[id % 3 + 1]"
    )
    return vectors


def searched(db: psycopg.Connection, query: np.ndarray, filter: Any) -> list[int]:
    rows = db.execute(
        "SELECT (pk->>0)::int FROM pyembed.search('docs', %s, %s, filter => %s) ORDER BY rank",
        (query, ROWS, Jsonb(filter)),
    ).fetchall()
    return [r[0] for r in rows]


def where(db: psycopg.Connection, condition: str) -> set[int]:
    rows = db.execute(f"SELECT id FROM docs WHERE {condition}").fetchall()  # noqa: S608 - test SQL
    return {r[0] for r in rows}


CASES = [
    ({"lang": "en"}, "lang = 'en'"),
    ({"lang": {"$eq": "de"}}, "lang = 'de'"),
    ({"price": {"$lt": 10}}, "price < 10"),
    ({"price": {"$gte": "12.5", "$lte": 20}}, "price BETWEEN 12.5 AND 20"),
    ({"price": {"$gt": 70.25}}, "price > 70.25"),
    ({"qty": {"$ne": 3}}, "qty IS DISTINCT FROM 3"),
    ({"qty": None}, "qty IS NULL"),
    ({"qty": {"$ne": None}}, "qty IS NOT NULL"),
    ({"qty": {"$exists": True}}, "qty IS NOT NULL"),
    ({"qty": {"$exists": False}}, "qty IS NULL"),
    ({"lang": {"$in": ["en", "fr"]}}, "lang IN ('en', 'fr')"),
    ({"lang": {"$nin": ["en"]}}, "lang <> 'en'"),
    ({"qty": {"$nin": [1, 2]}}, "qty IS NULL OR qty NOT IN (1, 2)"),
    ({"qty": {"$in": []}}, "false"),
    ({"qty": {"$nin": []}}, "true"),
    ({"tags": "t1"}, "'t1' = ANY (tags)"),
    ({"tags": ["t1", "u1"]}, "tags @> ARRAY['t1', 'u1']::varchar[]"),
    ({"tags": {"$in": ["t1", "t2"]}}, "tags && ARRAY['t1', 't2']::varchar[]"),
    ({"tags": {"$nin": ["t1"]}}, "NOT tags && ARRAY['t1']::varchar[]"),
    ({"tags": {"$ne": "u2"}}, "NOT 'u2' = ANY (tags)"),
    (
        {"published": {"$gte": "2024-03-01", "$lt": "2024-04-01"}},
        "published >= '2024-03-01' AND published < '2024-04-01'",
    ),
    ({"meta": {"shade": "dark"}}, """meta @> '{"shade": "dark"}'"""),
    ({"meta": {"$eq": {"n": 3}}}, """meta @> '{"n": 3}'"""),
    ({"draft": False}, "NOT draft"),
    ({"grade": {"$gte": 4}}, "grade >= 4"),
    ({"grade": 9}, "false"),  # the domain's CHECK is not the filter's business
    ({"colour": {"$in": ["red", "blue"]}}, "colour IN ('red', 'blue')"),
    ({"colour": {"$gt": "red"}}, "colour > 'red'"),
    ({"$or": [{"lang": "de"}, {"price": {"$lt": 5}}]}, "lang = 'de' OR price < 5"),
    (
        {"$and": [{"lang": "de"}, {"$not": {"price": {"$lt": 50}}}]},
        "lang = 'de' AND NOT price < 50",
    ),
    ({"$not": {"qty": {"$gt": 10}}}, "qty IS NULL OR qty <= 10"),
    (
        {"lang": "fr", "$or": [{"qty": 4}, {"qty": {"$gt": 45}}]},
        "lang = 'fr' AND qty IN (4, 46, 47, 48, 49)",
    ),
    ({}, "true"),
    ({"lang": "it's"}, "lang = 'it''s'"),
]


@pytest.mark.parametrize(("filter", "condition"), CASES, ids=[c for _, c in CASES])
def test_a_filter_keeps_the_rows_its_where_clause_keeps(
    db: psycopg.Connection, items: np.ndarray, filter: dict[str, Any], condition: str
) -> None:
    query = items[17]
    found = searched(db, query, filter)
    assert set(found) == where(db, condition)
    # Still nearest first.
    similarities = items[[i - 1 for i in found]] @ query
    assert all(np.diff(similarities) <= 1e-6)


BAD = [
    ({"colour_name": "red"}, 'filter names column "colour_name"'),
    ({"price": {"$lt": "cheap"}}, 'filter value "cheap" for column "price" is not a valid numeric'),
    ({"qty": {"$in": [1, 1e12]}}, 'for column "qty" is not a valid integer'),
    ({"published": "2024-13-45"}, 'column "published" is not a valid date'),
    ({"colour": "pink"}, r'column "colour" is not a valid public\.colour'),
    ({"price": {"$between": [1, 2]}}, r"unknown filter operator \$between for column"),
    ({"$nor": [{"lang": "en"}]}, r"unknown filter operator \$nor"),
    ({"lang": {"$in": "en"}}, "takes an array of values"),
    ({"lang": {"$in": ["en", None]}}, "holds null"),
    ({"qty": {"$exists": 1}}, "takes true or false"),
    ({"lang": ["en", "de"]}, "holds one value"),
    ({"lang": {"code": "en"}}, "operators start with"),
    ({"price": {"$lt": None}}, "compares with NULL"),
    ({"tags": {"$lt": "a"}}, "cannot compare"),
    ({"$or": []}, "non-empty array of filters"),
    ({"$and": {"lang": "en"}}, "non-empty array of filters"),
    ({"$or": ["en"]}, "must be a JSON object"),
    ([{"lang": "en"}], "must be a JSON object"),
]


@pytest.mark.parametrize(("filter", "message"), BAD, ids=[m for _, m in BAD])
def test_a_bad_filter_names_its_problem(
    db: psycopg.Connection, items: np.ndarray, filter: Any, message: str
) -> None:
    with pytest.raises(psycopg.Error, match=message):
        searched(db, items[0], filter)


def test_deep_nesting_and_unsupported_types_are_refused(
    db: psycopg.Connection, items: np.ndarray
) -> None:
    deep: dict[str, Any] = {"lang": "en"}
    for _ in range(40):
        deep = {"$not": deep}
    with pytest.raises(psycopg.errors.ProgramLimitExceeded, match="32 levels"):
        searched(db, items[0], deep)
    db.execute("CREATE TYPE pair AS (a int, b int)")
    db.execute("ALTER TABLE docs ADD COLUMN p pair")
    unsupported = r'column "p" of type public\.pair'
    with pytest.raises(psycopg.errors.FeatureNotSupported, match=unsupported):
        searched(db, items[0], {"p": "(1,2)"})


def test_a_filter_value_is_bound_not_spliced(db: psycopg.Connection, items: np.ndarray) -> None:
    db.execute("UPDATE docs SET lang = 'x'' OR true --' WHERE id = 5")
    assert searched(db, items[0], {"lang": "x' OR true --"}) == [5]
    assert searched(db, items[0], {"lang": "'); DROP TABLE docs; --"}) == []
    assert db.execute("SELECT count(*) FROM docs").fetchone() == (ROWS,)


def test_a_domain_check_does_not_run_for_a_filter(
    db: psycopg.Connection, items: np.ndarray
) -> None:
    # A domain's CHECK may call its owner's function; a filter casts to the base type instead,
    # so nothing of the table owner's runs as the searcher.
    db.execute("CREATE TABLE calls (who name)")
    db.execute(
        "CREATE FUNCTION spy(v integer) RETURNS boolean LANGUAGE sql"
        " AS $$ INSERT INTO calls VALUES (current_user) RETURNING true $$"
    )
    db.execute("CREATE DOMAIN watched AS integer CHECK (spy(VALUE))")
    db.execute("ALTER TABLE docs ADD COLUMN w watched")
    db.execute("DELETE FROM calls")
    assert searched(db, items[0], {"w": {"$in": [1, 2]}}) == []
    assert db.execute("SELECT count(*) FROM calls").fetchone() == (0,)


def _search_plans(db: psycopg.Connection, query: np.ndarray, filter: dict[str, Any]) -> str:
    """auto_explain's plans of the statements of one search that read the store."""
    plans: list[str] = []
    db.add_notice_handler(lambda notice: plans.append(notice.message_primary or ""))
    db.execute("LOAD 'auto_explain'")
    db.execute("SET auto_explain.log_min_duration = 0")
    db.execute("SET auto_explain.log_nested_statements = on")
    db.execute("SET auto_explain.log_level = notice")
    db.execute(
        "SELECT FROM pyembed.search('docs', %s, 10, filter => %s)", (query, Jsonb(filter))
    ).fetchall()
    db.execute("SET auto_explain.log_min_duration = -1")
    return "\n".join(p for p in plans if "docs_v1" in p)


def test_a_selective_filter_uses_the_source_index(db: psycopg.Connection) -> None:
    vectors = random_vector_collection(db, 20_000)
    db.execute("ALTER TABLE docs ADD COLUMN price integer")
    db.execute("UPDATE docs SET price = id")
    db.execute("CREATE INDEX docs_price ON docs (price)")
    db.execute("ANALYZE docs")
    db.execute("ANALYZE pyembed_store.docs_v1")
    assert "docs_price" in _search_plans(db, vectors[0], {"price": {"$lt": 8}})
    found = db.execute(
        "SELECT (pk->>0)::int FROM pyembed.search('docs', %s, 10, filter => %s)",
        (vectors[0], Jsonb({"price": {"$lt": 8}})),
    ).fetchall()
    assert {r[0] for r in found} == set(range(1, 8))


def test_a_filter_that_keeps_few_rows_ranks_them_exactly(
    db: psycopg.Connection, db_dsn: str
) -> None:
    vectors = random_vector_collection(db, 4000)
    db.execute("ALTER TABLE docs ADD COLUMN bucket integer")
    db.execute("UPDATE docs SET bucket = id % 100")
    db.execute("ANALYZE docs")
    indexes.create(database.Database(db_dsn), "docs", recall_queries=10)
    # Half the rows: the index, read on until 10 pass. 1% of them: every kept row, ranked.
    assert "docs_v1_hnsw" in _search_plans(db, vectors[0], {"bucket": {"$lt": 50}})
    assert "docs_v1_hnsw" not in _search_plans(db, vectors[0], {"bucket": 7})
    kept = [i for i in range(1, 4001) if i % 100 == 7]
    nearest = sorted(kept, key=lambda i: -float(vectors[i - 1] @ vectors[0]))[:10]
    assert searched(db, vectors[0], {"bucket": 7})[:10] == nearest


def test_the_client_hybrid_and_domain_aware_searches_take_the_same_filters(
    db: psycopg.Connection, items: np.ndarray
) -> None:
    filter = {"$or": [{"lang": "de"}, {"tags": {"$in": ["t3"]}}], "price": {"$lt": 40}}
    expected = where(db, "(lang = 'de' OR tags && ARRAY['t3']::varchar[]) AND price < 40")
    hits = client.search(db, "docs", items[3], k=ROWS, filter=filter)
    assert {h.pk[0] for h in hits} == expected
    rows = db.execute(
        "SELECT (pk->>0)::int FROM pyembed.hybrid_search('docs', 'x', %s, k => %s, filter => %s)",
        (items[3], ROWS, Jsonb(filter)),
    ).fetchall()
    assert {r[0] for r in rows} == expected
    rows = db.execute(
        "SELECT (pk->>0)::int FROM pyembed.search_domain_aware('docs', %s, 'de',"
        " domain_column => 'lang', k => %s, filter => %s)",
        (items[3], ROWS, Jsonb(filter)),
    ).fetchall()
    assert {r[0] for r in rows} == expected
    with pytest.raises(psycopg.Error, match='filter names column "nope"'):
        db.execute(
            "SELECT * FROM pyembed.hybrid_search('docs', 'x', %s, filter => %s)",
            (items[3], Jsonb({"nope": 1})),
        )
