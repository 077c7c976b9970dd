"""Fixtures of the tests that need plpython3u: Debian's PostgreSQL 15 with pgvector, migrated,
with a small `docs` collection, and `pyembed serve` in front of it. Registered in conftest.py;
scripts/setup_pg15_plpython.sh provides the server (CI runs it), elsewhere the tests skip."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import uvicorn
from pgvector.psycopg import register_vector

from pyembed.db import database, embedded, migrate
from pyembed.models import backend_settings
from pyembed.serve import http_api
from tests.helpers import run_worker

PG15 = Path("/usr/lib/postgresql/15")


def _available() -> bool:
    return (
        (PG15 / "bin" / "postgres").exists()
        and (PG15 / "lib" / "plpython3.so").exists()
        and (Path("/usr/share/postgresql/15/extension/vector.control").exists())
    )


@pytest.fixture(scope="module")
def pg15() -> Iterator[str]:
    """A PostgreSQL 15 cluster with plpython3u and pgvector, migrated, with collection docs."""
    if not _available():
        if os.environ.get("CI"):
            pytest.fail("CI must run scripts/setup_pg15_plpython.sh first")
        pytest.skip(
            "needs PostgreSQL 15 with plpython3u and pgvector: scripts/setup_pg15_plpython.sh"
        )
    home = Path(tempfile.mkdtemp(prefix="pyembed-pg15-"))
    cluster = embedded.EmbeddedServer(home, bin_dir=PG15 / "bin", major="15")
    try:  # a failed setup (a migration that does not apply) must not leave the cluster running
        dsn = cluster.start().dsn
        assert dsn is not None
        migrate.upgrade(database.Database(dsn))
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
            conn.execute(
                "INSERT INTO docs VALUES (1, 'a stone wall'), (2, 'apple pie'), "
                "(3, 'the harbour at night')"
            )
            conn.execute("SELECT pyembed.create_collection('docs', 'docs', ARRAY['body'])")
        run_worker(dsn)
        yield dsn
    finally:
        cluster.stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def pg15_api(pg15: str) -> Iterator[str]:
    """`pyembed serve`'s API over the PG15 cluster, on a free loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    running = uvicorn.Server(
        uvicorn.Config(
            http_api.create_app(database.Database(pg15)),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=running.run)
    thread.start()
    while not running.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    running.should_exit = True
    thread.join()


def connect(dsn: str, **settings: str) -> psycopg.Connection:
    """A connection, with exactly these in-database embedding settings in force (as the admin)."""
    conn = psycopg.connect(dsn, autocommit=True)
    register_vector(conn)
    backend_settings.configure(conn, {name: settings.get(name) for name in backend_settings.NAMES})
    return conn
