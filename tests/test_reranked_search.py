"""Reranked searches: pyembed.search(..., rerank => N) and hybrid_search reorder their top N
with a reranker inside the database (plpython3u: through the embedding server or in the backend),
logged with both scores; where the database cannot rerank, a clear error."""

from __future__ import annotations

import os
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest
from click.testing import CliRunner
from pgvector.psycopg import register_vector

import pyembed
from pyembed import errors
from pyembed.cli.main import main
from pyembed.db import database, host
from pyembed.evaluation import corpora, eval_sets, ir_metrics, retrieval
from pyembed.models import encoder, loading, registry, rerankers, switches
from pyembed.search import client
from tests import plpython_fixtures
from tests.conftest import PACKAGE
from tests.helpers import embed, run_worker

QUERY = "masonry for a garden"


@pytest.fixture(scope="module")
def judge(pg15: str, cross_encoder: Path) -> Iterator[int]:
    """The docs collection's default reranker (docs-reranker), registered in the PG15 cluster."""
    with psycopg.connect(pg15, autocommit=True) as conn:
        conn.execute("INSERT INTO docs VALUES (4, NULL) ON CONFLICT DO NOTHING")
    yield registry.register(database.Database(pg15), "docs-reranker", str(cross_encoder)).id


def _expected(pg15: str, version_id: int, chunks: list[str]) -> np.ndarray:
    with psycopg.connect(pg15) as conn:
        return rerankers.load(conn, version_id).score(QUERY, chunks)


def _check_reranked(conn: psycopg.Connection, pg15: str, judge: int, sql: str) -> None:
    """The search returns the top candidates by the reranker's score, and logs that order."""
    rows = conn.execute(sql, (QUERY,)).fetchall()
    candidates = conn.execute(
        "SELECT chunk, pk FROM pyembed.search('docs', %s, 3, log => false)",
        (embed(conn, QUERY)[0],),
    ).fetchall()
    scores = _expected(pg15, judge, [chunk for chunk, _ in candidates])
    order = sorted(range(len(candidates)), key=lambda i: (-scores[i], i))[:2]
    assert [row[2] for row in rows] == [candidates[i][1] for i in order]
    np.testing.assert_allclose([row[-1] for row in rows], scores[order], atol=1e-5)
    logged = conn.execute(
        "SELECT reranker_version_id, result_pks, result_rerank_scores, params->>'reranked', "
        "query_text FROM pyembed.query_log WHERE id = %s",
        (rows[0][0],),
    ).fetchone()
    assert logged is not None
    assert (logged[0], logged[1], logged[3], logged[4]) == (
        judge,
        [row[2] for row in rows],
        "3",
        QUERY,
    )
    np.testing.assert_allclose(logged[2], scores[order], atol=1e-5)
    shown = conn.execute(
        "SELECT rerank_score FROM pyembed.query_results WHERE query_id = %s ORDER BY rank",
        (rows[0][0],),
    ).fetchall()
    np.testing.assert_allclose([s for (s,) in shown], scores[order], atol=1e-5)


@pytest.mark.plpython
def test_search_reranks_through_the_embedding_server(pg15: str, pg15_api: str, judge: int) -> None:
    with plpython_fixtures.connect(pg15, embed_url=pg15_api) as conn:
        _check_reranked(
            conn,
            pg15,
            judge,
            "SELECT * FROM pyembed.search('docs', %s, 2, rerank => 3)",
        )
        # The vector form with the query's text; a reranker named (by version) explicitly.
        vector = embed(conn, QUERY)[0]
        rows = conn.execute(
            "SELECT pk, rerank_score FROM pyembed.search('docs', %s, 2, query_text => %s, "
            "rerank => 3, reranker => %s)",
            (vector, QUERY, str(judge)),
        ).fetchall()
        assert len(rows) == 2 and rows[0][1] >= rows[1][1]
        # Unreranked searches say so: no score, nothing in the log's rerank columns.
        plain = conn.execute(
            "SELECT query_id, rerank_score FROM pyembed.search('docs', %s, 2)", (vector,)
        ).fetchall()
        assert [score for _, score in plain] == [None, None]
        assert conn.execute(
            "SELECT reranker_version_id, result_rerank_scores FROM pyembed.query_log WHERE id = %s",
            (plain[0][0],),
        ).fetchone() == (None, None)
        # The filter applies before the reranker sees a row.
        filtered = conn.execute(
            "SELECT pk FROM pyembed.search('docs', %s, 2, filter => '{\"id\": {\"$in\": [2, 3]}}', "
            "query_text => %s, rerank => 3)",
            (vector, QUERY),
        ).fetchall()
        assert sorted(pk for (pk,) in filtered) == [[2], [3]]
        # The Python client passes it through.
        hits = client.search(conn, "docs", vector, 2, query_text=QUERY, rerank=3)
        assert hits[0].rerank_score is not None and hits[0].pk == rows[0][0]


