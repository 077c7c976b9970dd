"""Indexes built automatically once a collection passes its ``auto_index_min_rows``.

Workers check after each batch; the build runs in a background thread (CREATE INDEX
CONCURRENTLY, so ingestion and searches go on) and an advisory lock per collection makes sure
that of many workers only one builds it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from typing import Any

import psycopg
from psycopg.rows import class_row

from pyembed import errors
from pyembed.db import database, queries
from pyembed.search import indexes

logger = logging.getLogger(__name__)

# First key of the advisory lock (the second is the collection id).
LOCK_KEY = 70_211_498


@dataclasses.dataclass(frozen=True)
class Due:
    """A collection that should get its index now."""

    id: int
    name: str
    method: str
    options: dict[str, Any]

    def build_params(self) -> dict[str, Any]:
        keys = ("m", "ef_construction") if self.method == "hnsw" else ("lists",)
        return {key: self.options[key] for key in keys if key in self.options}


def due(conn: psycopg.Connection, collection_ids: list[int] | None = None) -> list[Due]:
    """Collections past their automatic-index row count that have no ANN index yet."""
    with conn.cursor(row_factory=class_row(Due)) as cur:
        cur.execute(queries.get("auto_index_due"), {"ids": collection_ids})
        return cur.fetchall()


def build(db: database.Database, collection: Due) -> indexes.BuildResult | None:
    """Build the index unless another process holds the collection's lock or already built it."""
    with db.connect(autocommit=True) as conn:
        locked = conn.execute(
            queries.get("try_collection_lock"), {"key": LOCK_KEY, "collection_id": collection.id}
        ).fetchone()
        if not locked or not locked[0]:
            return None
        try:
            if not due(conn, [collection.id]):
                return None
            logger.info(
                "%s passed its automatic index row count: building %s",
                collection.name,
                collection.method,
            )
            return indexes.create(
                db, collection.name, method=collection.method, **collection.build_params()
            )
        finally:
            conn.execute(
                queries.get("collection_unlock"), {"key": LOCK_KEY, "collection_id": collection.id}
            )


class AutoIndexer:
    """Checks the collections a worker wrote to, and runs at most one build at a time.

    A collection is checked at most every ``interval`` seconds while batches keep coming, and
    once more when the worker runs out of work, so the last rows of a load count too.
    """

    def __init__(self, db: database.Database, interval: float = 10.0) -> None:
        self.db = db
        self.interval = interval
        self._written: set[int] = set()
        self._checked: dict[int, float] = {}
        self._thread: threading.Thread | None = None
        self._unsupported = False

    def wrote(self, collection_ids: list[int]) -> None:
        """Remember collections that got new rows."""
        self._written.update(collection_ids)

    def check(self, conn: psycopg.Connection, *, idle: bool = False) -> None:
        """Start a build for the first collection that is due, unless one is running."""
        if self._unsupported or (self._thread is not None and self._thread.is_alive()):
            return
        now = time.monotonic()
        ids = [
            i
            for i in self._written
            if idle or now - self._checked.get(i, -math.inf) >= self.interval
        ]
        if not ids:
            return
        self._written.difference_update(ids)
        self._checked.update(dict.fromkeys(ids, now))
        try:
            with errors.translated():
                found = due(conn, ids)
        except errors.SchemaOutdated as exc:
            # A schema older than this pyembed: embed on, without automatic indexes.
            logger.warning("automatic indexes need `pyembed db upgrade` (%s)", exc.message)
            self._unsupported = True
            return
        if found:
            self._thread = threading.Thread(
                target=self._run, args=(found[0],), name="pyembed-auto-index"
            )
            self._thread.start()

    def _run(self, collection: Due) -> None:
        try:
            build(self.db, collection)
        except (psycopg.Error, errors.PyembedError) as exc:
            # indexes.create recorded the failed build; the collection's next write retries.
            logger.error("automatic index of %s failed: %s", collection.name, exc)

    def join(self) -> None:
        """Wait for a running build (a stopping worker lets it finish)."""
        if self._thread is not None:
            self._thread.join()
