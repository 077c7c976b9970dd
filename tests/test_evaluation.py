"""Retrieval metrics against hand-computed values and sentence-transformers, stored evaluations."""

from __future__ import annotations

import math
from pathlib import Path

import psycopg
import pytest

from pyembed import errors
from pyembed.db import database
from pyembed.evaluation import eval_sets, ir_metrics, retrieval
from pyembed.models import loading, registry
from tests.conftest import PACKAGE
from tests.helpers import run_worker

RANKED = ["a", "b", "c", "d"]
JUDGED = {"b": 1.0, "d": 2.0, "z": 1.0}  # z is never retrieved


def test_metrics_match_hand_computed_values() -> None:
    assert ir_metrics.recall_at_k(RANKED, JUDGED, 2) == pytest.approx(1 / 3)
    assert ir_metrics.recall_at_k(RANKED, JUDGED, 4) == pytest.approx(2 / 3)
    assert ir_metrics.precision_at_k(RANKED, JUDGED, 2) == pytest.approx(1 / 2)
    assert ir_metrics.precision_at_k(RANKED, JUDGED, 4) == pytest.approx(2 / 4)
    assert ir_metrics.mrr_at_k(RANKED, JUDGED, 1) == 0.0
    assert ir_metrics.mrr_at_k(RANKED, JUDGED, 4) == pytest.approx(1 / 2)
    dcg = 1 / math.log2(3) + 2 / math.log2(5)
    ideal = 2 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert ir_metrics.ndcg_at_k(RANKED, JUDGED, 4) == pytest.approx(dcg / ideal)
    # AP@4: precision 1/2 at rank 2 and 2/4 at rank 4, over min(k, R) = 3 relevant documents.
    assert ir_metrics.map_at_k(RANKED, JUDGED, 4) == pytest.approx((1 / 2 + 2 / 4) / 3)
    assert (
        ir_metrics.ndcg_at_k(RANKED, {}, 4) == 0.0 and ir_metrics.recall_at_k([], JUDGED, 4) == 0.0
    )
    means = ir_metrics.mean_metrics([(RANKED, JUDGED), (["z"], JUDGED)], ks=(1,))
    assert means["recall@1"] == pytest.approx((0 + 1 / 3) / 2)


TOPICS = ["stone walls", "harbour ships", "apple pie", "city streets", "garden tools"]


@pytest.fixture
def judged(db: psycopg.Connection, db_dsn: str, clean_cache: Path) -> psycopg.Connection:
    """25 documents, 10 queries each with the 5 documents of its topic judged relevant."""
    db.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
    with db.cursor() as cur:
        cur.executemany(
            "INSERT INTO docs VALUES (%s, %s)",
            [(i, f"{TOPICS[i % 5]}, remark {i}") for i in range(25)],
        )
    db.execute("SELECT pyembed.create_collection('docs', 'docs', ARRAY['body'])")
    run_worker(db_dsn)
    eval_sets.create_set(
        db,
        "docs",
        "topics",
        "manual",
        [
            (
                f"tell me about {TOPICS[q % 5]} please {q}",
                {(i,): 1.0 for i in range(25) if i % 5 == q % 5},
            )
            for q in range(10)
        ],
    )
    return db


def test_the_same_numbers_as_sentence_transformers_evaluator(
    judged: psycopg.Connection, db_dsn: str
) -> None:
    from sentence_transformers.sentence_transformer.evaluation import (
        InformationRetrievalEvaluator,
    )

    ours = retrieval.evaluate(database.Database(db_dsn), "docs", modes=("exact",), ks=(1, 3, 10))[
        0
    ].metrics
    the_set = eval_sets.load_set(judged, "docs")
    corpus = {str(i): f"{TOPICS[i % 5]}, remark {i}" for i in range(25)}
    theirs = InformationRetrievalEvaluator(
        queries={str(q.id): q.text for q in the_set.queries},
        corpus=corpus,
        relevant_docs={str(q.id): {str(k[0]) for k in q.judgments} for q in the_set.queries},
        mrr_at_k=[3, 10],
        ndcg_at_k=[3, 10],
        accuracy_at_k=[1],
        precision_recall_at_k=[1, 3, 10],
        map_at_k=[10],
        show_progress_bar=False,
        name="check",
    )(loading.load(judged, 1).model)
    for ours_name, their_name in [
        ("ndcg@10", "ndcg@10"),
        ("ndcg@3", "ndcg@3"),
        ("mrr@10", "mrr@10"),
        ("recall@3", "recall@3"),
        ("precision@3", "precision@3"),
        ("recall@10", "recall@10"),
        ("map@10", "map@10"),
    ]:
        assert ours[ours_name] == pytest.approx(theirs[f"check_cosine_{their_name}"], abs=1e-6), (
            ours_name
        )


def test_runs_are_stored_metric_by_metric_both_ways(
    judged: psycopg.Connection, db_dsn: str
) -> None:
    exact, deployed = retrieval.evaluate(database.Database(db_dsn), "docs", ks=(1, 10, 100))
    assert (exact.mode, deployed.mode) == ("exact", "deployed")
    assert deployed.metrics == pytest.approx(exact.metrics)  # 25 rows: the scan is exact too
    stored = judged.execute(
        "SELECT r.mode, r.status, count(*), min(m.k), max(m.k) FROM pyembed.eval_runs r "
        "JOIN pyembed.eval_metrics m ON m.run_id = r.id "
        "GROUP BY r.id, r.mode, r.status ORDER BY r.id"
    ).fetchall()
    assert stored == [("exact", "done", 15, 1, 100), ("deployed", "done", 15, 1, 100)]
    assert exact.metrics["recall@100"] == 1.0  # k above the corpus size: every row is returned


