"""ONNX Runtime versions: converted from a registered version, stored, evaluated, switched to."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import psycopg
import pytest
from click.testing import CliRunner
from fastapi import testclient

from pyembed import errors
from pyembed.cli.main import main
from pyembed.db import database, migrate
from pyembed.evaluation import eval_sets, retrieval
from pyembed.models import conversion, loading, onnx_model, registry, switches
from pyembed.serve import http_api
from pyembed.training import fitting
from tests.helpers import embed, run_worker

TOPICS = ["stone walls", "harbour ships", "apple pie", "city streets"]
TEXTS = [
    "a stone wall",
    "the harbour at night, with the lights of the ships on the water " * 3,
    "apple pie",
    "word " * 400,  # longer than the window: truncated where torch truncates
]


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture
def docs(db: psycopg.Connection, db_dsn: str, clean_cache: Path) -> psycopg.Connection:
    db.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
    with db.cursor() as cur:
        cur.executemany(
            "INSERT INTO docs VALUES (%s, %s)",
            [(i, f"{TOPICS[i % 4]}, remark {i}") for i in range(16)],
        )
    db.execute("SELECT pyembed.create_collection('docs', 'docs', ARRAY['body'])")
    run_worker(db_dsn)
    return db


def test_an_int8_version_is_stored_evaluated_and_switched_to_like_any_version(
    docs: psycopg.Connection, db_dsn: str
) -> None:
    db = database.Database(db_dsn)
    result = CliRunner().invoke(main, ["models", "convert", "1", "--dsn", db_dsn])
    assert result.exit_code == 0, result.output
    assert "onnxruntime, int8" in result.output
    with db.session() as conn:
        version = registry.resolve_version(conn, "all-MiniLM-L6-v2")
    row = docs.execute(
        "SELECT parent_version_id, kind, runtime, precision, status, artifact_source, "
        "produced_by->>'how', (produced_by->'probe_cosine'->>'min')::float "
        "FROM pyembed.model_versions WHERE id = %s",
        (version,),
    ).fetchone()
    assert row is not None
    assert row[:7] == (1, "converted", "onnxruntime", "int8", "ready", "database", "converted")
    assert row[7] > 0.95
    files = {
        path
        for (path,) in docs.execute(
            "SELECT DISTINCT path FROM pyembed.model_artifacts WHERE version_id = %s", (version,)
        )
    }
    assert {onnx_model.GRAPH, onnx_model.MANIFEST, "tokenizer.json"} <= files
    assert not any(p.endswith((".safetensors", ".bin")) for p in files)  # no torch weights

    loaded = loading.load(docs, version)
    assert isinstance(loaded.model, onnx_model.OnnxModel)
    int8 = embed(docs, *TEXTS, version=version)
    assert cosine(int8, embed(docs, *TEXTS)).min() > 0.95
    # Dynamic quantization scales activations per batch tensor, so batch-mates move a vector a
    # little (the README says so); fp32 vectors do not depend on them (the fp32 test).
    alone = embed(docs, TEXTS[0], version=version)
    assert cosine(alone, int8[:1])[0] > 0.98

    # Evaluated, then switched to blue/green: the backfill runs on ONNX Runtime.
    eval_sets.create_set(
        docs,
        "docs",
        "topics",
        "manual",
        [
            (f"about {t}", {(i,): 1.0 for i in range(16) if i % 4 == q})
            for q, t in enumerate(TOPICS)
        ],
    )
    scores = retrieval.evaluate(db, "docs", version_id=version, modes=("exact",))
    assert scores[0].version_id == version
    assert scores[0].metrics["ndcg@10"] > 0.9
    done = switches.promote(db, "docs", version, reason="int8")
    assert (done.to_version_id, done.backfilled) == (version, 16)
    rows = docs.execute(
        "SELECT pk FROM pyembed.search('docs', %s, 4)",
        (embed(docs, "apple pie", version=version)[0],),
    ).fetchall()
    assert {pk[0] % 4 for (pk,) in rows} == {2}
    # The embedding server answers for the collection with the version it now serves.
    with testclient.TestClient(http_api.create_app(db)) as client:
        answer = client.post(
            "/v1/embeddings",
            json={"model": "docs", "input": ["apple pie"], "encoding_format": "float"},
        )
    assert answer.status_code == 200, answer.text
    served = np.array([answer.json()["data"][0]["embedding"]])
    np.testing.assert_allclose(served, embed(docs, "apple pie", version=version), atol=1e-5)
    docs.execute("INSERT INTO docs VALUES (100, 'garden tools')")
    assert run_worker(db_dsn).rows == 1  # the worker embeds new rows with it too

    # A new collection can start on it directly (MODEL@N), without embedding twice.
    started = docs.execute(
        "SELECT active_version_id FROM pyembed.create_collection('docs8', 'docs', ARRAY['body'], "
        "model => %s)",
        (f"all-MiniLM-L6-v2@{loaded.version.version}",),
    ).fetchone()
    assert started == (version,)
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="no ready version"):
        docs.execute(
            "SELECT pyembed.create_collection('docs9', 'docs', ARRAY['body'], "
            "model => 'all-MiniLM-L6-v2@99')"
        )

    # Training starts from the torch weights it was converted from.
    with db.session() as conn:
        assert fitting.base_weights(conn, version).id == 1
        assert fitting.base_weights(conn, 1).id == 1

    # What cannot be done says what can.
    with pytest.raises(errors.ModelError, match=r"(?s)already an ONNX Runtime version.*id 1"):
        conversion.convert(db, version)
    assert conversion.convert(db, 1).id == version  # done already: the same version back
    with pytest.raises(errors.ModelError, match="unknown precision"):
        conversion.convert(db, 1, "int4")  # type: ignore[arg-type]
    with pytest.raises(errors.DatabaseError, match="run on ONNX Runtime"):
        migrate.downgrade(db, "0011")
    assert migrate.current(db) == migrate.heads()[0]


def test_an_fp32_version_computes_what_torch_computes(
    db: psycopg.Connection, db_dsn: str, clean_cache: Path, small_model: Path
) -> None:
    """The small 32-d model adds a Dense layer: every module is in the one graph."""
    db_handle = database.Database(db_dsn)
    small = registry.register(db_handle, "small", str(small_model))
    converted = conversion.convert(db_handle, small.id, "fp32")
    assert converted.version == 2
    torch_vectors = embed(db, *TEXTS, version=small.id)
    onnx_vectors = embed(db, *TEXTS, version=converted.id)
    assert onnx_vectors.shape == (len(TEXTS), 32)
    np.testing.assert_allclose(onnx_vectors, torch_vectors, atol=1e-4)
    alone = embed(db, TEXTS[0], version=converted.id)
    np.testing.assert_allclose(alone[0], onnx_vectors[0], atol=1e-5)  # padding does not leak
    shown = db.execute(
        "SELECT runtime, precision, produced_by->>'precision' FROM pyembed.model_versions "
        "WHERE id = %s",
        (converted.id,),
    ).fetchone()
    assert shown == ("onnxruntime", "fp32", "fp32")
    listed = CliRunner().invoke(main, ["models", "list", "--dsn", db_dsn, "--json"])
    assert '"runtime": "onnxruntime"' in listed.output


def test_a_damaged_onnx_folder_is_refused_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(errors.ModelError, match="not a converted ONNX model"):
        onnx_model.OnnxModel(tmp_path)
    (tmp_path / onnx_model.GRAPH).write_bytes(b"")
    (tmp_path / onnx_model.MANIFEST).write_text(
        '{"format": 99, "precision": "int8", "dimensions": 3, "max_seq_length": 8, '
        '"converted_from": ""}'
    )
    with pytest.raises(errors.ModelError, match="convert the parent version again"):
        onnx_model.OnnxModel(tmp_path)
