"""pyembed.embed(text, model) and pyembed.rerank(query, documents, reranker) in 'local' mode: the
model runs inside the PostgreSQL backend and answers the request the embedding server would.

Called from PL/Python (pyembed._model_call) with its ``plpy`` module and ``GD`` (the backend's
shared dictionary):
SQL goes through plpy, never through a second connection. The model files are the registered
version's, verified by hash and cached by hash in ``pyembed.cache_dir`` (default
/tmp/pyembed-backend-models); each backend keeps the loaded model for its lifetime, so the
first call of a connection is slow and every connection that embeds holds a copy in memory.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from pyembed import errors
from pyembed.models import artifacts, endpoint_model, runtimes

# The same rule as `pyembed serve`: pyembed.embedding_version (sql/idempotent/005_helpers.sql).
_VERSION = """
SELECT v.id, m.name || ' v' || v.version || ' (id ' || v.id || ')' AS label, m.query_prefix,
       v.artifact_source, v.artifact_sha256, v.runtime, v.endpoint::text AS endpoint, m.normalize,
       (SELECT value FROM pyembed.settings WHERE name = 'endpoint_origins') AS origins
FROM pyembed.model_versions AS v JOIN pyembed.models AS m ON m.id = v.model_id
WHERE v.id = pyembed.embedding_version($1)
"""
_RERANKER = """
SELECT v.id, m.name || ' v' || v.version || ' (id ' || v.id || ')' AS label, m.max_seq_length,
       v.artifact_source, v.artifact_sha256, m.task
FROM pyembed.model_versions AS v JOIN pyembed.models AS m ON m.id = v.model_id
WHERE v.id = pyembed.embedding_version($1)
"""
# Through pyembed's function: readers, who call pyembed.embed, may not read model files directly.
_PARTS = "SELECT path, data FROM pyembed._local_model_parts($1)"
# The admin's setting: a session must not choose where the server process writes files.
_SETTING = "SELECT (SELECT value FROM pyembed.settings WHERE name = 'cache_dir') AS v"


def answer(plpy: Any, gd: dict[str, Any], path: str, request: dict[str, Any]) -> dict[str, Any]:
    """The response ``pyembed serve`` gives to a /v1/embeddings or /v1/rerank ``request``, as
    far as pyembed.embed and pyembed.rerank read it."""
    try:
        if path == "/v1/embeddings":
            vector = embed(plpy, gd, request["input"][0], request["model"])
            return {"data": [{"index": 0, "embedding": vector}]}
        scores = rerank(plpy, gd, request["query"], request["documents"], str(request["model"]))
    except errors.PyembedError as exc:  # an endpoint's refusal, a missing key: say it plainly
        plpy.error(
            f"{'pyembed.embed' if path == '/v1/embeddings' else 'pyembed.rerank'}: {exc.message}",
            hint=exc.hint,
        )
    return {"results": [{"index": i, "relevance_score": s} for i, s in enumerate(scores)]}


def embed(plpy: Any, gd: dict[str, Any], text: str, model: str) -> list[float]:
    """The query embedding of ``text``."""
    plan = gd.get("pyembed_version_plan")
    if plan is None:
        plan = gd["pyembed_version_plan"] = plpy.prepare(_VERSION, ["text"])
    rows = plpy.execute(plan, [model])
    if not rows:
        plpy.error(
            f"pyembed.embed: no collection or model named {model!r}",
            hint="pass a collection name or a registered model name",
        )
    row = rows[0]
    models = gd.setdefault("pyembed_models", {})
    loaded = models.get(row["artifact_sha256"])
    if loaded is None:
        loaded = models[row["artifact_sha256"]] = _open(plpy, row)
    prefix = row["query_prefix"] or None
    vector = runtimes.encode(loaded, [text], prompt=prefix, input_type="query")[0]
    return [float(x) for x in vector]


def _open(plpy: Any, row: dict[str, Any]) -> runtimes.EncodingModel:
    if row["runtime"] == "endpoint":
        # The key comes from the PostgreSQL server's environment, like any setting of its own.
        return endpoint_model.open_version(
            json.loads(row["endpoint"]),
            normalize=row["normalize"],
            allowed=row["origins"],
            sha256=row["artifact_sha256"],
            label=row["label"],
        )
    model = runtimes.open_folder(_folder(plpy, row), row["runtime"], device="cpu")
    plpy.notice(
        f"pyembed.embed loaded {row['label']} into this backend; every connection "
        "that embeds in local mode holds its own copy in memory"
    )
    return model


def rerank(
    plpy: Any, gd: dict[str, Any], query: str, texts: list[str], reranker: str
) -> list[float]:
    """The reranker's score of each text for the query."""
    plan = gd.get("pyembed_reranker_plan")
    if plan is None:
        plan = gd["pyembed_reranker_plan"] = plpy.prepare(_RERANKER, ["text"])
    rows = plpy.execute(plan, [reranker])
    if not rows or rows[0]["task"] != "reranker":
        plpy.error(
            f"pyembed.rerank: no reranker named {reranker!r}",
            hint="pass a registered reranker's name or version id (pyembed models list)",
        )
    row = rows[0]
    models = gd.setdefault("pyembed_rerankers", {})
    model = models.get(row["artifact_sha256"])
    if model is None:
        from sentence_transformers.cross_encoder import CrossEncoder

        model = models[row["artifact_sha256"]] = CrossEncoder(
            str(_folder(plpy, row)),
            device="cpu",
            local_files_only=True,
            max_length=row["max_seq_length"],
        )
        plpy.notice(
            f"pyembed.rerank loaded {row['label']} into this backend; every connection "
            "that reranks in local mode holds its own copy in memory"
        )
    scores = model.predict([(query, text) for text in texts], show_progress_bar=False)
    return [float(score) for score in scores]


def _folder(plpy: Any, row: dict[str, Any]) -> Path:
    configured = plpy.execute(_SETTING)[0]["v"]
    cache = Path(configured or os.path.join(tempfile.gettempdir(), "pyembed-backend-models"))

    def write(staging: Path) -> None:
        cursor = plpy.cursor(plpy.prepare(_PARTS, ["bigint"]), [row["id"]])
        while batch := cursor.fetch(8):
            for part in batch:
                target = staging / part["path"]
                target.parent.mkdir(parents=True, exist_ok=True)
                with target.open("ab") as out:
                    out.write(part["data"])

    return artifacts.local_folder(
        row["artifact_source"], row["artifact_sha256"], row["label"], cache, write
    )
