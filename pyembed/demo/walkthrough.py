"""The demo: the whole loop on the embedded database, narrated.

Real documents (the Python standard library's docstrings) go into a table; pyembed embeds and
indexes them; searches run from SQL (vector, hybrid, domain-aware); users' searches and clicks
are replayed into the query log; a model is fine-tuned from that log, evaluated against the base
on held-out queries and promoted only if better; the before/after metrics come from the
evaluation tables, and an HTML report is written. Safe to run again: it starts its tables anew.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import re
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from pyembed.db import database, embedded, migrate, queries, status
from pyembed.demo import corpus
from pyembed.evaluation import eval_sets, report, retrieval
from pyembed.ingest import worker
from pyembed.models import encoder, loading
from pyembed.search import indexes, recall
from pyembed.training import options as train_options
from pyembed.training import runs, sources

logger = logging.getLogger(__name__)

DEMO_SQL = queries.Catalog.beside("pyembed.demo", "demo.sql")
COLLECTION = "stdlib"


@dataclasses.dataclass(frozen=True)
class DemoResult:
    """What the demo leaves behind for the user to look at."""

    dsn: str
    database: status.DatabaseStatus
    queries_to_try: tuple[str, ...]
    report: Path | None = None
    before: dict[str, float] = dataclasses.field(default_factory=dict)
    after: dict[str, float] = dataclasses.field(default_factory=dict)
    promoted: bool = False


@dataclasses.dataclass(frozen=True)
class Narrator:
    """How the demo speaks: a step title, a SQL statement, a small table."""

    step: Callable[[str], None] = lambda title: logger.info("%s", title)
    sql: Callable[[str], None] = lambda text: logger.info("%s", text)
    table: Callable[[str, list[str], list[list[Any]]], None] = lambda *a: None


def run(
    *, quick: bool = False, narrator: Narrator | None = None, report_path: Path | None = None
) -> DemoResult:
    """Run the demo on the embedded server (started if needed); safe to run again."""
    say = narrator or Narrator()
    started = time.monotonic()
    say.step("1. Start the embedded PostgreSQL and migrate it")
    server = embedded.EmbeddedServer()
    dsn = server.start().dsn
    assert dsn is not None
    db = database.Database(dsn)
    migrate.upgrade(db)
    docs = corpus.documents(limit=300 if quick else None, max_body=600 if quick else 1500)
    test_queries, train_queries = _split_queries(docs)
    with db.session() as conn:
        say.step(
            f"2. A table of {len(docs):,} real documents (the Python standard library's "
            "docstrings), registered as a collection"
        )
        _load(conn, docs)
        say.sql(
            "SELECT pyembed.create_collection('stdlib', 'demo.stdlib_docs',\n"
            "       template => '{name}: {body}');"
        )
        conn.execute(DEMO_SQL.get("demo_create_collection"))
        say.step("3. The worker embeds every row; an HNSW index is built concurrently")
        stats = worker.Worker(db, worker.WorkerOptions(collections=[COLLECTION], once=True)).run()
        built = indexes.create(db, COLLECTION, recall_queries=50)
        recall.tune(db, COLLECTION, queries_n=50)
        say.table(
            "embedded",
            ["rows", "chunks", "index", "build s", "recall@10"],
            [
                [
                    stats.rows,
                    stats.chunks,
                    built.index,
                    f"{built.seconds:.1f}",
                    f"{built.recall_at_10 or 0:.3f}",
                ]
            ],
        )
        say.step("4. Search from SQL: by vector, hybrid with keywords, ranked by domain")
        enc = encoder.Encoder(loading.load(conn, 1))
        _show_searches(conn, enc, say)
        say.step(
            f"5. Replay {len(train_queries):,} users' searches with their clicks, fine-tune "
            "from the log, evaluate against the base, promote only if better"
        )
        clicks = _replay(conn, enc, train_queries)
        test_set = eval_sets.create_set(
            conn, COLLECTION, "demo test queries", "manual", test_queries
        )
        before = _deployed(db)
        options = train_options.TrainOptions(
            epochs=1, batch_size=32 if quick else 64, max_seq_length=96 if quick else 192
        )
        result = runs.train(
            db,
            COLLECTION,
            sources.from_feedback(conn, COLLECTION, min_pairs=10),
            options=options,
            promote_if_better=True,
        )
        say.table(
            "training",
            [
                "clicks logged",
                "pairs",
                "seconds",
                "held-out NDCG@10 base",
                "held-out NDCG@10 new",
                "promoted",
            ],
            [
                [
                    clicks,
                    result.summary.get("pairs"),
                    f"{result.train_seconds:.0f}",
                    f"{result.base_metrics.get('ndcg@10', 0):.3f}",
                    f"{result.new_metrics.get('ndcg@10', 0):.3f}",
                    result.promoted,
                ]
            ],
        )
        after = _deployed(db) if result.promoted else before
        say.step("6. Before and after, from the evaluation tables; the HTML report")
        say.sql(_readable(DEMO_SQL.get("demo_before_after").as_string()))
        rows = conn.execute(DEMO_SQL.get("demo_before_after"), {"set_id": test_set}).fetchall()
        say.table(
            "test queries through pyembed.search",
            ["model version", "metric", "value"],
            [[r[0], r[1], f"{r[2]:.3f}"] for r in rows],
        )
        out = report_path or server.home / "report.html"
        report.write(db, out, COLLECTION)
    logger.info("demo finished in %.0f s", time.monotonic() - started)
    overview = status.database_status(db)
    db.close()
    return DemoResult(
        dsn=dsn,
        database=overview,
        report=out,
        before=before,
        after=after,
        promoted=result.promoted,
        queries_to_try=(
            "SELECT * FROM pyembed.collection_status;",
            "SELECT * FROM pyembed.eval_leaderboard WHERE collection = 'stdlib';",
            "SELECT action, from_version_id, to_version_id, reason, metrics "
            "FROM pyembed.deployments ORDER BY id;",
        ),
    )


Judged = list[tuple[str, dict[tuple[Any, ...], float]]]


def _split_queries(docs: list[corpus.Document]) -> tuple[Judged, list[tuple[str, str]]]:
    """A document's summary line is the query that finds it; 30% of them are kept for testing."""
    by_summary: dict[str, list[str]] = defaultdict(list)
    for doc in docs:
        by_summary[doc.summary].append(doc.name)
    summaries = sorted(by_summary)
    random.Random(7).shuffle(summaries)
    cut = len(summaries) * 3 // 10
    test = [(s, {(name,): 1.0 for name in by_summary[s]}) for s in summaries[:cut]]
    train = [(s, name) for s in summaries[cut:] for name in by_summary[s][:1]]
    return test, train


