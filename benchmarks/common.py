"""Shared pieces of the benchmarks: a throwaway embedded server, the WordNet task, output."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from psycopg.types.json import Jsonb
from rich.console import Console
from rich.table import Table

from pyembed.db import database, embedded, migrate
from pyembed.ingest import worker
from pyembed.models import encoder, loading

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent
DATA = Path(os.environ.get("PYEMBED_BENCH_DATA", ROOT.parent.parent / "shared" / "data"))
RESULTS = ROOT / "results"
console = Console()
if not console.is_terminal:  # logs and pipes: whole rows, not 80-column wrapping
    console = Console(width=200)


PG15 = Path("/usr/lib/postgresql/15")


@contextlib.contextmanager
def scratch_database(plpython: bool = False) -> Iterator[str]:
    """A migrated database on an embedded server in a temporary directory, removed afterwards;
    with ``plpython``, Debian's PostgreSQL 15 (scripts/setup_pg15_plpython.sh) instead."""
    home = Path(tempfile.mkdtemp(prefix="pyembed-bench-"))
    if plpython and not (PG15 / "lib" / "plpython3.so").exists():
        raise SystemExit("needs PostgreSQL 15 with plpython3u: run scripts/setup_pg15_plpython.sh")
    server = (
        embedded.EmbeddedServer(home, bin_dir=PG15 / "bin", major="15")
        if plpython
        else embedded.EmbeddedServer(home)
    )
    try:
        dsn = server.start().dsn
        assert dsn is not None
        migrate.upgrade(database.Database(dsn))
        yield dsn
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


def wordnet_corpus(limit: int | None = None) -> list[tuple[str, str]]:
    """(id, "title: text") of the WordNet noun corpus, as its README says to embed them."""
    path = DATA / "wordnet-nouns" / "corpus.jsonl"
    if not path.exists():
        raise SystemExit(f"benchmark data missing: {path} (set PYEMBED_BENCH_DATA)")
    docs = []
    with path.open() as handle:
        for line in handle:
            row = json.loads(line)
            docs.append((row["_id"], f"{row['title']}: {row['text']}"))
            if limit is not None and len(docs) >= limit:
                break
    return docs


def wordnet_queries(split: str) -> list[tuple[str, str, str]]:
    """(query id, query text, relevant document id) of a split ("train" or "test")."""
    task = DATA / "wordnet-nouns"
    texts = {}
    with (task / "queries.jsonl").open() as handle:
        for line in handle:
            row = json.loads(line)
            texts[row["_id"]] = row["text"]
    rows = []
    with (task / "qrels" / f"{split}.tsv").open() as handle:
        next(handle)  # header
        for line in handle:
            query_id, doc_id, _score = line.rstrip("\n").split("\t")
            rows.append((query_id, texts[query_id], doc_id))
    return rows


def load_wordnet(dsn: str, conn: Any, collection: str = "nouns", limit: int | None = None) -> int:
    """Create table `nouns` with the WordNet corpus, register it, embed it with a worker."""
    docs = wordnet_corpus(limit)
    conn.execute("CREATE TABLE nouns (id text PRIMARY KEY, body text)")
    with conn.cursor() as cur, cur.copy("COPY nouns (id, body) FROM STDIN") as copy:
        for row in docs:
            copy.write_row(row)
    conn.execute("SELECT pyembed.create_collection(%s, 'nouns', ARRAY['body'])", (collection,))
    console.print(f"embedding {len(docs):,} WordNet documents ...")
    stats = worker.Worker(database.Database(dsn), worker.WorkerOptions(once=True)).run()
    assert stats.failures == 0, stats
    return len(docs)


