"""Shared pieces of the benchmarks: a throwaway embedded server, the WordNet task, output."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from pyembed import embedded, migrate

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent
DATA = Path(os.environ.get("PYEMBED_BENCH_DATA", ROOT.parent.parent / "shared" / "data"))
RESULTS = ROOT / "results"
console = Console()


@contextlib.contextmanager
def scratch_database() -> Iterator[str]:
    """A migrated database on an embedded server in a temporary directory, removed afterwards."""
    home = Path(tempfile.mkdtemp(prefix="pyembed-bench-"))
    server = embedded.EmbeddedServer(home)
    try:
        dsn = server.start().dsn
        assert dsn is not None
        migrate.upgrade(dsn)
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


def timed(fn: object) -> float:
    """Seconds one call of fn takes."""
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - start


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def report(name: str, title: str, columns: Sequence[str], rows: Sequence[Sequence[object]],
           extra: dict[str, object]) -> Path:  # fmt: skip
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
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "columns": list(columns),
        "rows": [list(r) for r in rows],
        **extra,
    }  # fmt: skip
    out.write_text(json.dumps(payload, indent=2, default=str))
    console.print(f"wrote {out}")
    return out
