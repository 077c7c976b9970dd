"""A small embedded collection, 'docs', of four topics: what switch and canary tests start from."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from tests.helpers import run_worker

TOPICS = ["stone walls", "harbours", "apple pie", "city blocks"]
DOCS = [(i, f"document number {i} about {topic}") for i, topic in enumerate(TOPICS * 5)]


@pytest.fixture
def docs(db: psycopg.Connection, db_dsn: str, clean_cache: Path) -> psycopg.Connection:
    """The 20 rows embedded by the packaged model (version 1); a row's topic is its id % 4."""
    db.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
    with db.cursor() as cur:
        cur.executemany("INSERT INTO docs VALUES (%s, %s)", DOCS)
    db.execute("SELECT pyembed.create_collection('docs', 'docs', ARRAY['body'])")
    run_worker(db_dsn)
    return db
