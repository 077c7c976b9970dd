"""Hybrid search on the WordNet noun task: does fusing BM25 with the vectors beat either alone?

    python benchmarks/hybrid.py [--queries 600] [--limit 12000]

Embeds the 12,000-document corpus with the packaged all-MiniLM-L6-v2, then runs the 600 held-out
test queries through SQL four ways: pyembed.search (dense alone), hybrid_search with the dense
weight at 0 (BM25 alone), and hybrid_search fused by RRF at two text weights. Each query has one
relevant document; NDCG@10, MRR@10, Recall@1 and Recall@10 are averaged over the queries.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import common

from pyembed.db import connection
from pyembed.evaluation import ir_metrics
from pyembed.models import encoder, loading

PATHS: dict[str, tuple[str, dict[str, float]]] = {
    "dense alone (pyembed.search)": ("search", {}),
    "BM25 alone (hybrid, dense_weight 0)": ("hybrid", {"dense_weight": 0.0}),
    "hybrid RRF, weights 1 : 1": ("hybrid", {}),
    "hybrid RRF, weights 1 : 0.5": ("hybrid", {"text_weight": 0.5}),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=None, help="corpus documents (default all)")
    parser.add_argument("--queries", type=int, default=600)
    args = parser.parse_args(argv)

    test = common.wordnet_queries("test")[: args.queries]
    results: dict[str, dict[str, float]] = {}
    latencies: dict[str, list[float]] = {name: [] for name in PATHS}
    with common.scratch_database() as dsn, connection.connect(dsn, autocommit=True) as conn:
        docs = common.load_wordnet(dsn, conn, limit=args.limit)
        enc = encoder.Encoder(loading.load(conn, 1))
        vectors = enc.model.encode([text for _, text, _ in test], batch_size=64)
        for name, (kind, weights) in PATHS.items():
            runs = []
            for (_, text, relevant), vector in zip(test, vectors, strict=True):
                started = time.perf_counter()
                ranked = _run(conn, kind, text, vector, weights)
                latencies[name].append(time.perf_counter() - started)
                runs.append((ranked, {relevant: 1.0}))
            results[name] = ir_metrics.mean_metrics(runs, ks=(1, 10))

    dense = results[next(iter(PATHS))]["ndcg@10"]
    rows = [
        (
            name,
            m["ndcg@10"],
            m["ndcg@10"] - dense,
            m["mrr@10"],
            m["recall@1"],
            m["recall@10"],
            statistics.median(latencies[name]) * 1000,
        )
        for name, m in results.items()
    ]
    common.report(
        "hybrid",
        f"Hybrid search, WordNet nouns: {len(test)} test queries over {docs:,} documents "
        "(all-MiniLM-L6-v2, exact search)",
        ("path", "NDCG@10", "Δ vs dense", "MRR@10", "R@1", "R@10", "p50 ms"),
        rows,
        {"metrics": results},
    )


def _run(conn: Any, kind: str, text: str, vector: Any, weights: dict[str, float]) -> list[str]:
    if kind == "search":
        rows = conn.execute(
            "SELECT pk->>0 FROM pyembed.search('nouns', %s, 10, log => false)", (vector,)
        ).fetchall()
    else:
        rows = conn.execute(
            "SELECT pk->>0 FROM pyembed.hybrid_search('nouns', %s, %s, 10, "
            "dense_weight => %s, text_weight => %s, log => false)",
            (text, vector, weights.get("dense_weight", 1.0), weights.get("text_weight", 1.0)),
        ).fetchall()
    return [row[0] for row in rows]


if __name__ == "__main__":
    main()
