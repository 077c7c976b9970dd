"""The core install: `pip install pyembed` without extras migrates, indexes and searches from SQL.

A fresh virtual environment gets the built wheel with its core dependencies only (from the
package index, as a user's would); the stores are filled by this test process's full install.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from tests.helpers import embed, run_worker

HEAVY = ("torch", "sentence_transformers", "transformers", "fastapi", "matplotlib")


@pytest.fixture(scope="module")
def core_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("core") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [
            str(venv / "bin" / "pip"),
            "install",
            "--quiet",
            "--disable-pip-version-check",
            str(wheel),
        ],
        check=True,
        timeout=600,
    )
    return venv


def _run(venv: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    return subprocess.run(
        [str(venv / "bin" / args[0]), *args[1:]],
        capture_output=True,
        text=True,
        check=check,
        cwd=venv.parent,
        env=env,
        timeout=300,
    )


def test_the_core_install_has_no_model_stack(core_venv: Path) -> None:
    script = (
        "import importlib.util, sys, pyembed;"
        f"print([m for m in {HEAVY!r} if importlib.util.find_spec(m)]);"
        "print('sqlalchemy' in sys.modules)"
    )
    installed, sqlalchemy_loaded = _run(core_venv, "python", "-c", script).stdout.split("\n")[:2]
    assert installed == "[]"
    assert sqlalchemy_loaded == "False"  # `import pyembed` stays light


def test_core_install_migrates_indexes_and_searches_from_sql(
    core_venv: Path, make_empty_db: Callable[[], str]
) -> None:
    dsn = make_empty_db()
    _run(core_venv, "pyembed", "db", "upgrade", "--dsn", dsn)
    # The stores are filled by a full install (this process), as a worker host would.
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE docs (id bigint PRIMARY KEY, body text)")
        conn.execute(
            "INSERT INTO docs VALUES (1, 'a granite wall'), (2, 'a cup of tea'), (3, 'stone')"
        )
        conn.execute("SELECT pyembed.create_collection('docs', 'docs', text_columns => '{body}')")
        run_worker(dsn)
        query = embed(conn, "rock")[0]
    vector = "[" + ",".join(f"{x:.6f}" for x in query) + "]"
    search = (
        "import psycopg, sys;"
        "conn = psycopg.connect(sys.argv[1]);"
        "rows = conn.execute(\"SELECT pk->>0 FROM pyembed.search('docs', %s::vector, k => 2)\","
        " [sys.argv[2]]).fetchall();"
        "print(' '.join(r[0] for r in rows))"
    )
    assert _run(core_venv, "python", "-c", search, dsn, vector).stdout.split()[0] in {"1", "3"}
    built = _run(core_venv, "pyembed", "index", "create", "docs", "--dsn", dsn)
    assert "docs_v1_hnsw" in built.stdout
    # What needs an extra says which one, with the exit code of a configuration error.
    worker = _run(core_venv, "pyembed", "worker", "--once", "--dsn", dsn, check=False)
    assert worker.returncode == 2, worker.stderr
    assert "pyembed[embed]" in worker.stderr
    serve = _run(core_venv, "pyembed", "serve", "--dsn", dsn, check=False)
    assert serve.returncode == 2 and "pyembed[serve]" in serve.stderr
