"""ONNX Runtime versions vs torch: worker throughput, query latency and retrieval quality.

    python benchmarks/runtimes.py [--limit 12000] [--rounds 2] [--test-queries 600]

The packaged all-MiniLM-L6-v2 (torch fp32) is converted with `pyembed models convert` to ONNX
fp32 and int8. For each round, each version embeds the same WordNet documents end to end (a new
collection over the same table, one worker run until the queue is empty); the versions alternate
within a round and medians are compared (this machine is noisy). Quality: NDCG@10 on the WordNet
noun test queries, exact (every chunk scored) and deployed (through the HNSW index), per version.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import common
import numpy as np

from pyembed.db import connection, database
from pyembed.evaluation import eval_sets, retrieval
from pyembed.ingest import worker
from pyembed.models import conversion, encoder, loading
from pyembed.search import indexes

MODEL = "all-MiniLM-L6-v2"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=12_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--test-queries", type=int, default=600)
    parser.add_argument("--latency-queries", type=int, default=200)
    args = parser.parse_args(argv)

    docs = common.wordnet_corpus(args.limit)
    test = common.wordnet_queries("test")[: args.test_queries]
    with common.scratch_database() as dsn, connection.connect(dsn, autocommit=True) as conn:
        db = database.Database(dsn)
        conn.execute("CREATE TABLE nouns (id text PRIMARY KEY, body text)")
        with conn.cursor() as cur, cur.copy("COPY nouns (id, body) FROM STDIN") as copy:
            for row in docs:
                copy.write_row(row)
        versions: dict[str, int] = {"torch fp32 (sentence-transformers)": 1}
        conversions: dict[str, Any] = {}
        for precision in ("fp32", "int8"):
            started = time.perf_counter()
            done = conversion.convert(db, 1, precision)  # type: ignore[arg-type]
            versions[f"onnxruntime {precision}"] = done.id
            produced = conn.execute(
                "SELECT produced_by FROM pyembed.model_versions WHERE id = %s", (done.id,)
            ).fetchone()
            conversions[precision] = {
                "version": done.version,
                "seconds": time.perf_counter() - started,
                "megabytes": done.size / 1e6,
                "probe_cosine": produced[0]["probe_cosine"] if produced else None,
            }
        rates: dict[str, list[float]] = {label: [] for label in versions}
        for round_number in range(args.rounds):
            for label, version_id in versions.items():
                rates[label].append(_worker_rate(dsn, conn, version_id, len(docs), round_number))
        quality = {
            label: _quality(db, conn, version_id, test) for label, version_id in versions.items()
        }
        latency = {
            label: _query_latency(conn, version_id, test, args.latency_queries)
            for label, version_id in versions.items()
        }

    base = common.median(rates["torch fp32 (sentence-transformers)"])
    base_quality = quality["torch fp32 (sentence-transformers)"]
    rows: list[tuple[object, ...]] = []
    for label in versions:
        rate = common.median(rates[label])
        q = quality[label]
        rows.append(
            (
                label,
                rate,
                rate / base,
                " / ".join(f"{v:.0f}" for v in rates[label]),
                q["exact"],
                (q["exact"] - base_quality["exact"]) * 100,
                q["deployed"],
                (q["deployed"] - base_quality["deployed"]) * 100,
                latency[label] * 1000,
            )
        )
    common.report(
        "runtimes",
        f"Runtimes of all-MiniLM-L6-v2: the worker embedding {len(docs):,} WordNet documents "
        f"(medians of {args.rounds} interleaved rounds) and NDCG@10 on {len(test)} test queries",
        (
            "version",
            "worker rows/s",
            "× torch",
            "rounds",
            "NDCG@10 exact",
            "Δ points",
            "NDCG@10 deployed",
            "Δ points",
            "query embed p50 ms",
        ),
        rows,
        {
            "conversions": conversions,
            "worker_rounds": rates,
            "quality": quality,
            "latency_p50_s": latency,
        },
    )
    for precision, made in conversions.items():
        common.console.print(
            f"{precision} conversion: {made['seconds']:.1f} s, {made['megabytes']:.1f} MB, "
            f"probe cosine {made['probe_cosine']}"
        )


def _worker_rate(dsn: str, conn: Any, version_id: int, rows: int, round_number: int) -> float:
    """rows/s of one worker run embedding every row of `nouns` into a new collection."""
    name = f"runtime_v{version_id}"
    if round_number:
        conn.execute("SELECT pyembed.drop_collection(%s)", (name,))
    ref = conn.execute(
        "SELECT m.name || '@' || v.version FROM pyembed.model_versions v "
        "JOIN pyembed.models m ON m.id = v.model_id WHERE v.id = %s",
        (version_id,),
    ).fetchone()
    assert ref is not None
    conn.execute(
        "SELECT pyembed.create_collection(%s, 'nouns', ARRAY['body'], model => %s)", (name, ref[0])
    )
    start = time.perf_counter()
    stats = worker.Worker(database.Database(dsn), worker.WorkerOptions(once=True)).run()
    seconds = time.perf_counter() - start
    assert stats.failures == 0 and stats.rows == rows, stats
    common.console.print(f"  {ref[0]}: {rows / seconds:.1f} rows/s")
    return rows / seconds


def _quality(
    db: database.Database, conn: Any, version_id: int, test: list[tuple[str, str, str]]
) -> dict[str, float]:
    name = f"runtime_v{version_id}"
    indexes.create(db, name)
    eval_sets.create_set(
        conn, name, "wordnet-test", "beir", [(text, {(doc,): 1.0}) for _, text, doc in test]
    )
    results = retrieval.evaluate(db, name, eval_set="wordnet-test")
    return {r.mode: r.metrics["ndcg@10"] for r in results}


def _query_latency(conn: Any, version_id: int, test: list[tuple[str, str, str]], n: int) -> float:
    """Median seconds to embed one query alone, as a search does."""
    enc = encoder.Encoder(loading.load(conn, version_id))
    enc.encode_queries(["warm-up"])
    times = []
    for _, text, _ in test[:n]:
        start = time.perf_counter()
        enc.encode_queries([text])
        times.append(time.perf_counter() - start)
    return float(np.median(times))


if __name__ == "__main__":
    main()
