"""ANN indexes on a collection's active store: build, rebuild, drop, list.

Builds are always ``CONCURRENTLY`` (writers and the worker never wait), with
``maintenance_work_mem`` raised for the build (HNSW slows several-fold once its graph outgrows
it). Every build is recorded in pyembed.index_builds with its duration, size and the recall@10
it measured against an exact scan on a sample of real queries (logged ones when there are enough,
else stored embeddings).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from pyembed import errors
from pyembed.db import database, queries
from pyembed.search import recall, stores

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class BuildResult:
    """What `pyembed index create` reports."""

    index: str
    method: str
    params: dict[str, Any]
    rows: int
    seconds: float
    size_bytes: int
    recall_at_10: float | None
    recall_queries: int


ProgressCallback = Callable[[dict[str, Any]], None]


def default_lists(rows: int) -> int:
    """IVFFlat lists: rows/1000 up to a million rows, sqrt(rows) above (pgvector's advice)."""
    return max(1, rows // 1000 if rows <= 1_000_000 else int(math.sqrt(rows)))


def create(
    db: database.Database,
    collection: str,
    *,
    method: str = "hnsw",
    m: int = 16,
    ef_construction: int = 64,
    lists: int | None = None,
    maintenance_work_mem: str = "1GB",
    recall_queries: int = 100,
    progress: ProgressCallback | None = None,
    version_id: int | None = None,
) -> BuildResult:
    """Build the collection's ANN index concurrently, measure its recall and record it all.

    ``version_id`` builds on another store of the collection (a switch's pending version).
    """
    if method not in ("hnsw", "ivfflat"):
        raise errors.ConfigError(f"unknown index method {method!r}", hint="use hnsw or ivfflat")
    with errors.translated(), db.connect(autocommit=True) as conn:
        store = stores.store_of(conn, collection, version_id)
        rows = _scalar(conn, queries.get("store_rows").format(table=store.table))
        if method == "hnsw":
            params: dict[str, Any] = {"m": m, "ef_construction": ef_construction}
            ddl = queries.get("create_hnsw_index").format(
                m=sql.Literal(m),
                ef_construction=sql.Literal(ef_construction),
                **_names(store, method),
            )
        else:
            params = {"lists": lists or default_lists(rows)}
            ddl = queries.get("create_ivfflat_index").format(
                lists=sql.Literal(params["lists"]), **_names(store, method)
            )
        index = store.index_name(method)
        building = _building_name(store, method)
        owner = acts_as_owner(conn)
        if owner:
            # A failed earlier build leaves an invalid index behind: clear it first.
            conn.execute(queries.get("drop_index").format(index=_ident(building)))
        build_id = _scalar(
            conn,
            queries.get("index_build_start"),
            {
                "collection_id": store.id,
                "version_id": store.version_id,
                "index": index,
                "method": method,
                "params": Jsonb(params),
                "rows": rows,
            },
        )
        conn.execute(
            sql.SQL("SET maintenance_work_mem = {}").format(sql.Literal(maintenance_work_mem))
        )
        started = time.perf_counter()
        try:
            with _watch(db, f"pyembed_store.{store.store}", progress):
                if owner:
                    conn.execute(ddl)
                else:
                    # Only the store's owner may CREATE INDEX (CONCURRENTLY or not): build
                    # through pyembed's function, which holds off writes to the store meanwhile.
                    logger.info(
                        "role is not pyembed_owner: building %s without CONCURRENTLY "
                        "(workers' writes to this store wait for it)",
                        index,
                    )
                    conn.execute(
                        queries.get("build_index"),
                        {
                            "name": collection,
                            "method": method,
                            "params": Jsonb(params),
                            "version_id": store.version_id,
                        },
                    )
        except psycopg.Error as exc:
            if owner:
                conn.execute(queries.get("drop_index").format(index=_ident(building)))
            _finish(
                conn, build_id, "failed", time.perf_counter() - started, None, None, 0, str(exc)
            )
            raise
        seconds = time.perf_counter() - started
        conn.execute(queries.get("index_build_dropped"), {"index": index, "keep": build_id})
        if owner:
            # The old index served searches during the build; swap names only now.
            conn.execute(queries.get("drop_index").format(index=_ident(index)))
            conn.execute(
                queries.get("rename_index").format(old=_ident(building), new=sql.Identifier(index))
            )
        size = _scalar(conn, queries.get("index_size"), {"index": f"pyembed_store.{index}"})
        measured, sample = recall.measure_recall(conn, store, recall_queries)
        _finish(conn, build_id, "ready", seconds, size, measured, sample, None)
    logger.info("built %s (%s) in %.1f s, recall@10 %s", index, params, seconds, measured)
    return BuildResult(index, method, params, rows, seconds, size, measured, sample)


def _names(store: stores.Store, method: str) -> dict[str, sql.Composable]:
    return {
        "index": sql.Identifier(_building_name(store, method)),
        "table": store.table,
        "key": store.index_key_sql,
    }


def _building_name(store: stores.Store, method: str) -> str:
    return f"{store.index_name(method)}_new"


def _ident(index: str) -> sql.Identifier:
    return sql.Identifier("pyembed_store", index)


def _scalar(
    conn: psycopg.Connection, query: sql.SQL | sql.Composed, params: dict[str, Any] | None = None
) -> Any:
    row = conn.execute(query, params).fetchone()
    return row[0] if row else None


def _finish(
    conn: psycopg.Connection,
    build_id: int,
    status: str,
    seconds: float,
    size: int | None,
    recall: float | None,
    sample: int,
    error: str | None,
) -> None:
    conn.execute(
        queries.get("index_build_finish"),
        {
            "id": build_id,
            "status": status,
            "duration_ms": seconds * 1000,
            "size_bytes": size,
            "recall": recall,
            "queries": sample,
            "error": error,
        },
    )


class _watch:
    """Poll pg_stat_progress_create_index from a second connection while a build runs."""

    def __init__(
        self, db: database.Database, table: str, callback: ProgressCallback | None
    ) -> None:
        self.db, self.table, self.callback = db, table, callback
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="pyembed-index-progress")

    def __enter__(self) -> None:
        if self.callback is not None:
            self.thread.start()

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        if self.thread.is_alive():
            self.thread.join()

    def _run(self) -> None:
        assert self.callback is not None
        with self.db.connect(autocommit=True, vector=False) as conn:
            while not self.done.wait(0.5):
                with conn.cursor(row_factory=dict_row) as cur:
                    cur.execute(queries.get("index_progress"), {"table": self.table})
                    row = cur.fetchone()
                if row is not None:
                    self.callback(row)


def acts_as_owner(conn: psycopg.Connection) -> bool:
    """Whether the connection's role has the stores' owner's rights (superusers do)."""
    return bool(_scalar(conn, queries.get("acts_as_owner")))


def drop(db: database.Database, collection: str, method: str | None = None) -> list[str]:
    """Drop the collection's ANN index(es) concurrently; returns their names."""
    with db.session() as conn:
        store = stores.store_of(conn, collection)
        if not acts_as_owner(conn):
            names: list[str] = _scalar(
                conn, queries.get("drop_index_as_owner"), {"name": collection, "method": method}
            )
            for name in names:
                conn.execute(queries.get("index_build_dropped"), {"index": name, "keep": None})
            return names
        dropped = []
        for index in stores.list_indexes(conn, store.store):
            if method in (None, index["method"]):
                name = index["index_name"]
                conn.execute(
                    queries.get("drop_index").format(index=sql.Identifier("pyembed_store", name))
                )
                conn.execute(queries.get("index_build_dropped"), {"index": name, "keep": None})
                dropped.append(name)
    return dropped
