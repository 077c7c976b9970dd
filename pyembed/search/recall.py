"""Recall of a store's ANN index against an exact scan, and tuning its search setting.

Queries are real logged query vectors when there are enough, else stored embeddings.
``tune`` sweeps ef_search (HNSW), probes (IVFFlat) or, for binary storage, rerank (candidates per
result that the full vectors re-rank), and can make the cheapest setting that reaches a target
recall the collection's default for pyembed.search.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from pyembed import errors
from pyembed.db import database, queries
from pyembed.search import stores

logger = logging.getLogger(__name__)

HNSW_EF_SEARCH = (10, 20, 40, 80, 160, 320, 640, 1000)  # 1000: pgvector's limit
IVFFLAT_PROBES = (1, 2, 4, 8, 16, 32, 64)
BINARY_RERANK = (1, 2, 4, 8, 16, 32, 64, 128)
# pyembed.search fetches candidates for its 10 results in a power of two (see _nearest).
_FETCH_FOR_10 = 16


def sample_queries(conn: psycopg.Connection, store: stores.Store, n: int) -> list[Any]:
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
    conn: psycopg.Connection,
    store: stores.Store,
    vector: Any,
    exact: bool,
    rerank: int | None = None,
) -> tuple[set[str], float]:
    """The ctids of the 10 nearest rows: exactly, or as the collection's index finds them (for
    binary storage: the Hamming index's candidates re-ranked, as pyembed.search does)."""
    names = {"table": store.table, "op": store.operator_sql, "vtype": store.vector_type}
    binary = store.storage == "binary" and not exact
    if binary:
        query = queries.get("nearest_ctids_binary").format(bits=store.binary_key_sql, **names)
    else:
        query = queries.get("nearest_ctids").format(**names)
    params = {"q": vector, "candidates": _FETCH_FOR_10 * (rerank or store.rerank)}
    with conn.transaction():
        if exact:
            conn.execute(queries.get("exact_scan_only"), prepare=False)
        if binary:
            # More candidates than ef_search: the index goes on scanning, as in pyembed.search.
            conn.execute(queries.get("iterative_scan_local"), prepare=False)
        started = time.perf_counter()
        # prepare=False: a cached plan would ignore the planner setting just changed.
        rows = conn.execute(query, params, prepare=False).fetchall()
        return {row[0] for row in rows}, time.perf_counter() - started


def measure_recall(
    conn: psycopg.Connection, store: stores.Store, n: int
) -> tuple[float | None, int]:
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


# One-sided 95%: a chosen setting reaches the target on the collection's queries with that
# confidence, not only on the sample's average (which a second sample then misses half the time).
_Z_95 = 1.645


def lower_bound(recalls: list[float]) -> float:
    """The one-sided 95% lower confidence bound of the mean of per-query recalls."""
    if len(recalls) < 2:
        return statistics.fmean(recalls) if recalls else 0.0
    spread = statistics.stdev(recalls) / math.sqrt(len(recalls))
    return statistics.fmean(recalls) - _Z_95 * spread


def choose(curve: list[dict[str, float]], target_recall: float) -> dict[str, float] | None:
    """The cheapest point of a tuning curve whose recall@10 reaches the target with 95%
    confidence (its lower bound; curves stored before it had one use the mean), if any."""
    return next(
        (p for p in curve if p.get("recall_at_10_low", p["recall_at_10"]) >= target_recall), None
    )


def tune(
    db: database.Database,
    collection: str,
    *,
    queries_n: int = 100,
    target_recall: float | None = None,
) -> list[dict[str, float]]:
    """Sweep ef_search (HNSW) or probes (IVFFlat): recall@10 and latency at each, stored.

    With ``target_recall``, the cheapest setting that reaches it becomes the collection's default
    (pyembed.search uses it when a call does not say); a clear error if none does.
    """
    with errors.translated(), db.connect(autocommit=True) as conn:
        store = stores.store_of(conn, collection)
        built = stores.list_indexes(conn, store.store)
        if not built:
            raise errors.CollectionError(
                f"collection {collection!r} has no ANN index to tune",
                hint=f"build one first: pyembed index create {collection}",
            )
        method, index = built[0]["method"], built[0]["index_name"]
        binary = store.storage == "binary"
        # The option tuned, and the planner setting it is (binary: none, _nearest re-ranks).
        option, guc, values = (
            ("rerank", None, BINARY_RERANK)
            if binary
            else ("ef_search", ("hnsw", "ef_search"), HNSW_EF_SEARCH)
            if method == "hnsw"
            else ("probes", ("ivfflat", "probes"), IVFFLAT_PROBES)
        )
        vectors = sample_queries(conn, store, queries_n)
        exact = [_nearest(conn, store, v, exact=True)[0] for v in vectors]
        curve = []
        for value in values:
            if guc is not None:
                conn.execute(
                    sql.SQL("SET {} = {}").format(sql.Identifier(*guc), sql.Literal(value))
                )
            hits, latencies = [], []
            for vector, truth in zip(vectors, exact, strict=True):
                found, seconds = _nearest(
                    conn, store, vector, exact=False, rerank=value if binary else None
                )
                hits.append(len(found & truth) / len(truth) if truth else 1.0)
                latencies.append(seconds)
            curve.append(
                {
                    option: value,
                    "recall_at_10": statistics.fmean(hits),
                    "recall_at_10_low": lower_bound(hits),
                    "p50_ms": statistics.median(latencies) * 1000,
                    "qps": len(latencies) / sum(latencies),
                }
            )
        conn.execute(queries.get("index_build_tuning"), {"tuning": Jsonb(curve), "index": index})
        if target_recall is not None:
            chosen = choose(curve, target_recall)
            best = max(curve, key=lambda p: p["recall_at_10_low"])
            if chosen is None:
                raise errors.CollectionError(
                    f"no {option} up to {values[-1]} reaches recall@10 {target_recall} on "
                    f"{collection!r} with 95% confidence (best {best['recall_at_10']:.3f}, "
                    f"lower bound {best['recall_at_10_low']:.3f} over {len(vectors)} queries)",
                    hint="rebuild the index with larger parameters (m, ef_construction or "
                    "lists), tune with more --queries, or accept a lower target",
                )
            conn.execute(
                queries.get("set_index_option"),
                {"name": collection, "option": option, "value": int(chosen[option])},
            )
            logger.info("%s: %s %s is the default from now on", collection, option, chosen[option])
    return curve