def replay_clicks(conn: Any, collection: str, queries: list[tuple[str, str, str]]) -> int:
    """Search each query as a user would (logged, through pyembed.search with the active
    version); click the relevant document when it is shown in the top 10."""
    enc = encoder.Encoder(loading.load(conn, 1))
    vectors = enc.encode_queries([text for _, text, _ in queries])
    clicks = 0
    for (_, text, relevant), vector in zip(queries, vectors, strict=True):
        shown = conn.execute(
            "SELECT query_id, pk->>0 FROM pyembed.search(%s, %s, 10, query_text => %s)",
            (collection, vector, text),
        ).fetchall()
        if any(doc == relevant for _, doc in shown):
            conn.execute("SELECT pyembed.record_feedback(%s, %s)", (shown[0][0], Jsonb([relevant])))
            clicks += 1
    return clicks


def timed(fn: object) -> float:
    """Seconds one call of fn takes."""
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - start


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def report(
    name: str,
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[object]],
    extra: dict[str, object],
) -> Path:
    """Print the table and write results/<name>.json with the rows and the machine."""
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(f"{v:,.3f}" if isinstance(v, float) else str(v) for v in row))
    console.print(table)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{name}.json"
    payload = {
        "benchmark": name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "columns": list(columns),
        "rows": [list(r) for r in rows],
        **extra,
    }
    out.write_text(json.dumps(payload, indent=2, default=str))
    console.print(f"wrote {out}")
    return out


def add_noisy_copies(
    conn: Any, total: int, *, real_text: bool = False
) -> tuple[list[str], np.ndarray]:
    """Fill `nouns` and its store up to `total` rows with perturbed copies of the real vectors
    (cosine 0.80-0.95 to their original, so every query meets near-duplicates: a hard case for an
    ANN index); a copy's text is "copy of <id>", or with ``real_text`` its original's text.
    Returns the ids and vectors of every stored row."""
    real = conn.execute(
        "SELECT st.id, st.embedding::real[], s.body FROM pyembed_store.nouns_v1 AS st "
        "JOIN nouns AS s USING (id) ORDER BY st.id"
    ).fetchall()
    base = np.array([v for _, v, _ in real], dtype=np.float32)
    rng = np.random.default_rng(42)
    n = total - len(real)
    picks = rng.integers(0, len(real), size=n)
    cosines = rng.uniform(0.80, 0.95, size=n)
    texts = [body if real_text else f"copy of {id_}" for id_, _, body in real]
    noise = rng.normal(size=(n, base.shape[1])).astype(np.float32)
    # Remove the component along the base vector, then mix to the wanted cosine.
    noise -= (noise * base[picks]).sum(axis=1, keepdims=True) * base[picks]
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    copies = cosines[:, None] * base[picks] + np.sqrt(1 - cosines**2)[:, None] * noise
    console.print(f"adding {n:,} noisy copies ...")
    # The copies are written to the store directly: encoding made-up texts proves nothing.
    conn.execute("ALTER TABLE nouns DISABLE TRIGGER USER")
    with conn.cursor() as cur, cur.copy("COPY nouns (id, body) FROM STDIN") as copy:
        for i, pick in enumerate(picks):
            copy.write_row((f"copy{i}", texts[pick]))
    with (
        conn.cursor() as cur,
        cur.copy(
            "COPY pyembed_store.nouns_v1 (id, chunk_seq, chunk, embedding, content_hash) "
            "FROM STDIN (FORMAT BINARY)"
        ) as copy,
    ):
        copy.set_types(["text", "int4", "text", "vector", "bytea"])
        for i, (pick, vector) in enumerate(zip(picks, copies, strict=True)):
            copy.write_row((f"copy{i}", 0, texts[pick], vector, b"\x00"))
    conn.execute("ALTER TABLE nouns ENABLE TRIGGER USER")
    conn.execute("VACUUM ANALYZE nouns")
    conn.execute("VACUUM ANALYZE pyembed_store.nouns_v1")
    ids = [id_ for id_, _, _ in real] + [f"copy{i}" for i in range(n)]
    return ids, np.concatenate([base, copies.astype(np.float32)])


class PeakMemory:
    """The peak resident memory of this process while the block runs (sampled every 0.2 s)."""

    def __init__(self) -> None:
        self.bytes = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _sample(self) -> None:
        process = psutil.Process()
        while not self._done.is_set():
            self.bytes = max(self.bytes, process.memory_info().rss)
            time.sleep(0.2)
