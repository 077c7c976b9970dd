"""Second-stage reranking learned from the log, measured through `pyembed.search(..., rerank => N)`.

    python benchmarks/rerank.py [--train-queries 3000] [--test-queries 600] [--candidates 20,50]

Needs plpython3u (scripts/setup_pg15_plpython.sh): the reranker runs inside the database
(embed_mode 'local'), as `pyembed.rerank` does for a search. The 12,000 WordNet documents are
embedded with the packaged all-MiniLM-L6-v2 and indexed (HNSW); the train queries are replayed as
users would search, with a click on the relevant document whenever it is in the top 10. From that
log alone `pyembed train-reranker` trains a cross-encoder (BCE, 4 negatives: the rows shown above
the click, then other searches' rows) and `pyembed train` a fine-tuned bi-encoder (hard negatives
from the log). On the test queries, through `pyembed.search`: each bi-encoder alone and with the
reranker over its top N; NDCG@10, MRR@10 and the median latency of a search.
"""

from __future__ import annotations

import argparse
import os
import sysconfig
import time
from pathlib import Path
from typing import Any

import common

import pyembed
from pyembed.db import connection, database, host
from pyembed.evaluation import ir_metrics
from pyembed.models import backend_settings, encoder, loading, switches
from pyembed.search import indexes
from pyembed.training import options as train_options
from pyembed.training import reranker_runs, runs, sources

KS = (10,)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train-queries", type=int, default=3000)
    parser.add_argument("--test-queries", type=int, default=600)
    parser.add_argument("--candidates", default="20,50", help="rerank => N values")
    parser.add_argument("--limit", type=int, default=None, help="corpus documents (default all)")
    args = parser.parse_args(argv)
    candidates = [int(n) for n in args.candidates.split(",")]

    train_queries = common.wordnet_queries("train")[: args.train_queries]
    test_queries = common.wordnet_queries("test")[: args.test_queries]
    rows: list[tuple[object, ...]] = []
    extra: dict[str, Any] = {}
    with (
        common.scratch_database(plpython=True) as dsn,
        connection.connect(dsn, autocommit=True) as conn,
    ):
        db = database.Database(dsn)
        common.load_wordnet(dsn, conn, limit=args.limit)
        indexes.create(db, "nouns")
        clicks = common.replay_clicks(conn, "nouns", train_queries)
        common.console.print(f"replayed {len(train_queries)} searches: {clicks} clicks logged")
        _local_mode(conn)

        reranker = reranker_runs.train(db, "nouns")
        common.console.print(
            f"reranker {reranker.model} (version {reranker.version_id}): "
            f"{reranker.summary.get('examples')} examples, {reranker.train_seconds:.0f} s"
        )
        fine_tuned = runs.train(
            db,
            "nouns",
            sources.from_feedback(conn, "nouns", negatives_per_pair=1),
            options=train_options.TrainOptions(
                batch_size=64, learning_rate=3e-5, use_negatives=True
            ),
        )
        extra["training"] = {
            "reranker": {
                "version_id": reranker.version_id,
                "seconds": reranker.train_seconds,
                "peak_bytes": reranker.peak_memory_bytes,
                "summary": reranker.summary,
            },
            "bi_encoder": {
                "version_id": fine_tuned.version_id,
                "seconds": fine_tuned.train_seconds,
            },
        }
        for label, version in (
            ("all-MiniLM-L6-v2 (base)", 1),
            ("fine-tuned from the log", fine_tuned.version_id),
        ):
            if version != 1:
                switches.promote(db, "nouns", version, reason="benchmark: the fine-tuned model")
            vectors = encoder.Encoder(loading.load(conn, version)).encode_queries(
                [text for _, text, _ in test_queries]
            )
            for rerank in [None, *candidates]:
                measured = _measure(conn, test_queries, vectors, rerank)
                rows.append(
                    (
                        label,
                        f"top {rerank}" if rerank else "-",
                        measured["ndcg@10"],
                        measured["mrr@10"],
                        measured["p50_ms"],
                        measured["p95_ms"],
                    )
                )
                extra[f"{label}, rerank {rerank}"] = measured
    for row in rows:
        base = next(r for r in rows if r[0] == row[0] and r[1] == "-")
        common.console.print(
            f"{row[0]}, reranker {row[1]}: NDCG@10 {row[2]:.3f} "  # type: ignore[str-format]
            f"({(row[2] - base[2]) * 100:+.1f} points)"  # type: ignore[operator]
        )
    common.report(
        "rerank",
        f"Reranking learned from the log: WordNet nouns, {len(test_queries)} test queries through "
        "pyembed.search (HNSW; the reranker in the backend), 2 CPU cores",
        ("bi-encoder", "reranker", "NDCG@10", "MRR@10", "p50 ms", "p95 ms"),
        rows,
        {"clicks": clicks, **extra},
    )


def _local_mode(conn: Any) -> None:
    """The reranker loads inside the backend: the server process needs pyembed's packages."""
    paths = [sysconfig.get_paths()["purelib"], str(Path(pyembed.__file__).resolve().parents[1])]
    if os.geteuid() == 0:  # the server runs as its own OS user
        for path in paths:
            host.open_parents(Path(path))
    backend_settings.configure(conn, {"embed_mode": "local", "python_path": ":".join(paths)})


def _measure(
    conn: Any, queries: list[tuple[str, str, str]], vectors: Any, rerank: int | None
) -> dict[str, float]:
    """NDCG@10 and MRR@10 of the active version (reranked over its top N) and search latency."""
    search = (
        "SELECT pk FROM pyembed.search('nouns', %s, 10, query_text => %s, rerank => %s, "
        "log => false)"
    )
    conn.execute(search, (vectors[0], queries[0][1], rerank)).fetchall()  # loads the reranker
    ranked, latencies = [], []
    for (_, text, relevant), vector in zip(queries, vectors, strict=True):
        started = time.perf_counter()
        found = conn.execute(search, (vector, text, rerank)).fetchall()
        latencies.append((time.perf_counter() - started) * 1000)
        ranked.append(([tuple(pk) for (pk,) in found], {(relevant,): 1.0}))
    metrics = ir_metrics.mean_metrics(ranked, KS)
    latencies.sort()
    return {
        **metrics,
        "p50_ms": common.median(latencies),
        "p95_ms": latencies[int(0.95 * (len(latencies) - 1))],
    }


if __name__ == "__main__":
    main()
