"""Search at 100,000 rows: exact scan vs HNSW vs IVFFlat, raw SQL vs pyembed.search.

    python benchmarks/search.py [--rows 100000] [--queries 200] [--target-recall 0.95]
                                [--methods hnsw,ivfflat]

The 12,000 WordNet documents are embedded by the worker; the rest of the rows are noisy copies
of their vectors (cosine 0.80-0.95 to the original, so every query meets near-duplicates: a hard
case for an ANN index), written straight into the store. Queries are the task's real test
queries. For each method: build time, recall@10 against the exact scan, p50/p95 latency with one
client and queries/s with one and four clients, through `pyembed.search` (which logs every
search) and through the raw `ORDER BY embedding <=> q LIMIT 10` side by side, in the same run;
`pyembed.search` both as the admin and as a login in pyembed_reader, for which the store's
row-level security checks every candidate against the source. The ANN setting is the cheapest one
that `pyembed index tune --target-recall` finds.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from typing import Any

import common
import psycopg
from pgvector.psycopg import register_vector
from psycopg import conninfo

from pyembed.db import connection, database
from pyembed.models import encoder, loading
from pyembed.search import indexes, recall

RAW = "SELECT id FROM pyembed_store.nouns_v1 ORDER BY embedding <=> %s LIMIT 10"
PYEMBED = "SELECT pk->>0 FROM pyembed.search('nouns', %s, 10)"
UNLOGGED = "SELECT pk->>0 FROM pyembed.search('nouns', %s, 10, log => false)"
# Through an index, every path runs the queries this many times, one pass at a time and the paths
# in turn (latency: each query on every path in turn): one pass of 200 queries over four clients
# lasts a fraction of a second, and this machine's noise comes in bursts of seconds (the exact
# scan is slow enough with one pass).
INDEX_PASSES = 5


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--corpus", type=int, default=None, help="real documents (default all)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--target-recall", type=float, default=0.95)
    parser.add_argument("--results", default="search", help="name of the results JSON")
    parser.add_argument(
        "--methods",
        default="hnsw,ivfflat",
        help="ANN indexes to measure beside the exact scan (comma-separated)",
    )
    args = parser.parse_args(argv)

    rows: list[tuple[object, ...]] = []
    extra: dict[str, Any] = {}
    with common.scratch_database() as dsn, connection.connect(dsn, autocommit=True) as conn:
        common.load_wordnet(dsn, conn, limit=args.corpus)
        common.add_noisy_copies(conn, args.rows)
        # The scratch server is this run's own: its reader role goes with it.
        conn.execute("CREATE ROLE bench_reader LOGIN IN ROLE pyembed_reader")
        conn.execute("GRANT SELECT ON nouns TO pyembed_reader")
        reader = conninfo.make_conninfo(dsn, user="bench_reader")
        paths = (
            ("raw SQL", RAW, dsn),
            ("pyembed.search", PYEMBED, dsn),
            ("pyembed.search, log => false", UNLOGGED, dsn),
            ("pyembed.search, reader", PYEMBED, reader),
        )
        texts = [text for _, text, _ in common.wordnet_queries("test")[: args.queries]]
        vectors = encoder.Encoder(loading.load(conn, 1)).model.encode(texts, batch_size=64)
        truth: list[list[str]] = []
        exact = _measure(paths, vectors, None, args.clients, truth_out=truth)
        rows += _rows("exact scan", "-", None, exact, truth)
        for method in args.methods.split(","):
            built = indexes.create(database.Database(dsn), "nouns", method=method)
            curve = recall.tune(
                database.Database(dsn), "nouns", queries_n=100, target_recall=args.target_recall
            )
            option = "ef_search" if method == "hnsw" else "probes"
            chosen = recall.choose(curve, args.target_recall)
            assert chosen is not None
            setting = (
                f"hnsw.{option}" if method == "hnsw" else f"ivfflat.{option}",
                int(chosen[option]),
            )
            measured = _measure(paths, vectors, setting, args.clients)
            label = f"{method} ({', '.join(f'{k} {v}' for k, v in built.params.items())})"
            rows += _rows(label, f"{option} {setting[1]}", built.seconds, measured, truth)
            extra[method] = {"build": built.__dict__, "curve": curve, "chosen": chosen}
            indexes.drop(database.Database(dsn), "nouns")
    exact_qps = next(r[6] for r in rows if r[0] == "exact scan" and r[2] == "raw SQL")
    hnsw_qps = next(
        (r[6] for r in rows if str(r[0]).startswith("hnsw") and r[2] == "raw SQL"), None
    )
    if hnsw_qps is not None:
        extra["hnsw_vs_exact_qps"] = hnsw_qps / exact_qps
    common.report(
        args.results,
        f"Search over {args.rows:,} rows (384-d, cosine), {args.queries} real queries, "
        f"{args.clients} clients for the last column",
        (
            "method",
            "setting",
            "path",
            "recall@10",
            "p50 ms",
            "p95 ms",
            "q/s 1 client",
            f"q/s {args.clients} clients",
            "p50 × raw",
            "p50 − raw ms",
            "build s",
        ),
        rows,
        extra,
    )
    if hnsw_qps is not None:
        common.console.print(
            f"HNSW (raw) / exact scan (raw), queries/s: {hnsw_qps / exact_qps:.1f}×"
        )


def _session(dsn: str, setting: tuple[str, int] | None) -> psycopg.Connection:
    conn = psycopg.connect(dsn, autocommit=True)
    register_vector(conn)
    if setting is not None:
        conn.execute(f"SET {setting[0]} = {setting[1]}")
    return conn


def _latencies(
    paths: tuple[tuple[str, str, str], ...],
    vectors: Any,
    setting: tuple[str, int] | None,
    rounds: int,
) -> dict[str, dict[str, Any]]:
    """Each query on every path in turn, `rounds` times: this machine's noise comes in bursts
    of seconds, which would otherwise land on one path's whole run."""
    sessions = {name: _session(dsn, setting) for name, _, dsn in paths}
    out: dict[str, dict[str, Any]] = {name: {"found": [], "latencies": []} for name, _, _ in paths}
    try:
        for name, sql, _ in paths:
            for vector in vectors[:5]:  # warm-up: plans, caches
                sessions[name].execute(sql, (vector,)).fetchall()
        for round_ in range(rounds):
            for vector in vectors:
                for name, sql, _ in paths:
                    started = time.perf_counter()
                    found = [row[0] for row in sessions[name].execute(sql, (vector,)).fetchall()]
                    out[name]["latencies"].append(time.perf_counter() - started)
                    if round_ == 0:
                        out[name]["found"].append(found)
    finally:
        for session in sessions.values():
            session.close()
    return out