def test_a_version_without_a_store_is_evaluated_by_embedding_the_rows(
    judged: psycopg.Connection, db_dsn: str
) -> None:
    active = retrieval.evaluate(database.Database(db_dsn), "docs", modes=("exact",), ks=(10,))[0]
    same = registry.register(
        database.Database(db_dsn), "all-MiniLM-L6-v2", PACKAGE
    )  # same weights, no store yet
    loading._models.clear()
    fresh = retrieval.evaluate(database.Database(db_dsn), "docs", version_id=same.id, ks=(10,))
    assert [r.mode for r in fresh] == ["exact"]  # not active: no deployed path to measure
    assert fresh[0].metrics == pytest.approx(active.metrics, abs=1e-6)


def test_bad_eval_sets(judged: psycopg.Connection, db_dsn: str) -> None:
    with pytest.raises(errors.CollectionError, match="no eval set named 'nope'"):
        retrieval.evaluate(database.Database(db_dsn), "docs", eval_set="nope")
    eval_sets.create_set(judged, "docs", "unjudged", "manual", [("a query", {})])
    with pytest.raises(errors.CollectionError, match="has no query with a relevant judgment"):
        retrieval.evaluate(database.Database(db_dsn), "docs", eval_set="unjudged")
    # Judgments of rows that do not exist count against recall and are not an error.
    eval_sets.create_set(
        judged, "docs", "ghosts", "manual", [("stone walls", {(0,): 1.0, (999,): 1.0})]
    )
    ghost = retrieval.evaluate(
        database.Database(db_dsn), "docs", eval_set="ghosts", modes=("exact",), ks=(25,)
    )
    assert ghost[0].metrics["recall@25"] == pytest.approx(0.5)
    assert judged.execute("SELECT count(*) FROM pyembed.eval_runs").fetchone() == (1,)


def test_eval_sets_from_beir_and_jsonl_files(judged: psycopg.Connection, tmp_path: Path) -> None:
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    (beir / "queries.jsonl").write_text(
        '{"_id": "q1", "text": "stone walls please"}\n{"_id": "q2", "text": "apple pie please"}\n'
    )
    (beir / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\t0\t1\nq1\t999\t1\nq2\t2\t2\n"
    )
    set_id, summary = eval_sets.import_beir(judged, "docs", beir)
    assert (summary["queries"], summary["judgments"], summary["unknown_documents"]) == (2, 2, 1)
    loaded = eval_sets.load_set(judged, "docs", "beir beir test")
    assert loaded.id == set_id
    assert {q.text: q.judgments for q in loaded.queries} == {
        "stone walls please": {(0,): 1.0},
        "apple pie please": {(2,): 2.0},
    }  # keys typed like the collection's integer key, so they match search results
    lines = tmp_path / "judged.jsonl"
    lines.write_text(
        '{"query": "city streets", "relevant": [3, 8]}\n{"query": "garden", "relevant": {"4": 2}}\n'
    )
    _, summary = eval_sets.import_jsonl(judged, "docs", lines, name="mine")
    assert summary["judgments"] == 3
    lines.write_text('{"query": "city streets"}\n')
    with pytest.raises(errors.ConfigError, match=r"judged\.jsonl, line 1"):
        eval_sets.import_jsonl(judged, "docs", lines)


def test_judging_by_hand_in_sql(judged: psycopg.Connection, db_dsn: str) -> None:
    judged.execute("SELECT pyembed.judge('docs', 'by hand', 'harbour ships', '[1]', 2)")
    judged.execute("SELECT pyembed.judge('docs', 'by hand', 'harbour ships', '6')")
    loaded = eval_sets.load_set(judged, "docs", "by hand")
    assert loaded.queries[0].judgments == {(1,): 2.0, (6,): 1.0}
    with pytest.raises(psycopg.Error, match="is not a relevance grade"):
        judged.execute("SELECT pyembed.judge('docs', 'by hand', 'x', '[1]', -1)")


def test_cli_import_evaluate_and_compare(
    judged: psycopg.Connection, db_dsn: str, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from pyembed.cli.main import main

    lines = tmp_path / "checks.jsonl"
    lines.write_text('{"query": "harbour ships", "relevant": [1, 6]}\n')
    runner = CliRunner()
    imported = runner.invoke(main, ["evalset", "import-jsonl", "docs", str(lines), "--dsn", db_dsn])
    assert imported.exit_code == 0, imported.output
    measured = runner.invoke(
        main, ["eval", "docs", "--set", "jsonl checks", "--k", "1,5", "--dsn", db_dsn]
    )
    assert measured.exit_code == 0, measured.output
    assert "recall@5" in measured.output and "deployed" in measured.output
    bad = runner.invoke(main, ["eval", "docs", "--k", "a,b", "--dsn", db_dsn])
    assert bad.exit_code == 2 and "not a list of numbers" in bad.output
    assert runner.invoke(main, ["eval", "docs", "--dsn", db_dsn]).exit_code == 0
    leaderboard = judged.execute(
        "SELECT place, model_version, metric, active FROM pyembed.eval_leaderboard"
    ).fetchall()
    assert leaderboard == [(1, "all-MiniLM-L6-v2 v1", "ndcg@10", True)]