@pytest.mark.plpython
def test_hybrid_search_reranks_its_fused_candidates(pg15: str, pg15_api: str, judge: int) -> None:
    with plpython_fixtures.connect(pg15, embed_url=pg15_api) as conn:
        rows = conn.execute(
            "SELECT query_id, rank, pk, score, rerank_score FROM pyembed.hybrid_search("
            "'docs', %s, k => 2, rerank => 3)",
            (QUERY,),
        ).fetchall()
        fused = conn.execute(
            "SELECT pk, chunk FROM pyembed.hybrid_search('docs', %s, k => 3, log => false)",
            (QUERY,),
        ).fetchall()
        scores = _expected(pg15, judge, [chunk for _, chunk in fused])
        order = sorted(range(len(fused)), key=lambda i: (-scores[i], i))[:2]
        assert [row[2] for row in rows] == [fused[i][0] for i in order]
        np.testing.assert_allclose([row[4] for row in rows], scores[order], atol=1e-5)
        logged = conn.execute(
            "SELECT reranker_version_id, params->>'reranked', params->>'rerank', "
            "cardinality(result_rerank_scores) FROM pyembed.query_log WHERE id = %s",
            (rows[0][0],),
        ).fetchone()
        assert logged == (judge, "3", "hybrid", 2)


@pytest.mark.plpython
def test_local_mode_reranks_inside_the_backend(pg15: str, judge: int) -> None:
    paths = [sysconfig.get_paths()["purelib"], str(Path(pyembed.__file__).resolve().parents[1])]
    if os.geteuid() == 0:
        for path in paths:
            host.open_parents(Path(path))
    with plpython_fixtures.connect(pg15) as admin:
        admin.execute("CREATE ROLE rerank_reader LOGIN IN ROLE pyembed_reader")
        admin.execute("GRANT SELECT ON docs TO pyembed_reader")
    try:
        plpython_fixtures.connect(pg15, embed_mode="local", python_path=":".join(paths)).close()
        with psycopg.connect(pg15.replace("postgres@", "rerank_reader@"), autocommit=True) as conn:
            register_vector(conn)
            notices: list[str] = []
            conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
            _check_reranked(
                conn,
                pg15,
                judge,
                "SELECT * FROM pyembed.search('docs', %s, 2, rerank => 3)",
            )
            assert any("pyembed.rerank loaded docs-reranker" in n for n in notices)
            scores = conn.execute(
                "SELECT pyembed.rerank(%s, ARRAY['a stone wall', NULL, 'apple pie'], "
                "'docs-reranker')",
                (QUERY,),
            ).fetchone()
            assert scores is not None and scores[0][1] is None
            np.testing.assert_allclose(
                [scores[0][0], scores[0][2]],
                _expected(pg15, judge, ["a stone wall", "apple pie"]),
                atol=1e-5,
            )
            # What a reader may ask the model endpoint for: the two model calls, nothing else.
            with pytest.raises(psycopg.Error, match="/admin is not a model endpoint"):
                conn.execute("SELECT pyembed._model_call('x', '/admin', '{}')")
            with pytest.raises(psycopg.Error, match="no reranker named 'all-MiniLM-L6-v2'"):
                conn.execute("SELECT pyembed.rerank('x', ARRAY['y'], 'all-MiniLM-L6-v2')")
    finally:
        with psycopg.connect(pg15, autocommit=True) as admin:
            admin.execute("DROP OWNED BY rerank_reader")
            admin.execute("DROP ROLE rerank_reader")
        plpython_fixtures.connect(pg15).close()


