"""Rerankers: cross-encoder folders registered, listed, exported and retired like embedding
models, scored when loaded, kept out of everything that embeds, and trained from the log."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
import pytest
from click.testing import CliRunner

from pyembed import errors
from pyembed.cli.main import main
from pyembed.db import database, migrate
from pyembed.models import artifacts, folders, loading, registry, rerankers
from pyembed.serve import rerank_api
from pyembed.training import fitting, reranker_runs, runs, sources
from tests.conftest import PACKAGE
from tests.test_server import api  # noqa: F401 - the fixture of a running server


def test_a_cross_encoder_registers_as_a_reranker_and_scores_pairs(
    db: psycopg.Connection, db_dsn: str, cross_encoder: Path, clean_cache: Path, tmp_path: Path
) -> None:
    done = registry.register(database.Database(db_dsn), "judge", str(cross_encoder))
    assert done.sha256 == artifacts.manifest_sha256(artifacts.manifest(cross_encoder))
    row = db.execute(
        "SELECT m.task, m.dimensions, m.max_seq_length, v.kind, v.status FROM pyembed.models m "
        "JOIN pyembed.model_versions v ON v.model_id = m.id WHERE v.id = %s",
        (done.id,),
    ).fetchone()
    assert row == ("reranker", None, 128, "pretrained", "ready")
    scorer = rerankers.load(db, done.id)
    texts = ["a stone wall", "the harbour at night", "apple pie"]
    scores = scorer.score("masonry", texts)
    assert scores.shape == (3,) and np.all((scores >= 0) & (scores <= 1))
    assert scorer.score("masonry", []).shape == (0,)
    # Listed with its task; exported file for file.
    result = CliRunner().invoke(main, ["models", "list", "--dsn", db_dsn, "--json"])
    assert result.exit_code == 0, result.output
    listed = {r["model"]: r for r in json.loads(result.output)}
    assert (listed["judge"]["task"], listed["judge"]["dimensions"]) == ("reranker", None)
    assert listed["all-MiniLM-L6-v2"]["task"] == "embedding"
    out = registry.export(database.Database(db_dsn), done.id, tmp_path / "exported")
    assert artifacts.manifest_sha256(artifacts.manifest(out)) == done.sha256
    assert registry.retire(database.Database(db_dsn), done.id, "replaced") == 0


def test_a_reranker_embeds_nothing_and_an_embedder_does_not_rerank(
    db: psycopg.Connection, db_dsn: str, cross_encoder: Path
) -> None:
    done = registry.register(database.Database(db_dsn), "judge", str(cross_encoder))
    with pytest.raises(errors.ModelError, match="is a reranker: it scores"):
        loading.load(db, done.id)
    with pytest.raises(errors.ModelError, match="is an embedding model, not a reranker"):
        rerankers.load(db, 1)
    # One name, one task: a family's versions are all embedders or all rerankers.
    with pytest.raises(errors.ModelError, match=r"is an embedding model, but .* is a reranker"):
        registry.register(database.Database(db_dsn), "all-MiniLM-L6-v2", str(cross_encoder))
    with pytest.raises(errors.ModelError, match=r"is a reranker model, but .* is an embedding"):
        registry.register(database.Database(db_dsn), "judge", PACKAGE)
    db.execute("CREATE TABLE notes (id int PRIMARY KEY, body text)")
    with pytest.raises(psycopg.errors.WrongObjectType, match='model "judge" is a reranker'):
        db.execute(
            "SELECT pyembed.create_collection('notes', 'notes', ARRAY['body'], model => 'judge')"
        )
    db.execute("SELECT pyembed.create_collection('notes', 'notes', ARRAY['body'])")
    with pytest.raises(psycopg.errors.WrongObjectType, match="is a reranker, which embeds"):
        db.execute(
            "SELECT pyembed.begin_switch('notes', %s, allow_other_model => true)", (done.id,)
        )
    # And the catalog holds to it whatever the API: a collection refers to an embedding model.
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="collections_model_embeds"):
        db.execute(
            "UPDATE pyembed.collections SET model_id = "
            "(SELECT id FROM pyembed.models WHERE name = 'judge')"
        )


def test_a_classifier_is_not_a_reranker(db_dsn: str, cross_encoder: Path, tmp_path: Path) -> None:
    from sentence_transformers.cross_encoder import CrossEncoder

    CrossEncoder(str(folders.resolve_source(PACKAGE)), num_labels=3).save_pretrained(str(tmp_path))
    assert folders.is_cross_encoder(tmp_path)
    with pytest.raises(errors.ModelError, match="classifier into 3 labels"):
        registry.register(database.Database(db_dsn), "nli", str(tmp_path))


def test_a_downgrade_below_0016_takes_the_rerankers_along(
    db: psycopg.Connection, db_dsn: str, cross_encoder: Path
) -> None:
    registry.register(database.Database(db_dsn), "judge", str(cross_encoder))
    migrate.downgrade(database.Database(db_dsn), "0015")
    assert db.execute("SELECT name FROM pyembed.models").fetchall() == [("all-MiniLM-L6-v2",)]
    migrate.upgrade(database.Database(db_dsn))
    tasks = db.execute("SELECT task, dimensions FROM pyembed.models").fetchall()
    assert tasks == [("embedding", 384)]


@pytest.mark.usefixtures("logged")
def test_a_reranker_trains_from_the_log_and_then_from_itself(
    db: psycopg.Connection, db_dsn: str
) -> None:
    small = {"epochs": 1.0, "batch_size": 8, "negatives": 2, "max_seq_length": 48}
    first = reranker_runs.train(
        database.Database(db_dsn), "docs", options=reranker_runs.RerankerOptions(**small)
    )
    assert first.model == "docs-reranker"
    run = db.execute(
        "SELECT status, loss, base_version_id, result_version_id, eval_set_id, "
        "data_summary->>'task' FROM pyembed.training_runs WHERE id = %s",
        (first.run_id,),
    ).fetchone()
    assert run == ("done", "bce", 1, first.version_id, first.eval_set_id, "reranker")
    assert first.eval_set_id is not None  # its held-out queries, as embedding training keeps
    steps = db.execute(
        "SELECT count(*) FROM pyembed.training_metrics WHERE run_id = %s", (first.run_id,)
    ).fetchone()
    assert steps is not None and steps[0] > 0
    lineage = db.execute(
        "SELECT m.task, v.version, v.kind, v.parent_version_id, v.produced_by->>'started_from' "
        "FROM pyembed.model_versions v JOIN pyembed.models m ON m.id = v.model_id WHERE v.id = %s",
        (first.version_id,),
    ).fetchone()
    assert lineage == ("reranker", 1, "fine_tuned", 1, "embedding model")
    scorer = rerankers.load(db, first.version_id)
    assert scorer.score("stone walls", ["a note about stone walls", "apple pie"]).shape == (2,)
    # From itself, with the listwise loss: the next version of the same reranker.
    second = reranker_runs.train(
        database.Database(db_dsn),
        "docs",
        base=first.version_id,
        options=reranker_runs.RerankerOptions(**{**small, "loss": "mnrl"}),
    )
    parent = db.execute(
        "SELECT version, parent_version_id FROM pyembed.model_versions WHERE id = %s",
        (second.version_id,),
    ).fetchone()
    assert (second.model, parent) == ("docs-reranker", (2, first.version_id))
    # From the command line, with the same defaults.
    result = CliRunner().invoke(
        main,
        [
            "train-reranker",
            "docs",
            "--dsn",
            db_dsn,
            "--name",
            "judge",
            "--negatives",
            "2",
            "--batch-size",
            "8",
            "--max-seq-length",
            "48",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "reranker trained" in result.output
    with pytest.raises(errors.PyembedError, match="trained a reranker") as caught:
        runs.train(database.Database(db_dsn), "docs", resume_run_id=first.run_id)
    assert f"pyembed train-reranker docs --resume {first.run_id}" in str(caught.value)


def test_a_killed_reranker_run_resumes_from_its_checkpoint(
    logged: psycopg.Connection,
    db_dsn: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from transformers import TrainerCallback

    real = fitting.metrics_callback

    class Killer(TrainerCallback):  # type: ignore[misc]
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step == 3:  # after the checkpoint at step 2
                raise KeyboardInterrupt

    small = reranker_runs.RerankerOptions(
        negatives=2, batch_size=4, max_seq_length=48, save_steps=2, epochs=2
    )
    monkeypatch.setattr(fitting, "metrics_callback", lambda conn, run_id: Killer())
    with pytest.raises(KeyboardInterrupt):
        reranker_runs.train(database.Database(db_dsn), "docs", name="judge", options=small)
    row = logged.execute("SELECT id, status FROM pyembed.training_runs").fetchone()
    assert row is not None and row[1] == "interrupted"
    run_id = row[0]
    judges = logged.execute("SELECT count(*) FROM pyembed.models WHERE name = 'judge'")
    assert judges.fetchone() == (0,)
    monkeypatch.setattr(fitting, "metrics_callback", real)
    with pytest.raises(errors.PyembedError, match="trained a reranker"):
        runs.train(database.Database(db_dsn), "docs", resume_run_id=run_id)
    result = CliRunner().invoke(
        main, ["train-reranker", "docs", "--dsn", db_dsn, "--resume", str(run_id)]
    )
    assert result.exit_code == 0, result.output
    done = logged.execute(
        "SELECT r.status, m.name, v.parent_version_id, r.params->>'save_steps' "
        "FROM pyembed.training_runs r JOIN pyembed.model_versions v ON v.id = r.result_version_id "
        "JOIN pyembed.models m ON m.id = v.model_id WHERE r.id = %s",
        (run_id,),
    ).fetchone()
    assert done == ("done", "judge", 1, "2")
    with pytest.raises(errors.PyembedError, match=f"training run {run_id} is done"):
        reranker_runs.train(database.Database(db_dsn), "docs", resume_run_id=run_id)
    embedding_run = logged.execute(
        "INSERT INTO pyembed.training_runs (collection_id, base_version_id, loss, status) "
        "SELECT id, active_version_id, 'mnrl', 'interrupted' FROM pyembed.collections "
        "WHERE name = 'docs' RETURNING id"
    ).fetchone()
    assert embedding_run is not None
    with pytest.raises(errors.PyembedError, match="trained an embedder"):
        reranker_runs.train(database.Database(db_dsn), "docs", resume_run_id=embedding_run[0])


def test_reranker_training_refuses_what_it_cannot_learn_from() -> None:
    with pytest.raises(errors.ConfigError, match="unknown reranker loss"):
        reranker_runs.RerankerOptions(loss="mse")
    with pytest.raises(errors.ConfigError, match="1 to 64 negatives"):
        reranker_runs.RerankerOptions(negatives=0)
    pairs = [sources.Pair("q1", "a"), sources.Pair("q2", "b")]
    with pytest.raises(errors.PyembedError, match="too few for 2 negatives"):
        reranker_runs.with_negatives(pairs, 2, seed=0)
    examples = reranker_runs.with_negatives(
        [sources.Pair("q1", "a", ("x", "a")), sources.Pair("q2", "b"), sources.Pair("q3", "c")],
        2,
        seed=0,
    )
    # Shown-above rows first, never the clicked text, always as many as asked.
    assert examples[0][2][0] == "x" and all(
        len(n) == 2 and positive not in n for _, positive, n in examples
    )


def test_the_rerank_endpoint_answers_in_cohere_and_jina_shape(
    db: psycopg.Connection, db_dsn: str, cross_encoder: Path, request: pytest.FixtureRequest
) -> None:
    base_url = request.getfixturevalue("api")  # test_server's running server
    done = registry.register(database.Database(db_dsn), "judge", str(cross_encoder))
    texts = ["a stone wall", "the harbour at night", "apple pie"]
    expected = rerankers.load(db, done.id).score("masonry", texts)
    best = [int(i) for i in np.argsort(-expected, kind="stable")[:2]]
    for model in ("judge", "judge@1", done.id):
        answer = httpx.post(
            f"{base_url}/v1/rerank",
            json={
                "model": model,
                "query": "masonry",
                "documents": [texts[0], {"text": texts[1]}, texts[2]],
                "top_n": 2,
                "return_documents": True,
            },
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert [r["index"] for r in body["results"]] == best
        scores = [r["relevance_score"] for r in body["results"]]
        np.testing.assert_allclose(scores, expected[best], atol=1e-5)
        assert body["results"][0]["document"] == {"text": texts[best[0]]}
        assert body["usage"]["total_tokens"] > 0 and body["id"]
    plain = httpx.post(
        f"{base_url}/v1/rerank", json={"model": "judge", "query": "masonry", "documents": texts}
    ).json()
    assert len(plain["results"]) == 3 and "document" not in plain["results"][0]
    good = {"model": "judge", "query": "masonry", "documents": texts}
    for change, status, words in [
        ({"model": "nope"}, 404, "no model version"),
        ({"model": "all-MiniLM-L6-v2"}, 400, "not a reranker"),
        ({"query": " "}, 400, "'query' must be"),
        ({"documents": []}, 400, "'documents' must be"),
        ({"documents": ["x", 7]}, 400, r"documents\[1\] is neither"),
        ({"documents": ["x"] * 1001}, 400, "more than 1000"),
        ({"top_n": 0}, 400, "'top_n' must be"),
    ]:
        answer = httpx.post(f"{base_url}/v1/rerank", json={**good, **change})
        assert answer.status_code == status, (change, answer.text)
        assert re.search(words, answer.json()["error"]["message"]), answer.text
    # An embedding request that names a reranker is the caller's mistake, said as such.
    answer = httpx.post(f"{base_url}/v1/embeddings", json={"model": "judge", "input": "x"})
    assert answer.status_code == 400 and "is a reranker" in answer.json()["error"]["message"]


def test_the_endpoint_takes_a_new_reranker_version_once_its_name_expires(
    db: psycopg.Connection, db_dsn: str, cross_encoder: Path
) -> None:
    first = registry.register(database.Database(db_dsn), "judge", str(cross_encoder))
    names = rerank_api.Rerankers(database.Database(db_dsn), resolve_seconds=3600)
    assert names.get("judge").version.id == first.id
    second = registry.register(database.Database(db_dsn), "judge", str(cross_encoder))
    assert names.get("judge").version.id == first.id  # trusted while the name is fresh
    fresh = rerank_api.Rerankers(database.Database(db_dsn), resolve_seconds=0)
    assert fresh.get("judge").version.id == second.id
    assert fresh.get(str(first.id)).version.id == first.id