def _load(conn: psycopg.Connection, docs: list[corpus.Document]) -> None:
    conn.execute(DEMO_SQL.get("demo_reset"))
    conn.execute(DEMO_SQL.get("demo_table"))
    with conn.cursor() as cur, cur.copy(DEMO_SQL.get("demo_copy")) as copy:
        for doc in docs:
            copy.write_row((doc.name, doc.module, doc.kind, doc.body))


# (query text, named query, what the table shows, its columns)
_SEARCHES = (
    ("remove a file from the disk", "demo_search", "vector search", ["name", "similarity"]),
    (
        "gzip compress bytes",
        "demo_hybrid",
        "hybrid search",
        ["name", "dense rank", "text rank", "score"],
    ),
    (
        "parse a date",
        "demo_domain",
        "ranked by domain: datetime functions first",
        ["name", "similarity", "score"],
    ),
)


def _show_searches(conn: psycopg.Connection, enc: encoder.Encoder, say: Narrator) -> None:
    for text, query, title, columns in _SEARCHES:
        statement = DEMO_SQL.get(query)
        say.sql(_readable(statement.as_string()))
        vector = enc.encode_queries([text])[0]
        rows = conn.execute(statement, {"q": vector, "text": text}).fetchall()
        shown = [[f"{v:.4f}" if isinstance(v, float) else v for v in row] for row in rows]
        say.table(f"{title}: '{text}'", columns, shown)


def _readable(statement: str) -> str:
    """A named query as a person would type it: psql-style :name parameters."""
    return re.sub(r"%\((\w+)\)s", r":\1", statement)


def _replay(conn: psycopg.Connection, enc: encoder.Encoder, train: list[tuple[str, str]]) -> int:
    """Each query searched as a user would; a click when the document they wanted is shown."""
    vectors = enc.encode_queries([text for text, _ in train])
    clicks = 0
    for (text, wanted), vector in zip(train, vectors, strict=True):
        shown = conn.execute(
            DEMO_SQL.get("demo_user_search"), {"q": vector, "text": text}
        ).fetchall()
        if any(name == wanted for _, name in shown):
            conn.execute(DEMO_SQL.get("demo_click"), {"id": shown[0][0], "pk": Jsonb([wanted])})
            clicks += 1
    return clicks


def _deployed(db: database.Database) -> dict[str, float]:
    result = retrieval.evaluate(
        db, COLLECTION, eval_set="demo test queries", modes=("deployed",), ks=(1, 10)
    )
    return result[0].metrics
