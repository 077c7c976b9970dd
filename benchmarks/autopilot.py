"""The loop closes itself: simulated users search in waves, a worker learns, nobody runs a command.

    python benchmarks/autopilot.py [--waves 5] [--wave-queries 540] [--judged 300]

The 12,000 WordNet documents are embedded and indexed; a learning policy is set once
(pyembed.set_learning_policy: train after N new feedback signals, promote through the
significance gate) and a worker runs with the learner beside it (pyembed worker --learn). Then
only users act: each wave, the next slice of the train queries is searched through
pyembed.search by an application that embeds each query with the version serving the collection,
and clicks follow a position-biased model (the relevant row, when shown, is clicked with a
probability that falls with its rank; one search in ten also clicks a random shown row). After
each wave the table shows what the loop did by itself and NDCG@10 of the serving version on the
600 test queries the loop never sees. A background client searches without pause the whole
time: every failed or empty search is counted. At the end a deliberately bad candidate (trained
on shuffled pairs) is offered to the same gate.

The gate decides on a small judged sample imported once at setup (the last --judged train
queries with their relevant rows, as a DBA would import a few hundred judgments): the held-out
clicks of each run favour the serving model (only what it showed could be clicked), and on them
alone the loop refuses its own improvements as noise (see the README). --judged 0 shows that.
"""

from __future__ import annotations

import argparse
import json
import random
import threading
import time
from typing import Any

import common
import numpy as np
from psycopg.types.json import Jsonb

from pyembed.db import connection, database
from pyembed.evaluation import eval_sets, retrieval
from pyembed.ingest import worker
from pyembed.models import encoder, loading
from pyembed.search import client, indexes
from pyembed.training import policies, runs, sources

COLLECTION = "nouns"


