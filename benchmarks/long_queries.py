"""Hybrid search with a long query text: the lexeme cap against a short query and no cap.

    python benchmarks/long_queries.py [--chars 40000] [--rounds 5]

The 12,000 WordNet documents are embedded by the worker; the long query text is the first
documents of the corpus joined (about 4,700 words). p50 of `pyembed.hybrid_search` (unlogged)
for a 3-word text, the long text as pyembed runs it (at most max_query_lexemes() lexemes), and the
long text with the cap lifted (this scratch database's max_query_lexemes() replaced), one run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import common
from pgvector.psycopg import register_vector

from pyembed.db import connection
from pyembed.models import encoder, loading

SEARCH = "SELECT * FROM pyembed.hybrid_search('nouns', %s, %s, k => 10, log => false)"
# Only in this benchmark's own scratch database: the cap lifted, to show what it bounds.
UNCAPPED = (
    "CREATE OR REPLACE FUNCTION pyembed.max_query_lexemes() RETURNS integer "
    "LANGUAGE sql IMMUTABLE AS 'SELECT 100000'"
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chars", type=int, default=40_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    long_text = " ".join(text for _, text in common.wordnet_corpus(400))[: args.chars]
    words = len(long_text.split())
    with common.scratch_database() as dsn, connection.connect(dsn, autocommit=True) as conn:
        common.load_wordnet(dsn, conn)
        register_vector(conn)
        vector = encoder.Encoder(loading.load(conn, 1)).encode_queries(["a stone wall"])[0]
        cap = conn.execute("SELECT pyembed.max_query_lexemes()").fetchone()
        rows: list[tuple[object, ...]] = []
        for label, text in (
            ("3 words", "a stone wall"),
            (f"{words:,} words, capped at {cap[0] if cap else '?'} lexemes", long_text),
            (f"{words:,} words, no cap", long_text),
        ):
            if label.endswith("no cap"):
                conn.execute(UNCAPPED)
            times = []
            for _ in range(args.rounds):
                started = time.perf_counter()
                conn.execute(SEARCH, (text, vector)).fetchall()
                times.append(time.perf_counter() - started)
            rows.append((label, statistics.median(times) * 1000))
    base = float(rows[0][1])  # type: ignore[arg-type]
    common.report(
        "long_queries",
        f"hybrid_search p50 on 12,000 WordNet rows, medians of {args.rounds} calls",
        ("query text", "p50 ms", "× 3 words"),
        [(label, ms, float(ms) / base) for label, ms in rows],  # type: ignore[arg-type]
        {"words": words},
    )


if __name__ == "__main__":
    main()
