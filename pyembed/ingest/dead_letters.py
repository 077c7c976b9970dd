"""Dead letters: rows that failed too often, and putting them back in the queue."""

from __future__ import annotations

import dataclasses
import datetime as dt

from psycopg.rows import class_row

from pyembed.db import database, queries


@dataclasses.dataclass(frozen=True)
class FailedItem:
    """A row of pyembed.failed_items."""

    id: int
    collection: str
    pk: list[object]
    attempts: int
    last_error: str
    failed_at: dt.datetime


def list_failed(
    db: database.Database, collection: str | None = None, limit: int = 50
) -> list[FailedItem]:
    """The newest dead letters, of one collection or all."""
    with db.session() as conn, conn.cursor(row_factory=class_row(FailedItem)) as cur:
        cur.execute(queries.get("failed_list"), {"collection": collection, "limit": limit})
        return cur.fetchall()


def retry_failed(
    db: database.Database, collection: str | None = None, ids: list[int] | None = None
) -> int:
    """Requeue dead letters (all, one collection's, or by id) with fresh attempts."""
    with db.session() as conn:
        cur = conn.execute(queries.get("failed_retry"), {"collection": collection, "ids": ids})
        return cur.rowcount
