"""Run the evaluations beyond retrieval (pyembed.evaluation.intrinsic) for a version, stored.

One table names the kinds and what each needs; the CLI offers exactly these names.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import psycopg

from pyembed import errors
from pyembed.db import database, queries
from pyembed.evaluation import corpora, intrinsic, retrieval
from pyembed.models import encoder, loading

Kind = Literal["similarity", "clustering", "bias", "efficiency"]
Measured = tuple[dict[str, float], dict[str, Any]]  # (metrics, the run's parameters)


@dataclasses.dataclass(frozen=True)
class Request:
    """One evaluation's inputs: the version's encoder, the collection, and the options."""

    conn: psycopg.Connection
    collection: str
    enc: encoder.Encoder
    chunk_tokens: int
    overlap: int
    sts_file: Path | None
    label_column: str | None
    weat_file: Path | None
    batch_sizes: tuple[int, ...]
    sample: int


def _similarity(r: Request) -> Measured:
    if r.sts_file is None:
        raise errors.ConfigError("a similarity evaluation needs --sts FILE.tsv")
    pairs = intrinsic.load_sts(r.sts_file)
    return intrinsic.similarity(r.enc.encode, pairs), {"file": str(r.sts_file), "pairs": len(pairs)}


def _clustering(r: Request) -> Measured:
    if r.label_column is None:
        raise errors.ConfigError("a clustering evaluation needs --labels COLUMN")
    vectors, labels = _labelled(r, r.label_column)
    return intrinsic.clustering(vectors, labels), {
        "label_column": r.label_column,
        "rows": len(labels),
    }


def _bias(r: Request) -> Measured:
    sets = intrinsic.WeatSets.load(r.weat_file)
    return intrinsic.weat(r.enc.encode, sets), {
        "test": sets.name,
        "file": str(r.weat_file) if r.weat_file else None,
    }


def _efficiency(r: Request) -> Measured:
    rows = r.conn.execute(queries.get("source_texts"), {"collection": r.collection}).fetchall()
    texts = [body for _, body in rows[: r.sample]]
    if not texts:
        raise errors.CollectionError(f"collection {r.collection!r} has no text to encode")
    values = intrinsic.efficiency(
        lambda t, size: r.enc.model.encode(t, batch_size=size, show_progress_bar=False),
        texts,
        list(r.batch_sizes),
    )
    return values, {"texts": len(texts), "batch_sizes": list(r.batch_sizes)}


KINDS: dict[Kind, Callable[[Request], Measured]] = {
    "similarity": _similarity,
    "clustering": _clustering,
    "bias": _bias,
    "efficiency": _efficiency,
}


def run(
    db: database.Database,
    collection: str,
    kind: str,
    *,
    version_id: int | None = None,
    sts_file: Path | None = None,
    label_column: str | None = None,
    weat_file: Path | None = None,
    batch_sizes: tuple[int, ...] = (1, 16, 64, 128),
    sample: int = 2000,
) -> tuple[int, dict[str, float]]:
    """Evaluate ``kind`` (one of KINDS) and store it; returns (run id, metrics)."""
    measure = KINDS.get(kind)  # type: ignore[call-overload]
    if measure is None:
        raise errors.ConfigError(
            f"unknown evaluation {kind!r}", hint=f"use one of {', '.join(KINDS)}"
        )
    started = dt.datetime.now(dt.UTC)
    with db.session() as conn:
        info = conn.execute(queries.get("collection_eval_info"), {"name": collection}).fetchone()
        if info is None:
            raise errors.CollectionError(f"collection {collection!r} does not exist")
        active, _distance, chunk_tokens, overlap = info
        version = version_id or active
        enc = encoder.Encoder(loading.load(conn, version))
        request = Request(
            conn,
            collection,
            enc,
            chunk_tokens,
            overlap,
            sts_file,
            label_column,
            weat_file,
            batch_sizes,
            sample,
        )
        values, params = measure(request)
        values = intrinsic.finite(values)
        run_id = retrieval.store_run(
            conn, collection, version, None, kind, "n/a", params, values, started
        )
    return run_id, values


def _labelled(r: Request, column: str) -> tuple[np.ndarray, list[str]]:
    """Each labelled row's embedding (the mean of its chunks) and its label."""
    labels = {
        tuple(pk): label
        for pk, label in r.conn.execute(
            queries.get("row_labels"), {"collection": r.collection, "column": column}
        )
    }
    corpus = corpora.Corpus.load(r.conn, r.collection, r.enc, r.chunk_tokens, r.overlap)
    sums = np.add.reduceat(corpus.vectors, corpus.starts, axis=0)
    counts = np.diff(np.r_[corpus.starts, len(corpus.rows)])[:, None]
    keys = [corpus.keys[corpus.rows[start]] for start in corpus.starts]
    chosen = [i for i, key in enumerate(keys) if key in labels][: r.sample]
    return (sums / counts)[chosen], [labels[keys[i]] for i in chosen]
