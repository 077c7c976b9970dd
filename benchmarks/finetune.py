"""The headline: fine-tune from the query log alone, measured through the SQL search path.

    python benchmarks/finetune.py [--train-queries 3000] [--epochs 1] [--supervised]
                                  [--variants in-batch,negatives,cached-negatives]

The 12,000 WordNet documents are embedded with the packaged all-MiniLM-L6-v2 and indexed. The
3,000 train queries are replayed through `pyembed.search` as users would search, and a click is
recorded on the relevant document whenever it is in the top 10 (nothing otherwise, as real logs
would). `pyembed train` then learns from those logs alone (10% of the logged queries held out):
with in-batch negatives only, with hard negatives from the log (rows shown above the click), and
with those hard negatives under the cached loss (CachedMNRL: the same batch of 64, gradients in
mini-batches of 16, so memory does not grow with it; a learning policy's default). Each result
is promoted and measured with the base on the 600 test queries through `pyembed.search` (the
deployed path: HNSW index, one row per document). `--supervised` adds the fully supervised
reference: all 3,000 train pairs, no log.
"""

from __future__ import annotations

import argparse
from typing import Any

import common

from pyembed.db import connection, database
from pyembed.evaluation import eval_sets, retrieval
from pyembed.models import switches
from pyembed.search import indexes
from pyembed.training import options as train_options
from pyembed.training import runs, sources

KS = (1, 10)
# name: (label, hard negatives, loss)
VARIANTS = {
    "in-batch": ("fine-tuned from the log, in-batch negatives", False, "mnrl"),
    "negatives": ("fine-tuned from the log + its hard negatives", True, "mnrl"),
    "cached-negatives": (
        "fine-tuned from the log + its hard negatives, cached MNRL",
        True,
        "cached_mnrl",
    ),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train-queries", type=int, default=3000)
    parser.add_argument("--test-queries", type=int, default=600)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--supervised", action="store_true")
    parser.add_argument("--limit", type=int, default=None, help="corpus documents (default all)")
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help="comma-separated, of: " + ", ".join(VARIANTS) + " (peak memory is the process's: "
        "run one alone to measure its own)",
    )
    args = parser.parse_args(argv)
    wanted = [name.strip() for name in args.variants.split(",") if name.strip()]
    unknown = sorted(set(wanted) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")

    train_queries = common.wordnet_queries("train")[: args.train_queries]
    test_queries = common.wordnet_queries("test")[: args.test_queries]
    rows: list[tuple[object, ...]] = []
    extra: dict[str, Any] = {}
    with common.scratch_database() as dsn, connection.connect(dsn, autocommit=True) as conn:
        common.load_wordnet(dsn, conn, limit=args.limit)
        indexes.create(database.Database(dsn), "nouns")
        clicks = common.replay_clicks(conn, "nouns", train_queries)
        eval_sets.create_set(
            conn,
            "nouns",
            "wordnet-test",
            "beir",
            [(text, {(doc,): 1.0}) for _, text, doc in test_queries],
        )
        base = _measure(dsn)
        rows.append(("all-MiniLM-L6-v2 (base)", "-", *_cells(base), "-", "-"))
        common.console.print(f"replayed {len(train_queries)} searches: {clicks} clicks logged")
        variants: list[tuple[str, sources.TrainingData | None, bool, str]] = [
            (label, None, negatives, loss)
            for label, negatives, loss in (VARIANTS[name] for name in wanted)
        ]
        if args.supervised:
            supervised = sources.TrainingData(
                [sources.Pair(text, _doc_text(conn, doc)) for _, text, doc in train_queries],
                [],
                {"source": "supervised qrels", "pairs": len(train_queries)},
            )
            variants.append(
                ("fully supervised reference (all train pairs)", supervised, False, "mnrl")
            )
        for label, data, negatives, loss in variants:
            if data is None:
                data = sources.from_feedback(
                    conn, "nouns", negatives_per_pair=1 if negatives else 0
                )
            options = train_options.TrainOptions(
                epochs=args.epochs,
                batch_size=args.batch_size,
                learning_rate=args.lr,
                use_negatives=negatives,
                loss=loss,
                mini_batch_size=16,
            )
            with common.PeakMemory() as peak:
                result = runs.train(database.Database(dsn), "nouns", data, options=options)
            switches.promote(database.Database(dsn), "nouns", result.version_id, reason=label)
            measured = _measure(dsn)
            rows.append(
                (
                    label,
                    data.summary.get("pairs"),
                    *_cells(measured),
                    result.train_seconds,
                    peak.bytes / 2**30,
                )
            )
            extra[label] = {
                "summary": data.summary,
                "held_out_base": result.base_metrics,
                "held_out_new": result.new_metrics,
                "test": measured,
            }
            switches.rollback(
                database.Database(dsn),
                "nouns",
                reason="benchmark: next variant starts from the base",
            )
    base_ndcg = base["ndcg@10"]
    for row in rows[1:]:
        common.console.print(
            f"{row[0]}: NDCG@10 {row[2]:.3f} ({(row[2] - base_ndcg) * 100:+.1f} "  # type: ignore[operator]
            "points over the base)"
        )
    common.report(
        "finetune",
        f"Fine-tuning from the query log: WordNet nouns, {len(test_queries)} test queries through "
        "pyembed.search (HNSW), 2 CPU cores",
        ("model", "pairs", "NDCG@10", "MRR@10", "R@1", "R@10", "train s", "peak GiB"),
        rows,
        {"base": base, "clicks": clicks, **extra},
    )


def _doc_text(conn: Any, doc: str) -> str:
    row = conn.execute("SELECT body FROM nouns WHERE id = %s", (doc,)).fetchone()
    return str(row[0])


def _measure(dsn: str) -> dict[str, float]:
    """The active version on the test set through pyembed.search (the deployed path)."""
    result = retrieval.evaluate(
        database.Database(dsn), "nouns", eval_set="wordnet-test", modes=("deployed",), ks=KS
    )
    return result[0].metrics


def _cells(m: dict[str, float]) -> tuple[float, ...]:
    return (m["ndcg@10"], m["mrr@10"], m["recall@1"], m["recall@10"])


if __name__ == "__main__":
    main()
