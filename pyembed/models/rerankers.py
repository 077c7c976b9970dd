"""Rerankers: registered cross-encoders, which score a query and a text read together.

A reranker version is stored, hashed, exported and retired like any model version (its family's
task is ``reranker``); it embeds nothing and serves no store. Loading one gives a scorer of
(query, text) pairs: a search's first stage finds candidates, the reranker orders them.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import psycopg

from pyembed import extras
from pyembed.models import loading

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Reranker:
    """A reranker version ready to score."""

    version: loading.ModelVersion
    model: Any  # sentence_transformers.cross_encoder.CrossEncoder

    def score(self, query: str, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """One score per text, higher is more relevant (the model's activation: 0..1)."""
        if not texts:
            return np.zeros(0, dtype=np.float32)
        pairs = [(query, text) for text in texts]
        scores = self.model.predict(pairs, batch_size=batch_size, show_progress_bar=False)
        return np.asarray(scores, dtype=np.float32).reshape(len(texts))


# Keyed by artifact hash, as loading's models are.
_models: dict[tuple[str, str | None], Any] = {}
_lock = threading.Lock()


def load(conn: psycopg.Connection, version_id: int, *, device: str | None = None) -> Reranker:
    """Load a reranker version (its files once per process); a clear error for anything else."""
    mv = loading.fetch_version(conn, version_id, task="reranker")
    assert mv.artifact_sha256 is not None
    with _lock:
        model = _models.get((mv.artifact_sha256, device))
        if model is None:
            folder = loading.materialize(conn, mv)
            logger.info("loading reranker %s from %s", mv.label, folder)
            with extras.needed("embed"):
                from sentence_transformers.cross_encoder import CrossEncoder

            model = CrossEncoder(
                str(folder),
                device=device or "cpu",
                local_files_only=True,
                max_length=mv.max_seq_length,
            )
            _models[(mv.artifact_sha256, device)] = model
    return Reranker(mv, model)
