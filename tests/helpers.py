"""Helpers shared by tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import psycopg
import pytest

from pyembed.db import database, embedded
from pyembed.ingest import worker
from pyembed.ingest.worker import WorkerStats
from pyembed.models import encoder, loading


def schema_dump(dsn: str) -> str:
    """pg_dump of pyembed's schemas plus the revision, comparable across databases."""
    with psycopg.connect(dsn) as conn:
        schemas = [
            row[0]
            for row in conn.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname IN ('pyembed', 'pyembed_store') "
                "ORDER BY 1"
            )
        ]
        has_table = conn.execute("SELECT to_regclass('public.pyembed_alembic_version')").fetchone()
        revision = (
            conn.execute("SELECT version_num FROM public.pyembed_alembic_version").fetchall()
            if has_table and has_table[0]
            else []
        )
    lines: list[str] = []
    if schemas:  # pg_dump fails when no schema matches
        out = subprocess.run(
            [
                str(embedded.EmbeddedServer().bin_dir / "pg_dump"),
                "--schema-only",
                "--no-owner",
                "--no-privileges",
                *(f"--schema={name}" for name in schemas),
                "--dbname",
                dsn,
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        # pg_dump 18 wraps the dump in \restrict lines with a random key.
        lines = [
            line for line in out.splitlines() if not line.startswith(("\\restrict", "\\unrest"))
        ]
    return "\n".join([*lines, f"-- schemas: {schemas}", f"-- revision: {revision}"])


def run_worker(dsn: str, **options: object) -> WorkerStats:
    """Run a worker until no work is due; fast heartbeats so tests stay quick."""
    settings: dict[str, object] = {"once": True, "heartbeat_seconds": 1.0, "lease_seconds": 30.0}
    settings.update(options)
    return worker.Worker(database.Database(dsn), worker.WorkerOptions(**settings)).run()  # type: ignore[arg-type]


def embed(conn: psycopg.Connection, *texts: str, version: int = 1) -> np.ndarray:
    """Query embeddings by a registered version, as an application would compute them."""
    return encoder.Encoder(loading.load(conn, version)).encode_queries(list(texts))


def random_vector_collection(db: psycopg.Connection, rows: int, seed: int = 7) -> np.ndarray:
    """Collection `docs` over table docs (id, body) whose store holds `rows` random unit vectors,
    written straight into it (no model needed); returns the vectors, row i + 1 at index i."""
    db.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
    db.execute("SELECT pyembed.create_collection('docs', 'docs', ARRAY['body'])")
    db.execute("INSERT INTO docs SELECT g, 'x' FROM generate_series(1, %s) AS g", (rows,))
    db.execute("DELETE FROM pyembed.queue")
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(rows, 384)).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    with (
        db.cursor() as cur,
        cur.copy(
            "COPY pyembed_store.docs_v1 (id, chunk_seq, chunk, embedding, content_hash) FROM STDIN "
            "(FORMAT BINARY)"
        ) as copy,
    ):
        copy.set_types(["int4", "int4", "text", "vector", "bytea"])
        for i, vector in enumerate(data, start=1):
            copy.write_row((i, 0, "x", vector, b"\x00"))
    return data


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """An ASGI app on a free local port for the block; yields its base URL."""
    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    running = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=running.run)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not running.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        running.should_exit = True
        thread.join()


def chromium_dom(url: str, budget_ms: int = 5000) -> str:
    """The DOM of ``url`` after ``budget_ms`` of virtual time in headless chromium (skips the
    test where there is none; CI must have it)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have Debian's chromium (.ci/run installs it)")
        pytest.skip("no chromium on this machine (apt-get install chromium)")
    profile = tempfile.mkdtemp(prefix="pyembed-chromium-")
    try:
        dom = subprocess.run(
            [
                found,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                f"--virtual-time-budget={budget_ms}",
                "--dump-dom",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert dom.returncode == 0, dom.stderr[-2000:]
    return dom.stdout
