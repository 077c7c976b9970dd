"""Loading a registered model version: files from the database or a package, verified, cached.

Files stored in ``pyembed.model_artifacts`` are written once to a local cache keyed by the
version's sha256 (``PYEMBED_CACHE_DIR``, default ``~/.cache/pyembed/models``), so a second load
does not touch the database. Every load checks the files against the registered hash.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from pathlib import Path
from typing import Any, BinaryIO

import psycopg
from psycopg.rows import class_row

from pyembed import errors
from pyembed.db import queries
from pyembed.models import artifacts, endpoint_model, runtimes

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ModelVersion:
    """A row of pyembed.model_versions with what its family says about it."""

    id: int
    model_name: str
    version: int
    dimensions: int
    max_seq_length: int
    normalize: bool
    query_prefix: str
    document_prefix: str
    artifact_source: str
    artifact_sha256: str | None
    status: str
    pooling: str = "mean"
    runtime: str = "sentence-transformers"
    precision: str = "fp32"
    parent_version_id: int | None = None
    produced_by: dict[str, Any] = dataclasses.field(default_factory=dict)
    task: str = "embedding"  # or "reranker" (dimensions 0)
    endpoint: dict[str, Any] | None = None  # runtime 'endpoint': its settings (never a key)

    @property
    def label(self) -> str:
        return f"{self.model_name} v{self.version} (id {self.id})"


def cache_dir() -> Path:
    """Where verified model folders are cached: ``PYEMBED_CACHE_DIR`` or ~/.cache/pyembed/models."""
    configured = os.environ.get("PYEMBED_CACHE_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "pyembed" / "models"


def fetch_version(
    conn: psycopg.Connection, version_id: int, *, task: str | None = "embedding"
) -> ModelVersion:
    """The version's metadata; a clear error for an unknown or unusable version, or one of
    another task than ``task`` (None: any)."""
    with conn.cursor(row_factory=class_row(ModelVersion)) as cur:
        cur.execute(queries.get("model_version"), {"id": version_id})
        found = cur.fetchone()
    if found is None:
        raise errors.ModelError(f"model version id {version_id} does not exist")
    if found.status == "uploading" or found.artifact_sha256 is None:
        raise errors.ModelError(
            f"model {found.label} is still uploading", hint="wait for its registration to finish"
        )
    if task == "embedding" and found.task == "reranker":
        raise errors.WrongModelTask(
            f"model {found.label} is a reranker: it scores (query, text) pairs and embeds nothing",
            hint="collections, embedding and training take embedding models; "
            "`pyembed models list` shows each model's task",
        )
    if task == "reranker" and found.task != "reranker":
        raise errors.WrongModelTask(
            f"model {found.label} is an embedding model, not a reranker",
            hint="register a cross-encoder folder (sentence-transformers CrossEncoder, one "
            "score per pair) as the reranker",
        )
    return found


def _download(conn: psycopg.Connection, mv: ModelVersion, target: Path) -> None:
    """Write the version's files from pyembed.model_artifacts into target (a fresh dir)."""
    files = 0
    current: str | None = None
    out: BinaryIO | None = None
    try:
        # stream(): parts arrive one by one, never the whole model in memory.
        for path, data in conn.cursor().stream(queries.get("model_artifact_parts"), {"id": mv.id}):
            if path != current:
                if out is not None:
                    out.close()
                file_path = target / path
                file_path.parent.mkdir(parents=True, exist_ok=True)
                out, current, files = file_path.open("wb"), path, files + 1
            assert out is not None
            out.write(data)
    finally:
        if out is not None:
            out.close()
    if files == 0:
        raise errors.ModelError(
            f"model {mv.label} has no files in pyembed.model_artifacts",
            hint="re-register it with `pyembed models register`",
        )


def materialize(conn: psycopg.Connection, mv: ModelVersion) -> Path:
    """A local folder holding the version's verified files."""
    assert mv.artifact_sha256 is not None
    if mv.runtime == "endpoint":
        raise errors.ModelError(
            f"model {mv.label} is an embedding endpoint: it has no files to export, convert or "
            "train",
            hint="train a local model to reproduce it instead: `pyembed train COLLECTION "
            f"--base LOCAL_MODEL --loss distill --teacher {mv.model_name}@{mv.version}`",
        )

    def write(target: Path) -> None:
        with errors.translated():
            _download(conn, mv, target)

    return artifacts.local_folder(
        mv.artifact_source, mv.artifact_sha256, mv.label, cache_dir(), write
    )


@dataclasses.dataclass
class LoadedModel:
    """A model version ready to encode."""

    version: ModelVersion
    model: runtimes.EncodingModel


# Keyed by artifact hash: version ids are per database, the same files are the same model.
_models: dict[tuple[str, str | None], runtimes.EncodingModel] = {}
_lock = threading.Lock()


def load(conn: psycopg.Connection, version_id: int, *, device: str | None = None) -> LoadedModel:
    """Load a model version (its files once per process); the device is chosen automatically."""
    mv = fetch_version(conn, version_id)
    assert mv.artifact_sha256 is not None
    with _lock:
        model = _models.get((mv.artifact_sha256, device))
        if model is None:
            model = _load_files(conn, mv, device)
            _models[(mv.artifact_sha256, device)] = model
    dims = model.get_embedding_dimension()
    if dims != mv.dimensions:
        raise errors.ModelError(
            f"model {mv.label} produces {dims}-d embeddings, but it is registered with "
            f"{mv.dimensions} dimensions (its store tables expect {mv.dimensions})",
            hint="register the files as a model of their real dimension",
        )
    return LoadedModel(mv, model)


def _load_files(
    conn: psycopg.Connection, mv: ModelVersion, device: str | None
) -> runtimes.EncodingModel:
    if mv.runtime == "endpoint":
        return _open_endpoint(conn, mv)
    folder = materialize(conn, mv)
    logger.info("loading model %s (%s, %s) from %s", mv.label, mv.runtime, mv.precision, folder)
    return runtimes.open_folder(folder, mv.runtime, device=device)


def _open_endpoint(conn: psycopg.Connection, mv: ModelVersion) -> runtimes.EncodingModel:
    assert mv.endpoint is not None and mv.artifact_sha256 is not None
    row = conn.execute(queries.get("endpoint_origins")).fetchone()
    model = endpoint_model.open_version(
        mv.endpoint,
        normalize=mv.normalize,
        allowed=row[0] if row else None,
        sha256=mv.artifact_sha256,
        label=mv.label,
    )
    logger.info("model %s is the endpoint %s", mv.label, mv.endpoint["base_url"])
    return model
