"""Distilling a hosted model into a local one, from what the endpoint already embedded.

    python benchmarks/distill.py [--epochs 1] [--lr 1e-4] [--test-queries 600]

The "hosted" model is an OpenAI-compatible endpoint: `pyembed serve` on 127.0.0.1 serving
all-MiniLM-L6-v2 fine-tuned on the WordNet task's clicks (a stronger model than the packaged
one, as a hosted model would be). A collection over the WordNet corpus is embedded through it
and searched with its query vectors (3,000 logged searches, clicked). The packaged model is then
distilled from that collection (`pyembed train COLLECTION --base all-MiniLM-L6-v2 --loss distill
--teacher hosted`): the teacher's stored chunk vectors and logged query vectors are the data, so
the endpoint is asked for nothing while training. The table compares teacher, base and student:
exact-search NDCG@10 and R@10 on the 600 test queries, and the mean cosine of each local model's
vectors to the teacher's (held-out texts of the run; the test queries).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import common
import numpy as np
from psycopg.types.json import Jsonb

from pyembed.db import connection, database
from pyembed.evaluation import eval_sets, retrieval
from pyembed.ingest import worker
from pyembed.models import encoder, endpoint_client, endpoint_registry, loading
from pyembed.serve import http_api
from pyembed.training import options, runs

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.helpers import serving  # the tests' uvicorn-on-a-free-port helper

KS = (1, 10)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train-queries", type=int, default=3000)
    parser.add_argument("--test-queries", type=int, default=600)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--limit", type=int, default=None, help="corpus documents (default all)")
    args = parser.parse_args(argv)
    train_queries = common.wordnet_queries("train")[: args.train_queries]
    test_queries = common.wordnet_queries("test")[: args.test_queries]
    with common.scratch_database() as dsn, connection.connect(dsn, autocommit=True) as conn:
        db = database.Database(dsn)
        common.load_wordnet(dsn, conn, limit=args.limit)
        common.replay_clicks(conn, "nouns", train_queries)
        teacher_local = runs.train(db, "nouns", options=options.TrainOptions())
        number = conn.execute(
            "SELECT version FROM pyembed.model_versions WHERE id = %s",
            (teacher_local.version_id,),
        ).fetchone()[0]  # type: ignore[index]
        with serving(http_api.create_app(db)) as url:
            endpoint_registry.allow_origins(db, [url])
            hosted = endpoint_registry.register_endpoint(
                db,
                "hosted",
                endpoint_client.EndpointSpec(
                    base_url=f"{url}/v1",
                    model=f"all-MiniLM-L6-v2@{number}",
                    dimensions=384,
                    send_input_type=True,
                    batch_size=64,
                    timeout_seconds=120,
                ),
                max_input_tokens=512,
            ).id
            conn.execute(
                "SELECT pyembed.create_collection('hosted_nouns', 'nouns', ARRAY['body'], "
                "model => 'hosted')"
            )
            common.console.print("embedding the corpus through the endpoint ...")
            stats = worker.Worker(db, worker.WorkerOptions(once=True)).run()
            assert stats.failures == 0, stats
            teacher = encoder.Encoder(loading.load(conn, hosted))
            _replay(conn, teacher, train_queries)
            eval_sets.create_set(
                conn,
                "hosted_nouns",
                "wordnet-test",
                "beir",
                [(text, {(doc,): 1.0}) for _, text, doc in test_queries],
            )
            test_texts = [text for _, text, _ in test_queries]
            teacher_queries = teacher.encode_queries(test_texts)
            requests_before = _served(url)
            with common.PeakMemory() as peak:
                student = runs.train(
                    db,
                    "hosted_nouns",
                    options=options.TrainOptions(
                        loss="distill",
                        base_version_id=1,
                        teacher_version_id=hosted,
                        epochs=args.epochs,
                        batch_size=args.batch_size,
                        learning_rate=args.lr,
                    ),
                )
            # The gate's evaluation of the teacher embeds the held-out queries: nothing more.
            asked = _served(url) - requests_before
            rows, extra = [], {}
            for label, version in (
                ("teacher: hosted endpoint", hosted),
                ("base: all-MiniLM-L6-v2", 1),
                ("student: distilled", student.version_id),
            ):
                metrics = _exact(db, version)
                mine = encoder.Encoder(loading.load(conn, version)).encode_queries(test_texts)
                cosine = float(np.mean(np.sum(_unit(mine) * _unit(teacher_queries), axis=1)))
                rows.append((label, metrics["ndcg@10"], metrics["recall@10"], cosine))
                extra[label] = {"version": version, "test": metrics}
    distilled = student.summary["distillation"]
    common.console.print(
        f"distillation data: {distilled['from']}; held-out texts {distilled['held_out_texts']}: "
        f"mean cosine to the teacher {distilled['held_out_mean_cosine']}; "
        f"{student.train_seconds:.1f} s, peak {peak.bytes / 2**30:.2f} GiB; "
        f"endpoint requests while distilling: {asked}"
    )
    common.report(
        "distill",
        f"Distilling a hosted model: WordNet nouns, {len(test_queries)} test queries, exact search",
        ("model", "NDCG@10", "R@10", "cosine to teacher (test queries)"),
        rows,
        {
            **extra,
            "distillation": distilled,
            "train_seconds": student.train_seconds,
            "peak_gib": peak.bytes / 2**30,
            "endpoint_requests_while_distilling": asked,
            "args": vars(args),
        },
    )


def _replay(conn: Any, teacher: encoder.Encoder, queries: list[tuple[str, str, str]]) -> None:
    """Searches as the application would send them, embedded by the endpoint; clicks on the
    relevant document when it is shown."""
    vectors = teacher.encode_queries([text for _, text, _ in queries])
    for (_, text, relevant), vector in zip(queries, vectors, strict=True):
        shown = conn.execute(
            "SELECT query_id, pk->>0 FROM pyembed.search('hosted_nouns', %s, 10, query_text => %s)",
            (vector, text),
        ).fetchall()
        if any(doc == relevant for _, doc in shown):
            conn.execute("SELECT pyembed.record_feedback(%s, %s)", (shown[0][0], Jsonb([relevant])))


def _exact(db: database.Database, version: int) -> dict[str, float]:
    found = retrieval.evaluate(
        db, "hosted_nouns", version_id=version, eval_set="wordnet-test", modes=("exact",), ks=KS
    )
    return found[0].metrics


def _served(url: str) -> int:
    """Embedding requests `pyembed serve` has answered (its /metrics counter)."""
    import urllib.request

    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    return int(
        sum(
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith("pyembed_requests_total{")
        )
    )


def _unit(matrix: np.ndarray) -> np.ndarray:
    return np.asarray(matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12))


if __name__ == "__main__":
    main()
