"""Ingestion: raw model.encode (the ceiling) vs the worker end to end vs a naive loop.

    python benchmarks/ingest.py [--limit 12000] [--naive-rows 600] [--lag-trials 10]

Same texts, same process, same loaded model. End to end = from the INSERT of all rows (one COPY,
the capture triggers enqueue them) to every row embedded in the store. The naive loop encodes
one row and INSERTs it with autocommit, row after row. Lag = an idle worker (sleeping on LISTEN)
from one INSERT to that row's embedding being in the store.
"""

from __future__ import annotations

import argparse
import threading
import time

import common

from pyembed import connection, encoder, model_loader, worker


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=12_000)
    parser.add_argument("--naive-rows", type=int, default=600)
    parser.add_argument("--lag-trials", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=1024)
    args = parser.parse_args(argv)

    docs = common.wordnet_corpus(args.limit)
    texts = [text for _, text in docs]
    with common.scratch_database() as dsn, connection.connect(dsn, autocommit=True) as conn:
        enc = encoder.Encoder(model_loader.load(conn, 1))
        enc.encode(texts[:64])  # warm-up
        raw_before = len(texts) / common.timed(lambda: enc.encode(texts))

        conn.execute("CREATE TABLE docs (id text PRIMARY KEY, body text)")
        conn.execute("SELECT pyembed.create_collection('bench', 'docs', ARRAY['body'])")
        options = worker.WorkerOptions(once=True, claim_size=args.batch_size)
        start = time.perf_counter()
        with conn.cursor() as cur, cur.copy("COPY docs (id, body) FROM STDIN") as copy:
            for row in docs:
                copy.write_row(row)
        stats = worker.Worker(dsn, options).run()
        e2e_seconds = time.perf_counter() - start
        embedded = conn.execute("SELECT count(*) FROM pyembed_store.bench_v1").fetchone()
        assert embedded == (len(docs),) and stats.failures == 0, (embedded, stats)
        e2e = len(docs) / e2e_seconds

        raw_after = len(texts) / common.timed(lambda: enc.encode(texts))
        raw = (raw_before + raw_after) / 2

        naive = _naive(conn, enc, docs[: args.naive_rows])
        lags, single_encode = _lag(dsn, conn, enc, args.lag_trials)

    rows = [
        ("raw model.encode, one call (ceiling)", raw, 1.0),
        ("  same, measured before", raw_before, raw_before / raw),
        ("  same, measured after", raw_after, raw_after / raw),
        ("worker end to end: INSERT → stored", e2e, e2e / raw),
        (f"naive encode + INSERT per row ({len(docs[: args.naive_rows])} rows)", naive,
         naive / raw),
    ]  # fmt: skip
    lag_median = common.median(lags)
    common.report(
        "ingest",
        f"Ingestion of {len(docs):,} WordNet documents (all-MiniLM-L6-v2, CPU)",
        ("path", "rows/s", "× ceiling"),
        rows,
        {
            "worker_vs_naive": e2e / naive,
            "lag_seconds": {"median": lag_median, "max": max(lags), "trials": lags},
            "single_encode_seconds": single_encode,
            "claim_size": args.batch_size,
        },
    )
    common.console.print(
        f"worker / naive: {e2e / naive:.2f}×   idle-worker lag INSERT → stored: median "
        f"{lag_median * 1000:.0f} ms, max {max(lags) * 1000:.0f} ms "
        f"(one-row encode alone: {single_encode * 1000:.0f} ms)"
    )


def _naive(conn: object, enc: encoder.Encoder, docs: list[tuple[str, str]]) -> float:
    assert hasattr(conn, "execute")
    conn.execute("CREATE TABLE naive (id text PRIMARY KEY, body text, embedding vector(384))")
    start = time.perf_counter()
    for doc_id, text in docs:
        vector = enc.encode([text])[0]
        conn.execute("INSERT INTO naive VALUES (%s, %s, %s)", (doc_id, text, vector))
    return len(docs) / (time.perf_counter() - start)


def _lag(dsn: str, conn: object, enc: encoder.Encoder, trials: int) -> tuple[list[float], float]:
    assert hasattr(conn, "execute")
    runner = worker.Worker(dsn, worker.WorkerOptions(poll_seconds=30.0))
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
    single = common.median([common.timed(lambda: enc.encode(["a freshly written row"]))
                            for _ in range(5)])  # fmt: skip
    return lags, single


if __name__ == "__main__":
    main()