def _throughput(
    dsn: str, sql: str, vectors: Any, setting: tuple[str, int] | None, clients: int, passes: int
) -> float:
    sessions = [_session(dsn, setting) for _ in range(clients)]
    barrier = threading.Barrier(clients + 1)

    def work(conn: psycopg.Connection, part: Any) -> None:
        # Warm, as in _latencies: a new session's first searches compile pyembed's functions and
        # load its caches, which would otherwise count against the few queries each client runs.
        for vector in part[:5]:
            conn.execute(sql, (vector,)).fetchall()
        barrier.wait()
        for _ in range(passes):
            for vector in part:
                conn.execute(sql, (vector,)).fetchall()

    threads = [
        threading.Thread(target=work, args=(s, vectors[i::clients])) for i, s in enumerate(sessions)
    ]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    for session in sessions:
        session.close()
    return passes * len(vectors) / seconds


def _measure(
    paths: tuple[tuple[str, str, str], ...],
    vectors: Any,
    setting: tuple[str, int] | None,
    clients: int,
    *,
    truth_out: list[list[str]] | None = None,
) -> dict[str, dict[str, Any]]:
    passes = 1 if setting is None else INDEX_PASSES
    out = _latencies(paths, vectors, setting, passes)
    if truth_out is not None:
        truth_out.extend(out["raw SQL"]["found"])
    # Throughput one pass at a time, the paths in turn, for the same reason.
    for clients_n, key in ((1, "qps1"), (clients, "qpsN")):
        rates: dict[str, list[float]] = {name: [] for name, _, _ in paths}
        for _ in range(passes):
            for name, sql, dsn in paths:
                rates[name].append(_throughput(dsn, sql, vectors, setting, clients_n, 1))
        for name, per_pass in rates.items():
            # Queries over seconds of all passes: the harmonic mean of the per-pass rates.
            out[name][key] = statistics.harmonic_mean(per_pass)
    return out


def _rows(
    label: str,
    setting: str,
    build: float | None,
    measured: dict[str, dict[str, Any]],
    truth: list[list[str]],
) -> list[tuple[object, ...]]:
    raw_p50 = statistics.median(measured["raw SQL"]["latencies"])
    rows = []
    for path, m in measured.items():
        recall_at_10 = statistics.fmean(
            len(set(f) & set(t)) / len(t) for f, t in zip(m["found"], truth, strict=True)
        )
        lat = sorted(m["latencies"])
        p50, p95 = statistics.median(lat), lat[int(0.95 * (len(lat) - 1))]
        rows.append(
            (
                label,
                setting,
                path,
                recall_at_10,
                p50 * 1000,
                p95 * 1000,
                m["qps1"],
                m["qpsN"],
                p50 / raw_p50,
                (p50 - raw_p50) * 1000,
                "-" if build is None else build,
            )
        )
    return rows


if __name__ == "__main__":
    main()
