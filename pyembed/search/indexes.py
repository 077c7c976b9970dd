"""ANN indexes on a collection's active store: build, rebuild, drop, list, tune.

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
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import class_row, dict_row
from psycopg.types.json import Jsonb

from pyembed import errors
from pyembed.db import connection, queries

logger = logging.getLogger(__name__)

_OPS = {  # distance → (operator, operator class suffix)
    "cosine": ("<=>", "cosine_ops"),
    "l2": ("<->", "l2_ops"),
    "inner_product": ("<#>", "ip_ops"),
}
HNSW_EF_SEARCH = (10, 20, 40, 80, 160, 320, 640)
IVFFLAT_PROBES = (1, 2, 4, 8, 16, 32, 64)


@dataclasses.dataclass(frozen=True)
class Store:
    """The active store table of a collection."""

    id: int
    name: str
    distance: str
    version_id: int
    dimensions: int
    store: str

    @property
    def table(self) -> sql.Identifier:
        return sql.Identifier("pyembed_store", self.store)

    @property
    def vector_type(self) -> sql.SQL:
        return sql.SQL("halfvec" if self.dimensions > 2000 else "vector")

    @property
    def operator(self) -> sql.SQL:
        return sql.SQL(_OPS[self.distance][0])  # from a fixed table, never from input

    def opclass(self) -> sql.SQL:
        prefix = "halfvec" if self.dimensions > 2000 else "vector"
        return sql.SQL(f"{prefix}_{_OPS[self.distance][1]}")

    def index_name(self, method: str) -> str:
        return f"{self.store}_{method}"


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


def store_of(conn: psycopg.Connection, collection: str, version_id: int | None = None) -> Store:
    """The store of the collection's version (default: active), or a clear error."""
    with conn.cursor(row_factory=class_row(Store)) as cur:
        cur.execute(queries.get("collection_store"), {"name": collection, "version_id": version_id})
        found = cur.fetchone()
    if found is None:
        raise errors.CollectionError(
            f"collection {collection!r} does not exist",
            hint="list collections with SELECT * FROM pyembed.collection_status",
        )
    return found


