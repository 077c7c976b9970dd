"""Rows of a collection that adopted the application's vector column: their vectors are copied
into the adopted version's store, not computed (create_collection(..., embedding_column)).

A row is one chunk, its whole text, with the application's vector; a row whose vector is NULL is
embedded by the model like any other. Its content hash covers text and vector, so changing
either rewrites the row and an unchanged row is left alone.
"""

from __future__ import annotations

import hashlib

import numpy as np
import psycopg
from psycopg.types.json import Jsonb

from pyembed import errors
from pyembed.db import queries
from pyembed.ingest import leases, work_items


def vectors(
    conn: psycopg.Connection, collection: str, items: list[leases.Item]
) -> dict[tuple[object, ...], np.ndarray]:
    """The application's vectors of these rows (rows without one are left out)."""
    with errors.translated():
        rows = conn.execute(
            queries.get("source_vectors"),
            {"collection": collection, "keys": Jsonb([item.pk for item in items])},
        ).fetchall()
    return {
        tuple(pk): np.asarray(vector.to_numpy(), dtype=np.float32)
        for pk, vector in rows
        if vector is not None
    }


def take(task: work_items.Task, vector: np.ndarray, dimensions: int) -> str | None:
    """Make the task write the application's vector; the reason when it cannot be used."""
    if len(vector) != dimensions:
        return (
            f"the adopted vector column holds {len(vector)} dimensions for this row, but the "
            f"collection's model embeds into {dimensions}: fix the row's vector, or set it to "
            "NULL to have the model embed the row"
        )
    if not np.isfinite(vector).all():
        return "the adopted vector column holds NaN or infinite values for this row"
    task.chunks = [task.body or ""]
    task.vectors = vector[None, :]
    digest = hashlib.sha256(b"adopted\x00")
    digest.update(vector.tobytes())
    digest.update((task.body or "").encode("utf-8"))
    task.content_hash = digest.digest()
    return None
