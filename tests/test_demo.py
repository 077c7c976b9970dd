"""The quick demo: the whole loop on a fresh embedded server, twice (it must be safe to rerun)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pyembed.db import embedded


@pytest.fixture
def home() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="pyembed-demo-"))
    yield path
    embedded.EmbeddedServer(path).stop()
    shutil.rmtree(path, ignore_errors=True)


def _demo(home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYEMBED_HOME": str(home), "PYEMBED_TRAINING_DIR": str(home / "runs")}
    for name in ("PYEMBED_DSN", "DATABASE_URL", "PGHOST", "PGPORT", "PGDATABASE"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "pyembed", "demo", "--quick"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_quick_demo_runs_the_whole_loop_and_can_run_again(home: Path) -> None:
    first = _demo(home)
    assert first.returncode == 0, first.stderr[-3000:]
    for words in (
        "pyembed.hybrid_search",
        "pyembed.search_domain_aware",
        "held-out NDCG@10",
        "The database keeps running",
        "psql 'postgresql://",
    ):
        assert words in first.stdout, words
    assert (home / "report.html").is_file()
    second = _demo(home)
    assert second.returncode == 0, second.stderr[-3000:]
    with psycopg.connect(embedded.EmbeddedServer(home).dsn()) as conn:
        status = conn.execute(
            "SELECT source_rows, embedded_rows, pending FROM pyembed.collection_status"
        ).fetchone()
        assert status == (300, 300, 0)
        runs = conn.execute(
            "SELECT count(*) FROM pyembed.eval_runs WHERE status = 'done'"
        ).fetchone()
        assert runs is not None and runs[0] >= 3  # base and new on held-out, test set before
        # Both runs trained a version; the second started from the pretrained one again.
        assert conn.execute(
            "SELECT count(*) FROM pyembed.model_versions WHERE kind = 'fine_tuned'"
        ).fetchone() == (2,)
        assert conn.execute(
            "SELECT DISTINCT parent_version_id FROM pyembed.model_versions "
            "WHERE kind = 'fine_tuned'"
        ).fetchall() == [(1,)]