@pytest.mark.plpython
@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            "pyembed.search('docs', 'walls', 5, rerank => 3)",
            "InvalidParameterValue",
            r"rerank => 3 is out of range",
        ),
        (
            "pyembed.search('docs', 'walls', 2, rerank => 100000)",
            "InvalidParameterValue",
            r"rerank => 100000 is out of range",
        ),
        (
            "pyembed.search('docs', %(v)s, 2, rerank => 3)",
            "NullValueNotAllowed",
            r"reranking needs the query text",
        ),
        (
            "pyembed.search('docs', 'walls', 2, reranker => 'docs-reranker')",
            "InvalidParameterValue",
            r"names the reranker of rerank => N, which is missing",
        ),
        (
            "pyembed.search('docs', 'walls', 2, rerank => 3, reranker => 'nope')",
            "UndefinedObject",
            r'no reranker "nope" for collection "docs"',
        ),
        (
            "pyembed.search('docs', 'walls', 2, rerank => 3, reranker => 'all-MiniLM-L6-v2')",
            "WrongObjectType",
            r"all-MiniLM-L6-v2 v1 is an embedding model, not a reranker",
        ),
        (
            "pyembed.hybrid_search('docs', 'walls', k => 2, reranker => 'x')",
            "InvalidParameterValue",
            r"names the reranker of rerank => N",
        ),
    ],
)
def test_bad_rerank_arguments_are_named(
    pg15: str,
    pg15_api: str,
    judge: int,
    call: str,
    error: str,
    message: str,
) -> None:
    with plpython_fixtures.connect(pg15, embed_url=pg15_api) as conn:
        vector = embed(conn, "walls")[0]
        with pytest.raises(getattr(psycopg.errors, error), match=message):
            conn.execute(f"SELECT * FROM {call}", {"v": vector})  # noqa: S608 - test's own SQL


def test_a_database_without_plpython_says_how_to_rerank(db: psycopg.Connection) -> None:
    db.execute("CREATE TABLE notes (id int PRIMARY KEY, body text)")
    db.execute("INSERT INTO notes VALUES (1, 'a stone wall')")
    db.execute("SELECT pyembed.create_collection('notes', 'notes', ARRAY['body'])")
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="cannot rerank") as caught:
        db.execute(
            "SELECT * FROM pyembed.search('notes', %s, 1, query_text => 'x', rerank => 5)",
            (np.ones(384, dtype=np.float32),),
        )
    assert "/v1/rerank" in (caught.value.diag.message_hint or "")


NOTES = [
    (1, "a stone wall around the garden"),
    (2, "apple pie with cream"),
    (3, "the harbour at night"),
    (4, "granite blocks for a garden path"),
    (5, "a recipe for plum cake"),
    (6, "boats moored in the port"),
]
JUDGED = [
    ("masonry in the garden", {(4,): 1.0}),
    ("a dessert with fruit", {(5,): 1.0}),
    ("ships at the quay", {(6,): 1.0}),
]


@pytest.fixture
def notes(db: psycopg.Connection, db_dsn: str, cross_encoder: Path) -> int:
    """A collection of six notes with a three-query eval set; returns its reranker's id."""
    db.execute("CREATE TABLE notes (id int PRIMARY KEY, body text)")
    db.cursor().executemany("INSERT INTO notes VALUES (%s, %s)", NOTES)
    db.execute("SELECT pyembed.create_collection('notes', 'notes', ARRAY['body'])")
    run_worker(db_dsn)
    eval_sets.create_set(db, "notes", "judged", "manual", JUDGED)
    return registry.register(database.Database(db_dsn), "notes-reranker", str(cross_encoder)).id


