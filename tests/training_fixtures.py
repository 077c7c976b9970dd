"""A collection with a query log and clicks on it: what training and learning tests start from."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from pyembed.models import encoder, loading
from tests.helpers import run_worker

TOPICS = [
    "stone walls",
    "harbour ships",
    "apple pie",
    "city streets",
    "garden tools",
    "mountain snow",
    "river fish",
    "violin music",
]
DOCS = [(i, f"a note about {TOPICS[i % 8]}, number {i}") for i in range(40)]


@pytest.fixture
def logged(
    db: psycopg.Connection,
    db_dsn: str,
    clean_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> psycopg.Connection:
    """A collection with 40 logged searches, each with a click on a row about its topic."""
    monkeypatch.setenv("PYEMBED_TRAINING_DIR", str(tmp_path / "training"))
    db.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
    with db.cursor() as cur:
        cur.executemany("INSERT INTO docs VALUES (%s, %s)", DOCS)
    db.execute("SELECT pyembed.create_collection('docs', 'docs', ARRAY['body'])")
    run_worker(db_dsn)
    enc = encoder.Encoder(loading.load(db, 1))
    texts = [f"looking for {TOPICS[i % 8]} ({i})" for i in range(40)]
    for i, (text, vector) in enumerate(zip(texts, enc.encode_queries(texts), strict=True)):
        rows = db.execute(
            "SELECT query_id, pk FROM pyembed.search('docs', %s, 5, query_text => %s)",
            (vector, text),
        ).fetchall()
        # The user clicks the lowest-ranked result about the topic: the rest above are negatives.
        clicked = [pk for _, pk in rows if pk[0] % 8 == i % 8][-1:] or [rows[-1][1]]
        db.execute("SELECT pyembed.record_feedback(%s, %s)", (rows[0][0], json.dumps(clicked[0])))
    return db
