"""Fine-tuning from the query log: pair mining, held-out split, sources, resume, registration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from pyembed import errors
from pyembed.cli.main import main
from pyembed.db import database
from pyembed.training import fitting, losses, runs, sources
from pyembed.training import options as train_options


def test_pairs_from_feedback_with_hard_negatives_and_a_held_out_split(
    logged: psycopg.Connection,
) -> None:
    data = sources.from_feedback(logged, "docs", negatives_per_pair=2, held_out_fraction=0.25)
    assert data.summary["queries_with_feedback"] == 40
    assert (data.summary["train_queries"], data.summary["held_out_queries"]) == (30, 10)
    held = {text for text, _ in data.held_out}
    assert held.isdisjoint(p.query for p in data.pairs)  # split before training, by query
    assert len(data.pairs) == 30
    for pair in data.pairs:
        topic = pair.query.split("for ")[1].split(" (")[0]
        assert topic in pair.positive
        # Negatives are rows the search showed above the clicked one, never the clicked row.
        assert pair.positive not in pair.negatives and len(pair.negatives) <= 2
    assert data.summary["pairs_with_negatives"] > 0
    # The same seed splits the same way.
    again = sources.from_feedback(logged, "docs", held_out_fraction=0.25)
    assert {t for t, _ in again.held_out} == held


def test_feedback_on_deleted_rows_and_thin_evidence(logged: psycopg.Connection) -> None:
    logged.execute("DELETE FROM docs WHERE id < 8")
    data = sources.from_feedback(logged, "docs", held_out_fraction=0.0)
    assert data.summary["clicked_rows_deleted"] > 0
    assert all(not p.positive.endswith(tuple(f"number {i}" for i in range(8))) for p in data.pairs)
    with pytest.raises(errors.PyembedError, match="searches with enough feedback"):
        sources.from_feedback(logged, "docs", min_signals=2)


def test_no_feedback_says_what_is_needed(db: psycopg.Connection) -> None:
    db.execute("CREATE TABLE empty (id int PRIMARY KEY, body text)")
    db.execute("SELECT pyembed.create_collection('empty', 'empty', ARRAY['body'])")
    with pytest.raises(errors.PyembedError, match="0 searches with enough feedback") as caught:
        sources.from_feedback(db, "empty")
    assert "record_feedback" in (caught.value.hint or "")


def test_jsonl_pairs_report_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text(
        '{"query": "q1", "positive": "p1", "negative": "n1"}\n'
        '{"anchor": "q2", "positive": "p2"}\n'
        "not json\n"
        '{"query": "q3"}\n'
    )
    with pytest.raises(errors.ConfigError, match=r"pairs\.jsonl, line 3"):
        sources.from_jsonl(path)
    data = sources.from_jsonl(path, on_error="skip")
    assert [(p.query, p.positive, p.negatives) for p in data.pairs] == [
        ("q1", "p1", ("n1",)),
        ("q2", "p2", ()),
    ]
    assert data.summary["skipped_lines"] == [3, 4]


def test_synthetic_pairs_from_title_and_body(db: psycopg.Connection) -> None:
    db.execute("CREATE TABLE articles (id int PRIMARY KEY, title text, body text)")
    db.execute(
        "INSERT INTO articles VALUES (1, 'Stone walls', 'How to build them.'), "
        "(2, 'Apple pie', 'Bake it slowly.')"
    )
    db.execute("SELECT pyembed.create_collection('articles', 'articles', ARRAY['title', 'body'])")
    data = sources.synthetic(db, "articles")
    assert sorted((p.query, p.positive) for p in data.pairs) == [
        ("Apple pie", "Bake it slowly."),
        ("Stone walls", "How to build them."),
    ]
    db.execute("CREATE TABLE notes (id int PRIMARY KEY, body text)")
    db.execute("INSERT INTO notes VALUES (1, 'one line')")
    db.execute("SELECT pyembed.create_collection('notes', 'notes', ARRAY['body'])")
    with pytest.raises(errors.PyembedError, match="no rows with two or more text parts"):
        sources.synthetic(db, "notes")


@pytest.mark.parametrize("loss", [name for name in losses.LOSSES if name != "distill"])
def test_every_loss_gets_the_columns_it_needs(loss: str) -> None:
    pairs = [
        sources.Pair(f"q{i}", f"p{i} words here", (f"n{i}",) if i % 2 else ()) for i in range(6)
    ]
    data = losses.columns(loss, pairs, use_negatives=True)
    triple, labelled = {"anchor", "positive", "negative"}, {"sentence1", "sentence2", "label"}
    expected = {
        "mnrl": triple,
        "cached_mnrl": triple,
        "matryoshka": triple,
        "triplet": triple,
        "cosine": labelled,
        "contrastive": labelled,
        "online_contrastive": labelled,
        "tsdae": {"damaged", "original"},
    }[loss]
    assert set(data) == expected
    lengths = {len(column) for column in data.values()}
    assert len(lengths) == 1 and lengths.pop() > 0
    if "negative" in data:
        assert all(n for n in data["negative"])  # pairs without one get a random negative


def _options(**kwargs: Any) -> train_options.TrainOptions:
    return train_options.TrainOptions(batch_size=8, epochs=1, save_steps=2, **kwargs)


def test_train_registers_evaluates_and_records_the_run(
    logged: psycopg.Connection, db_dsn: str
) -> None:
    result = runs.train(
        database.Database(db_dsn), "docs", options=_options(), promote_if_better=True
    )
    run = logged.execute(
        "SELECT status, loss, base_version_id, result_version_id, eval_set_id, "
        "data_summary->>'pairs', peak_memory_bytes > 0 FROM pyembed.training_runs"
    ).fetchone()
    assert run == ("done", "mnrl", 1, result.version_id, result.eval_set_id, "36", True)
    version = logged.execute(
        "SELECT parent_version_id, kind, produced_by->>'training_run', status "
        "FROM pyembed.model_versions WHERE id = %s",
        (result.version_id,),
    ).fetchone()
    assert version == (1, "fine_tuned", str(result.run_id), "ready")
    steps = logged.execute(
        "SELECT count(*), bool_and(loss IS NOT NULL OR learning_rate IS NOT NULL) "
        "FROM pyembed.training_metrics WHERE run_id = %s",
        (result.run_id,),
    ).fetchone()
    assert steps is not None and steps[0] >= 2 and steps[1]
    # Both versions measured on the same held-out queries, metric by metric.
    evaluated = logged.execute(
        "SELECT r.model_version_id, m.value FROM pyembed.eval_runs r "
        "JOIN pyembed.eval_metrics m ON m.run_id = r.id "
        "WHERE r.eval_set_id = %s AND m.metric = 'ndcg' AND m.k = 10 ORDER BY r.id",
        (result.eval_set_id,),
    ).fetchall()
    assert [v for v, _ in evaluated] == [1, result.version_id]
    assert result.base_metrics["ndcg@10"] == pytest.approx(evaluated[0][1])
    active = logged.execute("SELECT active_version_id FROM pyembed.collections").fetchone()
    assert (active == (result.version_id,)) == result.promoted
    # The gate: better, by a paired test on the held-out queries (stored, shown against the parent).
    shown = logged.execute(
        "SELECT queries, p_value, delta FROM pyembed.eval_vs_parent "
        "WHERE model_version_id = %s AND label = 'ndcg@10' AND mode = 'exact'",
        (result.version_id,),
    ).fetchone()
    assert shown is not None and shown[0] == result.summary["held_out_queries"]
    better = result.new_metrics["ndcg@10"] > result.base_metrics["ndcg@10"]
    assert result.promoted == (better and shown[1] < 0.05)
    assert shown[2] == pytest.approx(result.new_metrics["ndcg@10"] - result.base_metrics["ndcg@10"])


def test_the_cli_trains_with_hard_negatives_under_the_cached_loss(
    logged: psycopg.Connection, db_dsn: str
) -> None:
    args = ["train", "docs", "--dsn", db_dsn, "--loss", "cached_mnrl", "--negatives"]
    args += ["--mini-batch-size", "4", "--batch-size", "8"]
    done = CliRunner().invoke(main, args)
    assert done.exit_code == 0, done.output
    params, pairs = logged.execute(
        "SELECT params, data_summary FROM pyembed.training_runs"
    ).fetchone()  # type: ignore[misc]
    assert (params["loss"], params["mini_batch_size"], params["use_negatives"]) == (
        "cached_mnrl",
        4,
        True,
    )
    assert pairs["pairs_with_negatives"] > 0  # mined because --negatives asked for them


def test_a_killed_run_resumes_and_registers_nothing_half_way(
    logged: psycopg.Connection, db_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import TrainerCallback

    real = fitting.metrics_callback

    class Killer(TrainerCallback):  # type: ignore[misc]
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step == 3:  # after the checkpoint at step 2
                raise KeyboardInterrupt

    monkeypatch.setattr(fitting, "metrics_callback", lambda conn, run_id: Killer())
    with pytest.raises(KeyboardInterrupt):
        runs.train(database.Database(db_dsn), "docs", options=_options())
    run_id, status = logged.execute("SELECT id, status FROM pyembed.training_runs").fetchone()  # type: ignore[misc]
    assert status == "interrupted"
    assert logged.execute("SELECT count(*) FROM pyembed.model_versions").fetchone() == (1,)
    monkeypatch.setattr(fitting, "metrics_callback", real)
    result = runs.train(database.Database(db_dsn), "docs", resume_run_id=run_id)
    assert result.run_id == run_id
    assert logged.execute(
        "SELECT status, result_version_id FROM pyembed.training_runs"
    ).fetchone() == ("done", result.version_id)
    with pytest.raises(errors.PyembedError, match=f"training run {run_id} is done"):
        runs.train(database.Database(db_dsn), "docs", resume_run_id=run_id)
