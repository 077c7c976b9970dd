"""Run the non-retrieval evaluations of pyembed.quality for a version and store them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np

from pyembed import errors
from pyembed.db import database, queries
from pyembed.evaluation import intrinsic, retrieval
from pyembed.models import encoder, loading


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
    """Evaluate ``kind`` (similarity, clustering, bias, efficiency); returns (run id, metrics)."""
    started = dt.datetime.now(dt.UTC)
    with db.session() as conn:
        info = conn.execute(queries.get("collection_eval_info"), {"name": collection}).fetchone()
        if info is None:
            raise errors.CollectionError(f"collection {collection!r} does not exist")
        active, _distance, chunk_tokens, overlap = info
        version = version_id or active
        enc = encoder.Encoder(loading.load(conn, version))
        params: dict[str, Any] = {}
        if kind == "similarity":
            if sts_file is None:
                raise errors.ConfigError("a similarity evaluation needs --sts FILE.tsv")
            pairs = intrinsic.load_sts(sts_file)
            values = intrinsic.similarity(enc.encode, pairs)
            params = {"file": str(sts_file), "pairs": len(pairs)}
        elif kind == "clustering":
            if label_column is None:
                raise errors.ConfigError("a clustering evaluation needs --labels COLUMN")
            vectors, labels = _labelled(
                conn, collection, enc, label_column, chunk_tokens, overlap, sample
            )
            values = intrinsic.clustering(vectors, labels)
            params = {"label_column": label_column, "rows": len(labels)}
        elif kind == "bias":
            sets = intrinsic.WeatSets.load(weat_file)
            values = intrinsic.weat(enc.encode, sets)
            params = {"test": sets.name, "file": str(weat_file) if weat_file else None}
        elif kind == "efficiency":
            texts = [
                body
                for _, body in conn.execute(
                    queries.get("source_texts"), {"collection": collection}
                ).fetchall()[:sample]
            ]
            if not texts:
                raise errors.CollectionError(f"collection {collection!r} has no text to encode")
            values = intrinsic.efficiency(
                lambda t, size: enc.model.encode(t, batch_size=size, show_progress_bar=False),
                texts,
                list(batch_sizes),
            )
            params = {"texts": len(texts), "batch_sizes": list(batch_sizes)}
        else:
            raise errors.ConfigError(
                f"unknown evaluation {kind!r}", hint="similarity, clustering, bias or efficiency"
            )
        values = intrinsic.finite(values)
        run_id = retrieval.store_run(
            conn, collection, version, None, kind, "n/a", params, values, started
        )
    return run_id, values


def _labelled(
    conn: Any,
    collection: str,
    enc: encoder.Encoder,
    column: str,
    chunk_tokens: int,
    overlap: int,
    sample: int,
) -> tuple[np.ndarray, list[str]]:
    """Each labelled row's embedding (the mean of its chunks) and its label."""
    labels = {
        tuple(pk): label
        for pk, label in conn.execute(
            queries.get("row_labels"), {"collection": collection, "column": column}
        )
    }
    corpus = retrieval.Corpus.load(conn, collection, enc, chunk_tokens, overlap)
    sums = np.add.reduceat(corpus.vectors, corpus.starts, axis=0)
    counts = np.diff(np.r_[corpus.starts, len(corpus.rows)])[:, None]
    keys = [corpus.keys[corpus.rows[start]] for start in corpus.starts]
    chosen = [i for i, key in enumerate(keys) if key in labels][:sample]
    return (sums / counts)[chosen], [labels[keys[i]] for i in chosen]
