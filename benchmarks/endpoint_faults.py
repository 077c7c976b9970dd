"""A collection embedded by an endpoint model while a third of its requests fail.

    python benchmarks/endpoint_faults.py [--rows 1500] [--rpm 120] [--fault-rate 0.333]

A fake OpenAI-compatible endpoint on 127.0.0.1 (tests/fake_endpoint.py) answers a share of the
requests with a 429 (Retry-After 1 s), a 500, a timeout, malformed JSON or vectors of the wrong
size, and refuses, as too long, every request holding one of the rows marked for it (1 in 300).
One worker embeds the WordNet corpus through it, twice side by side: without faults, then with.
The table says where every row ended (embedded or in failed_items, with the reason), how many
were lost or paid for twice (sent in more than one successful request), and the most requests
sent in any 60 s (the model's requests_per_minute is the limit).
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import common
import psycopg
from psycopg import sql

from pyembed.db import database
from pyembed.ingest import worker
from pyembed.models import endpoint_client, endpoint_registry

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests import fake_endpoint  # the tests' fake, on the loopback interface

MARK = "[too long]"
FAULTS = ("429", "500", "timeout", "malformed", "wrong_dims")


def run(rows: list[tuple[str, str]], args: argparse.Namespace, fault_rate: float) -> list[Any]:
    endpoint = fake_endpoint.Endpoint(
        delay=1.0, refuse=MARK, fault_rate=fault_rate, random_faults=FAULTS, seed=7
    )
    os.environ["BENCH_ENDPOINT_KEY"] = "sk-bench"
    with (
        fake_endpoint.running(endpoint) as url,
        common.scratch_database() as dsn,
        psycopg.connect(dsn, autocommit=True) as conn,
    ):
        db = database.Database(dsn)
        endpoint_registry.allow_origins(db, [url])
        faults, endpoint.fault_rate = endpoint.fault_rate, 0.0  # registration's probe passes
        version = endpoint_registry.register_endpoint(
            db,
            "hosted",
            endpoint_client.EndpointSpec(
                base_url=url,
                model="fake",
                dimensions=fake_endpoint.DIMS,
                api_key_env="BENCH_ENDPOINT_KEY",
                batch_size=args.batch_size,
                requests_per_minute=args.rpm,
                timeout_seconds=0.5,
            ),
        ).id
        endpoint.fault_rate = faults
        endpoint.requests.clear()
        conn.execute("CREATE TABLE nouns (id text PRIMARY KEY, body text)")
        with conn.cursor() as cur, cur.copy("COPY nouns (id, body) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        started = time.monotonic()
        conn.execute(
            "SELECT pyembed.create_collection('nouns', 'nouns', ARRAY['body'], model => 'hosted')"
        )
        the_worker = worker.Worker(
            db,
            worker.WorkerOptions(
                max_attempts=args.attempts,
                backoff_seconds=1.0,
                poll_seconds=0.5,
                heartbeat_seconds=5.0,
            ),
        )
        thread = threading.Thread(target=the_worker.run)
        thread.start()
        try:
            while conn.execute("SELECT count(*) FROM pyembed.queue").fetchone() != (0,):
                time.sleep(0.5)
        finally:
            the_worker.stop()
            thread.join()
        seconds = time.monotonic() - started
        return _tally(conn, version, endpoint, rows, args.rpm, fault_rate, seconds)


def _tally(
    conn: psycopg.Connection,
    version: int,
    endpoint: fake_endpoint.Endpoint,
    rows: list[tuple[str, str]],
    rpm: int,
    fault_rate: float,
    seconds: float,
) -> list[Any]:
    store = sql.Identifier("pyembed_store", f"nouns_v{version}")
    embedded = {
        pk
        for (pk,) in conn.execute(
            sql.SQL("SELECT DISTINCT id FROM {} WHERE embedding IS NOT NULL").format(store)
        )
    }
    failed = dict(conn.execute("SELECT pk->>0, last_error FROM pyembed.failed_items").fetchall())
    lost = len({pk for pk, _ in rows} - embedded - set(failed))
    paid = collections.Counter(
        text for r in endpoint.requests if r["fault"] == "ok" for text in r["body"]["input"]
    )
    twice = sum(1 for count in paid.values() if count > 1)
    moments = sorted(r["at"] for r in endpoint.requests)
    busiest, j = 0, 0
    for i, at in enumerate(moments):
        while moments[j] <= at - 60.0:
            j += 1
        busiest = max(busiest, i - j + 1)
    kinds = collections.Counter(r["fault"] for r in endpoint.requests)
    marked = {pk for pk, body in rows if MARK in body}
    reasons = collections.Counter(
        "refused as too long" if "maximum context length" in e else e[:60] for e in failed.values()
    )
    common.console.print(f"fault rate {fault_rate:.3f}: requests by answer {dict(kinds)}")
    common.console.print(f"failed_items reasons: {dict(reasons)}")
    return [
        f"{fault_rate:.3f}",
        len(rows),
        len(embedded),
        len(failed),
        f"{len(set(failed) & marked)}/{len(marked)}",
        lost,
        twice,
        len(endpoint.requests),
        sum(n for kind, n in kinds.items() if kind != "ok"),
        busiest,
        rpm,
        round(seconds, 3),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1500)
    parser.add_argument("--rpm", type=int, default=120, help="the model's requests_per_minute")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--fault-rate", type=float, default=1 / 3)
    parser.add_argument("--attempts", type=int, default=3, help="the worker's max_attempts")
    args = parser.parse_args(argv)
    rows = [
        (pk, f"{MARK} {body}" if i % 300 == 150 else body)
        for i, (pk, body) in enumerate(common.wordnet_corpus(args.rows))
    ]
    results = [run(rows, args, rate) for rate in (0.0, args.fault_rate)]
    clean, faulty = results[0][-1], results[1][-1]
    common.report(
        "endpoint_faults",
        f"Embedding through a faulty endpoint (one worker, {args.rpm} requests/minute, "
        f"{args.batch_size} texts a request); with faults / without: {faulty / clean:.2f}x time",
        [
            "fault rate",
            "rows",
            "embedded",
            "in failed_items",
            "marked rows failed",
            "lost",
            "paid twice",
            "requests",
            "failed requests",
            "most in any 60 s",
            "limit",
            "seconds",
        ],
        results,
        {"args": vars(args)},
    )


if __name__ == "__main__":
    main()