def default_lists(rows: int) -> int:
    """IVFFlat lists: rows/1000 up to a million rows, sqrt(rows) above (pgvector's advice)."""
    return max(1, rows // 1000 if rows <= 1_000_000 else int(math.sqrt(rows)))


def create(
    dsn: str,
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
    with errors.translated(), connection.connect(dsn, autocommit=True) as conn:
        store = store_of(conn, collection, version_id)
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
            with _watch(dsn, f"pyembed_store.{store.store}", progress):
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
        recall, sample = measure_recall(conn, store, recall_queries)
        _finish(conn, build_id, "ready", seconds, size, recall, sample, None)
    logger.info("built %s (%s) in %.1f s, recall@10 %s", index, params, seconds, recall)
    return BuildResult(index, method, params, rows, seconds, size, recall, sample)


def _names(store: Store, method: str) -> dict[str, sql.Composable]:
    return {
        "index": sql.Identifier(_building_name(store, method)),
        "table": store.table,
        "opclass": store.opclass(),
    }


def _building_name(store: Store, method: str) -> str:
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

    def __init__(self, dsn: str, table: str, callback: ProgressCallback | None) -> None:
        self.dsn, self.table, self.callback = dsn, table, callback
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
        with connection.connect(self.dsn, autocommit=True, vector=False) as conn:
            while not self.done.wait(0.5):
                with conn.cursor(row_factory=dict_row) as cur:
                    cur.execute(queries.get("index_progress"), {"table": self.table})
                    row = cur.fetchone()
                if row is not None:
                    self.callback(row)


def sample_queries(conn: psycopg.Connection, store: Store, n: int) -> list[Any]:
    """Real logged query vectors when there are enough, else random stored embeddings."""
    logged = conn.execute(
        queries.get("logged_query_vectors"),
        {"collection_id": store.id, "dims": store.dimensions, "n": n},
    ).fetchall()
    if len(logged) >= n:
        return [row[0] for row in logged]
    sampled = conn.execute(queries.get("sample_store_vectors").format(table=store.table), {"n": n})
    return [row[0] for row in logged] + [row[0] for row in sampled.fetchall()][: n - len(logged)]


def _nearest(
    conn: psycopg.Connection, store: Store, vector: Any, exact: bool
) -> tuple[set[str], float]:
    query = queries.get("nearest_ctids").format(
        table=store.table, op=store.operator, vtype=store.vector_type
    )
    with conn.transaction():
        if exact:
            conn.execute("SET LOCAL enable_indexscan = off", prepare=False)
        started = time.perf_counter()
        # prepare=False: a cached plan would ignore the planner setting just changed.
        rows = conn.execute(query, {"q": vector}, prepare=False).fetchall()
        return {row[0] for row in rows}, time.perf_counter() - started


def measure_recall(conn: psycopg.Connection, store: Store, n: int) -> tuple[float | None, int]:
    """Mean recall@10 of the index against an exact scan, over a sample of queries."""
    vectors = sample_queries(conn, store, n)
    if not vectors:
        return None, 0
    recalls = []
    for vector in vectors:
        exact, _ = _nearest(conn, store, vector, exact=True)
        approx, _ = _nearest(conn, store, vector, exact=False)
        if exact:
            recalls.append(len(exact & approx) / len(exact))
    return (statistics.fmean(recalls) if recalls else None), len(vectors)


def choose(curve: list[dict[str, float]], target_recall: float) -> dict[str, float] | None:
    """The cheapest point of a tuning curve that reaches the target recall@10, if any."""
    return next((point for point in curve if point["recall_at_10"] >= target_recall), None)


def tune(
    dsn: str,
    collection: str,
    *,
    queries_n: int = 100,
    target_recall: float | None = None,
) -> list[dict[str, float]]:
    """Sweep ef_search (HNSW) or probes (IVFFlat): recall@10 and latency at each, stored.

    With ``target_recall``, the cheapest setting that reaches it becomes the collection's default
    (pyembed.search uses it when a call does not say); a clear error if none does.
    """
    with errors.translated(), connection.connect(dsn, autocommit=True) as conn:
        store = store_of(conn, collection)
        built = list_indexes(conn, store.store)
        if not built:
            raise errors.CollectionError(
                f"collection {collection!r} has no ANN index to tune",
                hint=f"build one first: pyembed index create {collection}",
            )
        method, index = built[0]["method"], built[0]["index_name"]
        setting, values = (
            ("hnsw.ef_search", HNSW_EF_SEARCH)
            if method == "hnsw"
            else ("ivfflat.probes", IVFFLAT_PROBES)
        )
        vectors = sample_queries(conn, store, queries_n)
        exact = [_nearest(conn, store, v, exact=True)[0] for v in vectors]
        curve = []
        for value in values:
            conn.execute(
                sql.SQL("SET {} = {}").format(
                    sql.Identifier(*setting.split(".")), sql.Literal(value)
                )
            )
            hits, latencies = [], []
            for vector, truth in zip(vectors, exact, strict=True):
                found, seconds = _nearest(conn, store, vector, exact=False)
                hits.append(len(found & truth) / len(truth) if truth else 1.0)
                latencies.append(seconds)
            curve.append(
                {
                    setting.split(".")[1]: value,
                    "recall_at_10": statistics.fmean(hits),
                    "p50_ms": statistics.median(latencies) * 1000,
                    "qps": len(latencies) / sum(latencies),
                }
            )
        conn.execute(queries.get("index_build_tuning"), {"tuning": Jsonb(curve), "index": index})
        if target_recall is not None:
            option = setting.split(".")[1]
            chosen = choose(curve, target_recall)
            if chosen is None:
                raise errors.CollectionError(
                    f"no {option} up to {values[-1]} reaches recall@10 {target_recall} on "
                    f"{collection!r} (best {max(p['recall_at_10'] for p in curve):.3f})",
                    hint="rebuild the index with larger parameters (m, ef_construction or "
                    "lists), or accept a lower target",
                )
            conn.execute(
                queries.get("set_index_option"),
                {"name": collection, "option": option, "value": int(chosen[option])},
            )
            logger.info("%s: %s %s is the default from now on", collection, option, chosen[option])
    return curve


def acts_as_owner(conn: psycopg.Connection) -> bool:
    """Whether the connection's role has the stores' owner's rights (superusers do)."""
    return bool(_scalar(conn, queries.get("acts_as_owner")))


def drop(dsn: str, collection: str, method: str | None = None) -> list[str]:
    """Drop the collection's ANN index(es) concurrently; returns their names."""
    with errors.translated(), connection.connect(dsn, autocommit=True) as conn:
        store = store_of(conn, collection)
        if not acts_as_owner(conn):
            names: list[str] = _scalar(
                conn, queries.get("drop_index_as_owner"), {"name": collection, "method": method}
            )
            for name in names:
                conn.execute(queries.get("index_build_dropped"), {"index": name, "keep": None})
            return names
        dropped = []
        for index in list_indexes(conn, store.store):
            if method in (None, index["method"]):
                name = index["index_name"]
                conn.execute(
                    queries.get("drop_index").format(index=sql.Identifier("pyembed_store", name))
                )
                conn.execute(queries.get("index_build_dropped"), {"index": name, "keep": None})
                dropped.append(name)
    return dropped


def list_indexes(conn: psycopg.Connection, store: str | None = None) -> list[dict[str, Any]]:
    """ANN indexes on store tables, with their latest recorded recall."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(queries.get("store_indexes"), {"store": store})
        return cur.fetchall()