class App:
    """The application: embeds queries with whatever version serves the collection now."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.version: int | None = None
        self.encoder: encoder.Encoder | None = None

    def embed(self, texts: list[str]) -> np.ndarray:
        row = self.conn.execute(
            "SELECT active_version_id FROM pyembed.collections WHERE name = %s", (COLLECTION,)
        ).fetchone()
        if row[0] != self.version or self.encoder is None:
            self.version, self.encoder = row[0], encoder.Encoder(loading.load(self.conn, row[0]))
        return self.encoder.encode_queries(texts)


def click_model(rank: int | None, rng: random.Random) -> bool:
    """Whether a user clicks the relevant row shown at ``rank`` (1-based): 0.9 at the top,
    falling as 1/sqrt(rank); never when it was not shown."""
    return rank is not None and rng.random() < 0.9 / rank**0.5


def wave(conn: Any, app: App, queries: list[tuple[str, str, str]], rng: random.Random) -> int:
    """The users of one wave search and click; returns the clicks."""
    clicks = 0
    for start in range(0, len(queries), 50):
        chunk = queries[start : start + 50]
        vectors = app.embed([text for _, text, _ in chunk])
        for (_, text, relevant), vector in zip(chunk, vectors, strict=True):
            hits = client.search(conn, COLLECTION, vector, 10, query_text=text)
            shown = [hit.pk[0] for hit in hits]
            rank = shown.index(relevant) + 1 if relevant in shown else None
            chosen = [relevant] if click_model(rank, rng) else []
            if rng.random() < 0.1 and shown:  # a noise click on any shown row
                chosen.append(rng.choice(shown))
            for pk in dict.fromkeys(chosen):
                conn.execute(
                    "SELECT pyembed.record_feedback(%s, %s)", (hits[0].query_id, Jsonb([pk]))
                )
                clicks += 1
    return clicks


class Background:
    """A client searching without pause (unlogged), counting failed and empty searches."""

    def __init__(self, dsn: str, texts: list[str]) -> None:
        self.dsn, self.texts = dsn, texts
        self.searches = self.failed = self.empty = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="background-searches")

    def __enter__(self) -> Background:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        with connection.connect(self.dsn, autocommit=True) as conn:
            app = App(conn)
            i = 0
            while not self._stop.is_set():
                text = self.texts[i % len(self.texts)]
                i += 1
                try:
                    hits = client.search(conn, COLLECTION, app.embed([text])[0], 10, log=False)
                    self.empty += not hits
                except Exception as exc:  # counted, and the client goes on like an app would
                    self.failed += 1
                    self.errors.append(repr(exc)[:300])
                self.searches += 1
                time.sleep(0.05)


def settle(conn: Any, timeout: float) -> None:
    """Wait until the learner has nothing due, running or switching (twice in a row)."""
    deadline, quiet = time.monotonic() + timeout, 0
    while time.monotonic() < deadline and quiet < 2:
        (status,) = policies.status(conn, [COLLECTION])
        busy = conn.execute(
            "SELECT c.pending_version_id IS NOT NULL OR EXISTS (SELECT FROM pyembed.training_runs"
            " r WHERE r.collection_id = c.id AND (r.status = 'running' OR (r.status = 'done' AND"
            " r.outcome IS NULL))) FROM pyembed.collections c WHERE c.name = %s",
            (COLLECTION,),
        ).fetchone()[0]
        quiet = 0 if status.due or busy else quiet + 1
        time.sleep(3)


def measure(dsn: str) -> dict[str, float]:
    """The serving version on the test queries through pyembed.search (the deployed path)."""
    done = retrieval.evaluate(
        database.Database(dsn), COLLECTION, eval_set="wordnet-test", modes=("deployed",), ks=(10,)
    )
    return done[0].metrics


def last_run(conn: Any, after: int) -> Any:
    """The newest training run after run ``after`` (None when the wave started none)."""
    return conn.execute(
        "SELECT id, data_summary->>'pairs', outcome, outcome_reason, result_version_id "
        "FROM pyembed.training_runs WHERE id > %s ORDER BY id DESC LIMIT 1",
        (after,),
    ).fetchone()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--waves", type=int, default=5)
    parser.add_argument("--wave-queries", type=int, default=540)
    parser.add_argument(
        "--judged", type=int, default=300, help="train queries imported as judgments (the gate)"
    )
    parser.add_argument("--min-feedback", type=int, default=250)
    parser.add_argument("--test-queries", type=int, default=600)
    parser.add_argument("--options", default="{}", help="the policy's train_options (JSON)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="corpus documents (default all)")
    args = parser.parse_args(argv)
    everything = common.wordnet_queries("train")
    judged_sample = everything[len(everything) - args.judged :] if args.judged else []
    train = everything[: min(args.waves * args.wave_queries, len(everything) - args.judged)]
    test = common.wordnet_queries("test")[: args.test_queries]
    rng = random.Random(args.seed)
    rows: list[tuple[object, ...]] = []
    extra: dict[str, Any] = {"waves": []}
    with common.scratch_database() as dsn, connection.connect(dsn, autocommit=True) as conn:
        db = database.Database(dsn)
        common.load_wordnet(dsn, conn, limit=args.limit)
        indexes.create(db, COLLECTION)
        judged = [(text, {(doc,): 1.0}) for _, text, doc in test]
        eval_sets.create_set(conn, COLLECTION, "wordnet-test", "beir", judged)
        gate_sets = []
        if judged_sample:
            sample = [(text, {(doc,): 1.0}) for _, text, doc in judged_sample]
            eval_sets.create_set(conn, COLLECTION, "judged-sample", "jsonl", sample)
            gate_sets = ["judged-sample"]
        policies.set_policy(
            conn,
            COLLECTION,
            min_feedback=args.min_feedback,
            min_interval="0",
            train_options=json.loads(args.options),
            eval_sets=gate_sets,
        )
        base = measure(dsn)
        rows.append(("0 (setup)", 0, 0, "-", "all-MiniLM-L6-v2 v1", base["ndcg@10"], 0.0))
        runner = worker.Worker(db, worker.WorkerOptions(collections=[COLLECTION]))
        embedding = threading.Thread(target=runner.run, name="worker")
        app, seen = App(conn), 0
        started = time.monotonic()
        with common.PeakMemory() as peak, Background(dsn, [t for _, t, _ in test]) as background:
            embedding.start()
            with policies.beside(runner, poll_seconds=2.0):
                for n in range(args.waves):
                    queries = train[n * args.wave_queries : (n + 1) * args.wave_queries]
                    clicks = wave(conn, app, queries, rng)
                    settle(conn, timeout=1800)
                    run = last_run(conn, seen)
                    seen = run[0] if run else seen
                    serving = conn.execute(
                        "SELECT active_model_version FROM pyembed.collection_status"
                    ).fetchone()[0]
                    measured = measure(dsn)
                    what = f"run {run[0]}: {run[2]} ({run[3]})" if run else "no run (not due)"
                    rows.append(
                        (
                            n + 1,
                            len(queries),
                            clicks,
                            run[1] if run else "-",
                            serving,
                            measured["ndcg@10"],
                            (measured["ndcg@10"] - base["ndcg@10"]) * 100,
                        )
                    )
                    extra["waves"].append({"clicks": clicks, "run": what, "test": measured})
                    common.console.print(f"wave {n + 1}: {clicks} clicks; {what}; {serving}")
                bad = _bad_candidate(db, conn, gate_sets)
            runner.stop()
            embedding.join()
        extra.update(
            {
                "base": base,
                "bad_candidate": bad,
                "background": {
                    "searches": background.searches,
                    "failed": background.failed,
                    "empty": background.empty,
                    "errors": background.errors[:5],
                },
                "seconds": time.monotonic() - started,
                "peak_memory_gib": peak.bytes / 2**30,
                "policy": vars(args),
            }
        )
    common.console.print(
        f"bad candidate (shuffled pairs): {bad['outcome']} - {bad['reason']}\n"
        f"background client: {background.searches} searches, {background.failed} failed, "
        f"{background.empty} empty; peak memory {peak.bytes / 2**30:.2f} GiB"
    )
    common.report(
        "autopilot",
        f"The loop by itself: WordNet nouns, {args.waves} waves of {args.wave_queries} users, "
        f"NDCG@10 of the serving version on {len(test)} unseen test queries, 2 CPU cores",
        ("wave", "searches", "clicks", "pairs trained", "serving", "test NDCG@10", "Δ points"),
        rows,
        extra,
    )


def _bad_candidate(db: database.Database, conn: Any, gate_sets: list[str]) -> dict[str, Any]:
    """Train on the log's pairs with their positives shuffled and offer it to the policy's gate
    (its sets, else the latest held-out set its runs saved)."""
    data = sources.from_feedback(conn, COLLECTION, held_out_fraction=0.1, seed=7)
    positives = [pair.positive for pair in data.pairs]
    random.Random(1).shuffle(positives)
    shuffled = sources.TrainingData(
        [sources.Pair(p.query, q) for p, q in zip(data.pairs, positives, strict=True)],
        [],
        {**data.summary, "source": "shuffled pairs (a deliberately bad candidate)"},
    )
    held = conn.execute(
        "SELECT name FROM pyembed.eval_sets WHERE source = 'held_out' ORDER BY id DESC LIMIT 1"
    ).fetchone()
    sets = gate_sets or ([held[0]] if held else [])
    result = runs.train(db, COLLECTION, shuffled, promote_if_better=True, gate_sets=sets)
    found = {
        "outcome": result.outcome,
        "reason": result.outcome_reason,
        "held_out": {"active": result.base_metrics, "candidate": result.new_metrics},
    }
    if result.outcome == "promoted":  # was the gate wrong, or the candidate not worse?
        found["test_after"] = measure(db.dsn)
    return found


if __name__ == "__main__":
    main()
