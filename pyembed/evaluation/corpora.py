"""A version's embeddings of a collection's rows, scored exactly against queries: what the
``exact`` and ``reranked`` evaluations rank with (no index in between)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import psycopg

from pyembed import errors
from pyembed.db import queries
from pyembed.models import encoder

logger = logging.getLogger(__name__)

Key = tuple[Any, ...]


class Corpus:
    """Every row's chunk embeddings for one version, grouped by row, for exact scoring."""

    def __init__(
        self,
        keys: list[Key],
        chunk_rows: np.ndarray,
        vectors: np.ndarray,
        texts: list[str] | None = None,
    ) -> None:
        order = np.argsort(chunk_rows, kind="stable")
        self.keys = keys
        self.rows = chunk_rows[order]
        self.vectors = vectors[order]
        self.texts = [texts[i] for i in order] if texts is not None else None
        self.starts = np.flatnonzero(np.r_[True, self.rows[1:] != self.rows[:-1]])

    @classmethod
    def load(
        cls,
        conn: psycopg.Connection,
        collection: str,
        enc: encoder.Encoder,
        chunk_tokens: int,
        overlap: int,
    ) -> Corpus:
        """From the version's store when it has one, else by embedding the source rows."""
        index: dict[Key, int] = {}
        rows: list[int] = []
        vectors: list[Any] = []
        chunks: list[str] = []
        try:
            with errors.translated():
                found = conn.execute(
                    queries.get("store_chunks"),
                    {
                        "collection": collection,
                        "version_id": enc.version.id,
                    },
                ).fetchall()
            for pk, chunk, vector in found:
                rows.append(index.setdefault(tuple(pk), len(index)))
                chunks.append(chunk)
                vectors.append(np.asarray(vector.to_numpy(), dtype=np.float32))
            matrix = np.stack(vectors) if vectors else np.zeros((0, enc.version.dimensions))
        except errors.DatabaseError as exc:
            if exc.sqlstate != "42P01":  # undefined_table: no store for this version
                raise
            texts = conn.execute(queries.get("source_texts"), {"collection": collection}).fetchall()
            logger.info("embedding %d rows with %s to evaluate it", len(texts), enc.version.label)
            chunked = enc.chunk_many([body for _, body in texts], chunk_tokens, overlap)
            for (pk, _), pieces in zip(texts, chunked, strict=True):
                for piece in pieces:
                    rows.append(index.setdefault(tuple(pk), len(index)))
                    chunks.append(piece)
            matrix = enc.encode(chunks)
        return cls(list(index), np.asarray(rows, dtype=np.int64), matrix.astype(np.float32), chunks)

    def top(self, queries_matrix: np.ndarray, k: int, distance: str) -> list[list[Key]]:
        """The k best rows per query (a row scores as its best chunk)."""
        return [[key for key, _ in hits] for hits in self.top_chunks(queries_matrix, k, distance)]

    def top_chunks(
        self, queries_matrix: np.ndarray, k: int, distance: str
    ) -> list[list[tuple[Key, str]]]:
        """The k best rows per query, each with the text of its best chunk."""
        results: list[list[tuple[Key, str]]] = []
        ends = np.r_[self.starts[1:], len(self.rows)]
        docs = self.vectors
        if distance == "cosine":
            docs = docs / np.maximum(np.linalg.norm(docs, axis=1, keepdims=True), 1e-12)
            queries_matrix = queries_matrix / np.maximum(
                np.linalg.norm(queries_matrix, axis=1, keepdims=True), 1e-12
            )
        for start in range(0, len(queries_matrix), 256):
            block = queries_matrix[start : start + 256]
            scores = block @ docs.T
            if distance == "l2":  # smaller distance is better: -|d|² + 2 q·d ranks the same
                scores = 2 * scores - (docs * docs).sum(axis=1)
            per_row = np.maximum.reduceat(scores, self.starts, axis=1)
            take = min(k, per_row.shape[1])
            best = np.argpartition(-per_row, take - 1, axis=1)[:, :take] if take else None
            for i in range(len(block)):
                if best is None:
                    results.append([])
                    continue
                chosen = best[i][np.argsort(-per_row[i, best[i]], kind="stable")]
                hits = []
                for j in chosen:
                    chunk = self.starts[j] + int(np.argmax(scores[i, self.starts[j] : ends[j]]))
                    text = self.texts[chunk] if self.texts is not None else ""
                    hits.append((self.keys[self.rows[chunk]], text))
                results.append(hits)
        return results
