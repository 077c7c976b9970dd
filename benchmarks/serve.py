"""The embedding server against raw model.encode, and text search inside SQL in both modes.

    python benchmarks/serve.py [--texts 2400] [--per-request 8] [--queries 200]

Part 1: the same texts (WordNet queries) through POST /v1/embeddings with 1 and 8 concurrent
clients (each request carrying --per-request texts), against one `model.encode` over all of
them, in the same process and run. Part 2 (needs scripts/setup_pg15_plpython.sh): 12,000 rows in
Debian's PostgreSQL 15 with plpython3u, HNSW-indexed; `SELECT * FROM pyembed.search('nouns',
'<text>', 10)` end to end, through the server (http mode) and with the model in the backend
(local mode).
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import common
import httpx
import psycopg

import pyembed
from pyembed.db import connection, database, embedded, migrate
from pyembed.models import backend_settings, conversion, encoder, loading, registry
from pyembed.search import indexes
from pyembed.serve import http_api

PG15 = Path("/usr/lib/postgresql/15")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--texts", type=int, default=2400)
    parser.add_argument("--per-request", type=int, default=8)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--limit", type=int, default=None, help="corpus rows for part 2")
    parser.add_argument("--no-sql", action="store_true", help="part 1 only")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    texts = [text for _, text, _ in common.wordnet_queries("train")[: args.texts]]
    rows: list[tuple[object, ...]] = []
    with common.scratch_database() as dsn, connection.connect(dsn, autocommit=True) as conn:
        int8 = conversion.convert(database.Database(dsn), 1, "int8")
        backends = {
            "torch fp32": "all-MiniLM-L6-v2@1",
            "onnxruntime int8": f"all-MiniLM-L6-v2@{int8.version}",
        }
        models = {
            label: encoder.Encoder(loading.load(conn, registry.resolve_version(conn, ref))).model
            for label, ref in backends.items()
        }
        for model in models.values():
            model.encode(texts[:64])
        raw: dict[str, list[float]] = {label: [] for label in backends}
        # The best the server can do: every batch full (8 clients' requests), in its passes.
        shaped: dict[str, list[float]] = {label: [] for label in backends}
        batch = 8 * args.per_request
        served: dict[tuple[str, int], list[float]] = {
            (label, clients): [] for label in backends for clients in (1, 8)
        }
        with _api(dsn) as url:
            for _ in range(args.rounds):  # interleaved: this machine is noisy
                for label, ref in backends.items():
                    seconds = common.timed(lambda m=models[label]: m.encode(texts, batch_size=64))
                    raw[label].append(len(texts) / seconds)
                    seconds = common.timed(
                        lambda m=models[label]: [
                            m.encode(texts[i : i + batch], batch_size=http_api.SUB_BATCH)
                            for i in range(0, len(texts), batch)
                        ]
                    )
                    shaped[label].append(len(texts) / seconds)
                    for clients in (1, 8):
                        served[(label, clients)].append(
                            _throughput(url, ref, texts, clients, args.per_request)
                        )
        for label in backends:
            ceiling = statistics.median(raw[label])
            rows.append((f"{label}: raw model.encode, one call, batch 64", ceiling, 1.0, "-", "-"))
            full = statistics.median(shaped[label])
            rows.append(
                (
                    f"{label}: raw encode of full server batches ({batch} texts, passes of "
                    f"{http_api.SUB_BATCH})",
                    full,
                    full / ceiling,
                    "-",
                    "-",
                )
            )
            for clients in (1, 8):
                rate = statistics.median(served[(label, clients)])
                rows.append(
                    (
                        f"{label}: /v1/embeddings, {clients} client(s), "
                        f"{args.per_request} texts a request",
                        rate,
                        rate / ceiling,
                        "-",
                        "-",
                    )
                )
    extra: dict[str, Any] = {}
    if args.no_sql:
        extra["sql_text_search"] = "skipped: --no-sql"
    elif (PG15 / "lib" / "plpython3.so").exists():
        rows += _sql_text_search(args)
    else:
        extra["sql_text_search"] = "skipped: run scripts/setup_pg15_plpython.sh"
    common.report(
        "serve",
        f"Embedding server vs raw encode ({len(texts)} WordNet queries), and text search in SQL",
        ("path", "texts/s", "× raw", "p50 ms", "p95 ms"),
        rows,
        extra,
    )


class _api:
    """`pyembed serve` in its own process (as it runs in production), on a free local port."""

    def __init__(self, dsn: str) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.dsn = dsn
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> str:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pyembed",
                "--log-level",
                "warning",
                "serve",
                "--dsn",
                self.dsn,
                "--port",
                str(self.port),
            ],
        )
        url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    return url
            except httpx.HTTPError:
                time.sleep(0.2)
        raise SystemExit("pyembed serve did not start")

    def __exit__(self, *exc: object) -> None:
        assert self.process is not None
        self.process.terminate()
        self.process.wait(timeout=30)


def _throughput(url: str, model: str, texts: list[str], clients: int, per_request: int) -> float:
    chunks = [texts[i : i + per_request] for i in range(0, len(texts), per_request)]
    with httpx.Client() as warm:
        warm.post(f"{url}/v1/embeddings", json=_body(model, chunks[0]), timeout=60)

    def work(part: list[list[str]]) -> None:
        with httpx.Client(timeout=120) as client:
            for chunk in part:
                response = client.post(f"{url}/v1/embeddings", json=_body(model, chunk))
                response.raise_for_status()

    threads = [threading.Thread(target=work, args=(chunks[i::clients],)) for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(texts) / (time.perf_counter() - started)


def _body(model: str, texts: list[str]) -> dict[str, Any]:
    # base64, as the official openai client asks by default: no JSON list of floats to parse.
    return {"model": model, "input": texts, "encoding_format": "base64"}


def _sql_text_search(args: argparse.Namespace) -> list[tuple[object, ...]]:
    home = Path(tempfile.mkdtemp(prefix="pyembed-bench-pg15-"))
    cluster = embedded.EmbeddedServer(home, bin_dir=PG15 / "bin", major="15")
    queries = [text for _, text, _ in common.wordnet_queries("test")[: args.queries]]
    rows: list[tuple[object, ...]] = []
    try:
        dsn = cluster.start().dsn
        assert dsn is not None
        migrate.upgrade(database.Database(dsn))
        with connection.connect(dsn, autocommit=True) as conn:
            count = common.load_wordnet(dsn, conn, limit=args.limit)
        indexes.create(database.Database(dsn), "nouns")
        paths = [sysconfig.get_paths()["purelib"], str(Path(pyembed.__file__).resolve().parents[1])]
        with _api(dsn) as url:
            # The server loads the model on its first request, which can outlast the backend's
            # embed_timeout_ms on a busy machine: load it before SQL asks.
            httpx.post(f"{url}/v1/embeddings", json=_body("nouns", ["warm-up"]), timeout=300)
            for mode, settings in (
                ("http", {"embed_url": url}),
                ("local", {"embed_mode": "local", "python_path": ":".join(paths)}),
            ):
                latencies = sorted(_search_latencies(dsn, settings, queries))
                p95 = latencies[int(0.95 * (len(latencies) - 1))]
                rows.append(
                    (
                        f"SQL pyembed.search(text), {mode} mode, {count:,} rows",
                        len(latencies) / sum(latencies),
                        "-",
                        statistics.median(latencies) * 1000,
                        p95 * 1000,
                    )
                )
    finally:
        cluster.stop()
        shutil.rmtree(home, ignore_errors=True)
    return rows


def _search_latencies(dsn: str, settings: dict[str, str], queries: list[str]) -> list[float]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        backend_settings.configure(
            conn, {name: settings.get(name) for name in backend_settings.NAMES}
        )
        sql = "SELECT pk FROM pyembed.search('nouns', %s::text, 10)"
        conn.execute(sql, (queries[0],)).fetchall()  # warm-up: model loaded, plans made
        latencies = []
        for text in queries:
            started = time.perf_counter()
            conn.execute(sql, (text,)).fetchall()
            latencies.append(time.perf_counter() - started)
    return latencies


if __name__ == "__main__":
    main()
