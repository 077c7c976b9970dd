"""Filtered search at 100,000 rows: recall@10 and latency at 50%, 10%, 1% and 0.1% of the rows.

    python benchmarks/filters.py [--rows 100000] [--queries 200] [--target-recall 0.95]

The rows are search.py's: the 12,000 WordNet documents, embedded by the worker, and noisy copies
of their vectors up to --rows. Column `bucket` of the source holds 0-999, a hash of the row's
key; the filter {"bucket": {"$lt": N}} keeps N/1000 of the rows. The store has an HNSW index,
tuned (`index tune --target-recall`) on the logged unfiltered searches of the training queries.
For each share of rows, without and then with a B-tree index on `bucket`: recall@10 of
`pyembed.search` against the exact answer (numpy over every stored vector of the kept rows),
p50/p95 latency over the test queries, and the access path the planner chose for the search's
query (from auto_explain).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import common
import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg.types.json import Jsonb

from pyembed.db import connection, database
from pyembed.models import encoder, loading
from pyembed.search import indexes, recall

SEARCH = "SELECT pk->>0 FROM pyembed.search('nouns', %s, 10, filter => %s)"
SHARES = (1000, 500, 100, 10, 1)  # rows kept, per 1,000
ROUNDS = 2


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--corpus", type=int, default=None, help="real documents (default all)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--target-recall", type=float, default=0.95)
    parser.add_argument("--results", default="filters", help="name of the results JSON")
    args = parser.parse_args(argv)

    rows: list[tuple[object, ...]] = []
    extra: dict[str, Any] = {}
    with common.scratch_database() as dsn, connection.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        common.load_wordnet(dsn, conn, limit=args.corpus)
        ids, stored = common.add_noisy_copies(conn, args.rows)
        conn.execute("ALTER TABLE nouns ADD COLUMN bucket integer")
        # Not a change pyembed should re-embed for: the capture triggers stay out of it.
        conn.execute("ALTER TABLE nouns DISABLE TRIGGER USER")
        conn.execute("UPDATE nouns SET bucket = (hashtext(id) & 2147483647) % 1000")
        conn.execute("ALTER TABLE nouns ENABLE TRIGGER USER")
        conn.execute("VACUUM ANALYZE nouns")
        buckets = dict(conn.execute("SELECT id, bucket FROM nouns").fetchall())
        bucket_of = np.array([buckets[i] for i in ids])
        model = encoder.Encoder(loading.load(conn, 1)).model
        texts = [text for _, text, _ in common.wordnet_queries("test")[: args.queries]]
        vectors = model.encode(texts, batch_size=64)
        built = indexes.create(database.Database(dsn), "nouns", method="hnsw")
        # Tuned from the log, as a collection in use is: searches of the training queries (the
        # measured ones are the test queries, which tuning never sees).
        train = [text for _, text, _ in common.wordnet_queries("train")[:200]]
        for vector in model.encode(train, batch_size=64):
            conn.execute(SEARCH, (vector, None)).fetchall()
        curve = recall.tune(
            database.Database(dsn), "nouns", queries_n=100, target_recall=args.target_recall
        )
        chosen = recall.choose(curve, args.target_recall)
        assert chosen is not None
        extra["hnsw"] = {"build": built.__dict__, "chosen": chosen}
        unit = stored / np.linalg.norm(stored, axis=1, keepdims=True)
        for indexed in (False, True):
            if indexed:
                conn.execute("CREATE INDEX nouns_bucket ON nouns (bucket)")
                conn.execute("ANALYZE nouns")
            for share in SHARES:
                if indexed and share == 1000:
                    continue  # no filter: the index on bucket plays no part
                keep = bucket_of < share
                truth = _exact(unit, np.asarray(ids), keep, vectors)
                filter = None if share == 1000 else {"bucket": {"$lt": share}}
                found, latencies = _run(dsn, vectors, filter)
                plan = _plan(dsn, vectors[0], filter)
                recall_at_10 = statistics.fmean(
                    len(set(f) & set(t)) / len(t) if t else 1.0
                    for f, t in zip(found, truth, strict=True)
                )
                lat = sorted(latencies)
                rows.append(
                    (
                        "-" if filter is None else f"bucket < {share}",
                        f"{keep.mean() * 100:.1f}%",
                        int(keep.sum()),
                        "yes" if indexed else "no",
                        plan,
                        recall_at_10,
                        statistics.median(lat) * 1000,
                        lat[int(0.95 * (len(lat) - 1))] * 1000,
                    )
                )
    common.report(
        args.results,
        f"Filtered search over {args.rows:,} rows (HNSW, ef_search {int(chosen['ef_search'])}), "
        f"{args.queries} real queries, pyembed.search (logged)",
        (
            "filter",
            "rows kept",
            "rows",
            "B-tree on bucket",
            "planner's path",
            "recall@10",
            "p50 ms",
            "p95 ms",
        ),
        rows,
        extra,
    )


def _exact(unit: np.ndarray, ids: np.ndarray, keep: np.ndarray, vectors: Any) -> list[list[str]]:
    """The 10 nearest kept rows of every query, by cosine over the stored vectors."""
    kept_ids, kept = ids[keep], unit[keep]
    out = []
    for vector in vectors:
        scores = kept @ (vector / np.linalg.norm(vector))
        top = np.argsort(-scores)[:10]
        out.append([str(i) for i in kept_ids[top]])
    return out


def _run(
    dsn: str, vectors: Any, filter: dict[str, Any] | None
) -> tuple[list[list[str]], list[float]]:
    """Every query ROUNDS times, after a warm-up: the found keys of the first round, latencies."""
    param = None if filter is None else Jsonb(filter)
    found: list[list[str]] = []
    latencies: list[float] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        for vector in vectors[:5]:
            conn.execute(SEARCH, (vector, param)).fetchall()
        for round_ in range(ROUNDS):
            for vector in vectors:
                started = time.perf_counter()
                keys = [row[0] for row in conn.execute(SEARCH, (vector, param)).fetchall()]
                latencies.append(time.perf_counter() - started)
                if round_ == 0:
                    found.append(keys)
    return found, latencies


def _plan(dsn: str, vector: Any, filter: dict[str, Any] | None) -> str:
    """How the planner reads the rows for one search: the HNSW index, the B-tree on bucket, or
    a scan of every row (auto_explain's plans of the statements inside pyembed.search)."""
    plans: list[str] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        conn.add_notice_handler(lambda notice: plans.append(notice.message_primary or ""))
        conn.execute("LOAD 'auto_explain'")
        conn.execute("SET auto_explain.log_min_duration = 0")
        conn.execute("SET auto_explain.log_nested_statements = on")
        conn.execute("SET auto_explain.log_level = notice")
        conn.execute(SEARCH, (vector, None if filter is None else Jsonb(filter))).fetchall()
    scans = "\n".join(p for p in plans if "nouns_v1" in p)  # the search's query, not lookups
    if "nouns_bucket" in scans:
        return "B-tree on bucket, exact sort"
    if "nouns_v1_hnsw" in scans:
        return "HNSW (iterative scan)"
    if "Seq Scan" in scans:
        return "scan of every row, exact sort"
    return "?"


if __name__ == "__main__":
    main()
