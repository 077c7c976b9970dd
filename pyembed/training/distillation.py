"""Distillation: a local model trained to reproduce a teacher's vectors (``--loss distill``).

When the teacher embeds the collection (a hosted endpoint, typically), its vectors are already
paid for: the chunks of its store and the logged queries it embedded (``pyembed.query_log``)
are the training data, and nothing is sent to the endpoint again. Otherwise the teacher embeds
the pairs' texts. A tenth of the texts is held out; after training the student's vectors of them
are compared with the teacher's (mean cosine, recorded with the run). A teacher of another
dimension is projected onto the student's: onto its leading singular directions when it has more
dimensions (the projection that keeps most of the vectors), padded with zeros when it has fewer.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from typing import Any

import numpy as np
import psycopg

from pyembed import errors
from pyembed.db import queries
from pyembed.models import encoder, loading
from pyembed.training import sources

logger = logging.getLogger(__name__)

MAX_TEXTS = 50_000  # the most texts taken from a store (a random sample beyond)
HELD_OUT = 0.1


@dataclasses.dataclass
class Distillation:
    """Training columns, and the held-out texts with their (projected) teacher vectors."""

    columns: dict[str, list[Any]]
    held_out: list[str]
    held_out_targets: np.ndarray
    summary: dict[str, Any]

    def measure(self, student: Any) -> dict[str, Any]:
        """The student's mean cosine to the teacher on the held-out texts."""
        if not self.held_out:
            return self.summary
        vectors = np.asarray(student.encode(self.held_out, batch_size=64, show_progress_bar=False))
        cosines = _unit(vectors) @ _unit(self.held_out_targets).T
        mean = float(np.mean(np.diag(cosines)))
        return {**self.summary, "held_out_mean_cosine": round(mean, 4)}


def prepare(
    conn: psycopg.Connection,
    collection: str,
    teacher_id: int | None,
    student_dims: int,
    data: sources.TrainingData,
    *,
    seed: int = 0,
) -> Distillation:
    """The teacher's vectors of the collection's texts, ready to train on (never the queries
    held out to evaluate the student against the teacher)."""
    if teacher_id is None:
        raise errors.ConfigError("the distill loss needs a teacher", hint="pass --teacher V")
    teacher = loading.load(conn, teacher_id)
    texts, vectors, source = _stored(conn, collection, teacher_id)
    evaluated = {text for text, _ in data.held_out}
    if texts and evaluated:
        kept = [i for i, text in enumerate(texts) if text not in evaluated]
        texts, vectors = [texts[i] for i in kept], vectors[kept]
    pairs = data.pairs
    if not texts:
        enc = encoder.Encoder(teacher)
        queries_ = list(dict.fromkeys(p.query for p in pairs))
        documents = list(dict.fromkeys(p.positive for p in pairs))
        logger.info(
            "the teacher %s has no store in %s: embedding %d texts with it",
            teacher.version.label,
            collection,
            len(queries_) + len(documents),
        )
        texts = queries_ + documents
        vectors = np.vstack([enc.encode_queries(queries_), enc.encode(documents)])
        source = "teacher embeds the pairs"
    if len(texts) < 10:
        raise errors.PyembedError(
            f"too few texts to distill from ({len(texts)})",
            hint="distill once the collection's rows are embedded by the teacher",
        )
    targets = project(vectors, student_dims)
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    cut = max(1, int(len(order) * HELD_OUT))
    held, train = order[:cut], order[cut:]
    summary = {
        "teacher": teacher.version.label,
        "texts": len(train),
        "held_out_texts": len(held),
        "from": source,
        "teacher_dimensions": int(vectors.shape[1]),
        "student_dimensions": student_dims,
    }
    return Distillation(
        {
            "sentence": [texts[i] for i in train],
            "label": [list(map(float, targets[i])) for i in train],
        },
        [texts[i] for i in held],
        targets[held],
        summary,
    )


def project(vectors: np.ndarray, dims: int) -> np.ndarray:
    """Teacher vectors in ``dims`` dimensions: as they are, onto their leading right-singular
    vectors (more dimensions), or zero-padded (fewer), unit length as a normalized model's."""
    vectors = np.asarray(vectors, dtype=np.float64)
    if vectors.shape[1] > dims:
        _, _, vt = np.linalg.svd(vectors, full_matrices=False)
        vectors = vectors @ vt[:dims].T
    elif vectors.shape[1] < dims:
        vectors = np.hstack([vectors, np.zeros((len(vectors), dims - vectors.shape[1]))])
    return _unit(vectors).astype(np.float32)


def _stored(
    conn: psycopg.Connection, collection: str, teacher_id: int
) -> tuple[list[str], np.ndarray, str]:
    """The chunks of the teacher's store and the logged queries it embedded (none: empty)."""
    params = {"collection": collection, "version_id": teacher_id, "limit": MAX_TEXTS}
    try:
        with errors.translated():
            found = conn.execute(queries.get("distill_store_sample"), params).fetchall()
    except errors.DatabaseError as exc:
        if exc.sqlstate != "42P01":  # no store of the teacher's in this collection
            raise
        return [], np.zeros((0, 0)), ""
    logged = conn.execute(queries.get("distill_logged_queries"), params).fetchall()
    rows = [(text, vector) for text, vector in [*found, *logged] if text and vector is not None]
    if not rows:
        return [], np.zeros((0, 0)), ""
    texts = [text for text, _ in rows]
    vectors = np.stack([np.asarray(v.to_numpy(), dtype=np.float32) for _, v in rows])
    return texts, vectors, f"stored: {len(found)} chunks, {len(logged)} logged queries"


def _unit(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.asarray(matrix / np.maximum(norms, 1e-12))
