"""Distillation from an endpoint: the student learns the teacher's stored vectors (nothing paid
again), dimensions are projected, and the run records the cosine to the teacher."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import psycopg
import pytest

from pyembed import errors
from pyembed.db import database
from pyembed.models import endpoint_client, endpoint_registry, registry
from pyembed.training import distillation, options, runs
from tests import fake_endpoint
from tests.helpers import embed, run_worker
from tests.training_fixtures import DOCS, TOPICS


def test_projection_keeps_the_leading_directions_or_pads() -> None:
    rng = np.random.default_rng(0)
    # 200 vectors that live in 4 directions of a 16-d space, plus a little noise.
    basis = np.linalg.qr(rng.normal(size=(16, 4)))[0].T
    vectors = rng.normal(size=(200, 4)) @ basis + 0.01 * rng.normal(size=(200, 16))
    down = distillation.project(vectors, 4)
    assert down.shape == (200, 4) and np.allclose(np.linalg.norm(down, axis=1), 1, atol=1e-5)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    # Cosines between vectors survive the projection (it keeps what the vectors hold).
    assert np.abs(down @ down.T - unit @ unit.T).max() < 0.05
    up = distillation.project(vectors[:3], 20)
    assert up.shape == (3, 20) and not up[:, 16:].any()


def test_a_local_model_distilled_from_an_endpoints_store_pays_nothing_again(
    db: psycopg.Connection,
    db_dsn: str,
    clean_cache: Path,
    small_model: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("PYEMBED_TRAINING_DIR", str(tmp_path))
    endpoint = fake_endpoint.Endpoint()
    base = database.Database(db_dsn)
    with fake_endpoint.running(endpoint) as url:
        endpoint_registry.allow_origins(base, [url])
        teacher = endpoint_registry.register_endpoint(
            base,
            "hosted",
            endpoint_client.EndpointSpec(base_url=url, model="fake", dimensions=fake_endpoint.DIMS),
        ).id
        student = registry.register(base, "small-32", str(small_model)).id
        db.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
        db.cursor().executemany("INSERT INTO docs VALUES (%s, %s)", DOCS)
        db.execute(
            "SELECT pyembed.create_collection('docs', 'docs', ARRAY['body'], model => 'hosted')"
        )
        run_worker(db_dsn)
        texts = [f"looking for {TOPICS[i % 8]} ({i})" for i in range(40)]
        for text, vector in zip(texts, embed(db, *texts, version=teacher), strict=True):
            rows = db.execute(
                "SELECT query_id, pk FROM pyembed.search('docs', %s, 5, query_text => %s)",
                (vector, text),
            ).fetchall()
            db.execute(
                "SELECT pyembed.record_feedback(%s, %s)", (rows[0][0], json.dumps(rows[-1][1]))
            )
        before = len(endpoint.requests)
        with pytest.raises(errors.ConfigError, match="needs a teacher"):
            runs.train(
                base, "docs", options=options.TrainOptions(loss="distill", base_version_id=student)
            )
        result = runs.train(
            base,
            "docs",
            options=options.TrainOptions(
                loss="distill",
                batch_size=8,
                epochs=2,
                learning_rate=1e-3,
                base_version_id=student,
                teacher_version_id=teacher,
            ),
        )
        # The endpoint was asked only for the held-out queries the evaluation embeds.
        asked = [t for r in endpoint.requests[before:] for t in r["body"]["input"]]
        held_out = {
            text
            for text, _ in db.execute(
                "SELECT q.query_text, 1 FROM pyembed.eval_queries q WHERE q.eval_set_id = %s",
                (result.eval_set_id,),
            ).fetchall()
        }
        assert asked and set(asked) <= held_out
    summary = db.execute(
        "SELECT data_summary->'distillation', loss FROM pyembed.training_runs WHERE id = %s",
        (result.run_id,),
    ).fetchone()
    assert summary is not None and summary[1] == "distill"
    distilled = summary[0]
    assert distilled["from"].startswith("stored: 40 chunks, ")
    assert (distilled["teacher_dimensions"], distilled["student_dimensions"]) == (8, 32)
    assert -1 <= distilled["held_out_mean_cosine"] <= 1
    kind = db.execute(
        "SELECT kind, parent_version_id FROM pyembed.model_versions WHERE id = %s",
        (result.version_id,),
    ).fetchone()
    assert kind == ("distilled", student)
    assert set(result.new_metrics) and set(result.base_metrics)
