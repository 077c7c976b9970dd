"""Ingestion: raw model.encode (the ceiling) vs the worker end to end vs a naive loop.

    python benchmarks/ingest.py [--limit 12000] [--rounds 2] [--batch-sizes 1024,2048] ...

Same texts, same process, same loaded model; raw encode and the worker alternate for --rounds
rounds and the medians are compared (this machine is noisy). End to end = from the INSERT of all
rows (one COPY; the capture triggers enqueue them) to every row embedded in the store. The naive
loop encodes one row and INSERTs it with autocommit, row after row. Lag = an idle worker
(sleeping on LISTEN) from one INSERT to that row's embedding being in the store.
"""

from __future__ import annotations

import argparse
import threading
import time
from typing import Any

import common

from pyembed.db import connection, database
from pyembed.ingest import worker
from pyembed.models import encoder, loading


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=12_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-sizes", default="1024,2048", help="worker claim sizes to compare")
    parser.add_argument("--naive-rows", type=int, default=600)
    parser.add_argument("--lag-trials", type=int, default=10)
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.batch_sizes.split(",")]

    docs = common.wordnet_corpus(args.limit)
    texts = [text for _, text in docs]
    raw: list[float] = []
    e2e: dict[int, list[float]] = {size: [] for size in sizes}
    with common.scratch_database() as dsn, connection.connect(dsn, autocommit=True) as conn:
        enc = encoder.Encoder(loading.load(conn, 1))
        enc.encode(texts[:64])  # warm-up
        conn.execute("CREATE TABLE docs (id text PRIMARY KEY, body text)")
        conn.execute("SELECT pyembed.create_collection('bench', 'docs', ARRAY['body'])")
        for _ in range(args.rounds):
            raw.append(len(texts) / common.timed(lambda: enc.encode(texts)))
            for size in sizes:
                e2e[size].append(_end_to_end(dsn, conn, docs, size))
        naive = _naive(conn, enc, docs[: args.naive_rows])
        lags, single_encode = _lag(dsn, conn, enc, args.lag_trials)

    ceiling = common.median(raw)
    rows: list[tuple[object, ...]] = [
        ("raw model.encode, one call (ceiling)", ceiling, 1.0, _spread(raw)),
    ]
    for size in sizes:
        rate = common.median(e2e[size])
        rows.append(
            (f"worker, claims of {size}: INSERT → stored", rate, rate / ceiling, _spread(e2e[size]))
        )
    rows.append(
        (
            f"naive encode + INSERT per row ({min(args.naive_rows, len(docs))} rows)",
            naive,
            naive / ceiling,
            "",
        )
    )
    best = max(common.median(e2e[size]) for size in sizes)
    lag_median = common.median(lags)
    common.report(
        "ingest",
        f"Ingestion of {len(docs):,} WordNet documents (all-MiniLM-L6-v2, CPU), "
        f"medians of {args.rounds} interleaved rounds",
        ("path", "rows/s", "× ceiling", "rounds"),
        rows,
        {
            "worker_vs_naive": best / naive,
            "lag_seconds": {"median": lag_median, "max": max(lags), "trials": lags},
            "single_encode_seconds": single_encode,
            "raw_rounds": raw,
            "worker_rounds": {str(k): v for k, v in e2e.items()},
        },
    )
    common.console.print(
        f"best worker / naive: {best / naive:.2f}×   idle-worker lag INSERT → stored: median "
        f"{lag_median * 1000:.0f} ms, max {max(lags) * 1000:.0f} ms "
        f"(one-row encode alone: {single_encode * 1000:.0f} ms)"
    )


def _spread(values: list[float]) -> str:
    return " / ".join(f"{v:.0f}" for v in values)


def _end_to_end(dsn: str, conn: Any, docs: list[tuple[str, str]], claim_size: int) -> float:
    """rows/s from one COPY of all rows into the source to all of them in the store."""
    conn.execute("TRUNCATE docs")
    options = worker.WorkerOptions(once=True, claim_size=claim_size)
    start = time.perf_counter()
    with conn.cursor() as cur, cur.copy("COPY docs (id, body) FROM STDIN") as copy:
        for row in docs:
            copy.write_row(row)
    stats = worker.Worker(database.Database(dsn), options).run()
    seconds = time.perf_counter() - start
    embedded = conn.execute("SELECT count(*) FROM pyembed_store.bench_v1").fetchone()
    assert embedded == (len(docs),) and stats.failures == 0, (embedded, stats)
    return len(docs) / seconds


def _naive(conn: Any, enc: encoder.Encoder, docs: list[tuple[str, str]]) -> float:
    conn.execute("CREATE TABLE naive (id text PRIMARY KEY, body text, embedding vector(384))")
    start = time.perf_counter()
    for doc_id, text in docs:
        vector = enc.encode([text])[0]
        conn.execute("INSERT INTO naive VALUES (%s, %s, %s)", (doc_id, text, vector))
    return len(docs) / (time.perf_counter() - start)


def _lag(dsn: str, conn: Any, enc: encoder.Encoder, trials: int) -> tuple[list[float], float]:
    runner = worker.Worker(database.Database(dsn), worker.WorkerOptions(poll_seconds=30.0))
    thread = threading.Thread(target=runner.run)
    thread.start()
    lags = []
    try:
        time.sleep(1.0)
        for trial in range(trials):
            key = f"lag-{trial}"
            start = time.perf_counter()
            conn.execute("INSERT INTO docs VALUES (%s, 'a freshly written row')", (key,))
            while not conn.execute(
                "SELECT 1 FROM pyembed_store.bench_v1 WHERE id = %s", (key,)
            ).fetchone():
                time.sleep(0.002)
            lags.append(time.perf_counter() - start)
            time.sleep(0.2)
    finally:
        runner.stop()
        thread.join()
    single = common.median(
        [common.timed(lambda: enc.encode(["a freshly written row"])) for _ in range(5)]
    )
    return lags, single


if __name__ == "__main__":
    main()