def test_the_reranked_mode_is_evaluated_stored_and_gated(
    db: psycopg.Connection, db_dsn: str, notes: int
) -> None:
    done = retrieval.evaluate(
        database.Database(db_dsn), "notes", modes=("exact", "reranked"), rerank=3, ks=(1, 3, 6, 10)
    )
    exact, reranked = done
    assert (exact.mode, reranked.mode) == ("exact", "reranked")
    # Its ranking is the exact top 3 reordered by the reranker, then the exact rest.
    vectors = embed(db, *(text for text, _ in JUDGED))
    corpus = corpora.Corpus.load(db, "notes", encoder.Encoder(loading.load(db, 1)), 256, 32)
    scorer = rerankers.load(db, notes)
    runs = []
    for (text, judged), hits in zip(JUDGED, corpus.top_chunks(vectors, 6, "cosine"), strict=True):
        assert [chunk for _, chunk in hits] == [dict(NOTES)[key[0]] for key, _ in hits]
        scores = scorer.score(text, [chunk for _, chunk in hits[:3]])
        order = sorted(range(3), key=lambda i: (-scores[i], i))
        runs.append(([hits[i][0] for i in order] + [key for key, _ in hits[3:]], judged))
    assert reranked.metrics == pytest.approx(ir_metrics.mean_metrics(runs, (1, 3, 6, 10)))
    assert reranked.metrics["recall@6"] == exact.metrics["recall@6"]
    stored = db.execute(
        "SELECT mode, reranker_version_id, params->>'rerank', params->>'reranker' "
        "FROM pyembed.eval_runs WHERE id = %s",
        (reranked.run_id,),
    ).fetchone()
    assert stored == ("reranked", notes, "3", f"notes-reranker v1 (id {notes})")
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute(
            "UPDATE pyembed.eval_runs SET reranker_version_id = NULL WHERE mode = 'reranked'"
        )
    # The gate compares reranked pipelines when the collection says so, with the same reranker.
    v2 = registry.register(database.Database(db_dsn), "all-MiniLM-L6-v2", PACKAGE)
    db.execute(
        "SELECT pyembed.alter_collection('notes', settings => '{\"gate_mode\": \"reranked\"}')"
    )
    with pytest.raises(errors.PyembedError, match="no reranked evaluation on ndcg@10"):
        switches.gate(db, "notes", v2.id)
    retrieval.evaluate(
        database.Database(db_dsn), "notes", version_id=v2.id, modes=("reranked",), rerank=3
    )
    checked = switches.gate(db, "notes", v2.id)
    assert checked.mode == "reranked" and checked.metric == "ndcg@10"
    board = db.execute(
        "SELECT model_version_id, reranker FROM pyembed.eval_leaderboard ORDER BY model_version_id"
    ).fetchall()
    assert board == [(1, "notes-reranker v1"), (v2.id, "notes-reranker v1")]
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="gate_mode"):
        db.execute(
            "SELECT pyembed.alter_collection('notes', settings => '{\"gate_mode\": \"deployed\"}')"
        )
    # The CLI: a named reranker, and an embedding model refused as one.
    result = CliRunner().invoke(
        main,
        ["eval", "notes", "--dsn", db_dsn, "--mode", "reranked", "--reranker", "notes-reranker@1"],
    )
    assert result.exit_code == 0 and "reranked (run" in result.output, result.output
    result = CliRunner().invoke(
        main,
        ["eval", "notes", "--dsn", db_dsn, "--mode", "reranked", "--reranker", "all-MiniLM-L6-v2"],
    )
    assert result.exit_code != 0 and "is an embedding model, not a reranker" in result.output


def test_a_collection_names_its_reranker_in_its_settings(
    db: psycopg.Connection,
    db_dsn: str,
    notes: int,
    cross_encoder: Path,
) -> None:
    other = registry.register(database.Database(db_dsn), "judge", str(cross_encoder)).id
    row = db.execute(
        "SELECT pyembed._reranker_version(c, NULL) FROM pyembed.collections c WHERE name = 'notes'"
    ).fetchone()
    assert row == (notes,)
    db.execute("SELECT pyembed.alter_collection('notes', settings => '{\"reranker\": \"judge\"}')")
    done = retrieval.evaluate(database.Database(db_dsn), "notes", modes=("reranked",))
    assert db.execute(
        "SELECT reranker_version_id FROM pyembed.eval_runs WHERE id = %s", (done[0].run_id,)
    ).fetchone() == (other,)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="reranker"):
        db.execute("SELECT pyembed.alter_collection('notes', settings => '{\"reranker\": 5}')")
