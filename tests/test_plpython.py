"""Text embedding inside SQL (plpython3u) on Debian's PostgreSQL 15 with pgvector.

Needs scripts/setup_pg15_plpython.sh (CI runs it); elsewhere these tests are skipped. The
embedded PostgreSQL 18 has no plpython3u and never needs any of this.
"""

from __future__ import annotations

import os
import shutil
import socket
import sysconfig
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest
import uvicorn
from pgvector.psycopg import register_vector

import pyembed
from pyembed.db import database, embedded, host, migrate
from pyembed.models import backend_settings, conversion
from pyembed.serve import http_api
from tests.helpers import embed, run_worker

pytestmark = pytest.mark.plpython

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
    cluster.stop()
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def api(pg15: str) -> Iterator[str]:
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


def _connect(dsn: str, **settings: str) -> psycopg.Connection:
    """A connection, with exactly these in-database embedding settings in force (as the admin)."""
    conn = psycopg.connect(dsn, autocommit=True)
    register_vector(conn)
    backend_settings.configure(conn, {name: settings.get(name) for name in backend_settings.NAMES})
    return conn


def _reference(dsn: str, text: str) -> np.ndarray:
    with psycopg.connect(dsn) as conn:
        return embed(conn, text)[0]


def test_http_mode_embeds_through_the_server_and_search_takes_text(pg15: str, api: str) -> None:
    with _connect(pg15, embed_url=api) as conn:
        vector = conn.execute("SELECT pyembed.embed('stone walls', 'docs')").fetchone()
        assert vector is not None
        np.testing.assert_allclose(vector[0].to_numpy(), _reference(pg15, "stone walls"), atol=1e-5)
        rows = conn.execute(
            "SELECT query_id, pk FROM pyembed.search('docs', 'stone walls', 2)"
        ).fetchall()
        assert rows[0][1] == [1]
        logged = conn.execute(
            "SELECT query_text FROM pyembed.query_log WHERE id = %s", (rows[0][0],)
        ).fetchone()
        assert logged == ("stone walls",)
        hybrid = conn.execute(
            "SELECT pk FROM pyembed.hybrid_search('docs', 'harbour at night', k => 1)"
        ).fetchone()
        assert hybrid == ([3],)
        volatility = conn.execute(
            "SELECT provolatile FROM pg_proc WHERE oid = 'pyembed.embed(text,text)'::regprocedure"
        ).fetchone()
        assert volatility == ("v",)


def test_a_server_that_is_down_or_silent_gives_a_clear_error_not_a_hung_backend(
    pg15: str,
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead_url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    with _connect(pg15, embed_url=dead_url) as conn, pytest.raises(psycopg.Error) as caught:
        conn.execute("SELECT pyembed.embed('x', 'docs')")
    assert f"cannot reach the embedding server at {dead_url}" in str(caught.value)
    assert caught.value.sqlstate == "08001"
    silent = socket.socket()  # accepts connections, never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    url = f"http://127.0.0.1:{silent.getsockname()[1]}"
    started = time.monotonic()
    try:
        with (
            _connect(pg15, embed_url=url, embed_timeout_ms="1000") as conn,
            pytest.raises(psycopg.Error, match="cannot reach the embedding server at"),
        ):
            conn.execute("SELECT * FROM pyembed.search('docs', 'stone walls')")
    finally:
        silent.close()
    assert time.monotonic() - started < 10


def test_local_mode_loads_the_model_in_the_backend(pg15: str) -> None:
    paths = [sysconfig.get_paths()["purelib"], str(Path(pyembed.__file__).resolve().parents[1])]
    if os.geteuid() == 0:  # the server runs as its own OS user: let it reach the packages
        for path in paths:
            host.open_parents(Path(path))
    notices: list[str] = []
    with _connect(pg15) as admin:  # not local: no model files for anyone
        admin.execute("CREATE ROLE local_reader LOGIN IN ROLE pyembed_reader")
    try:
        reader_dsn = pg15.replace("postgres@", "local_reader@")
        with (
            psycopg.connect(reader_dsn, autocommit=True) as conn,
            pytest.raises(psycopg.errors.InsufficientPrivilege, match="local embedding mode"),
        ):
            conn.execute("SELECT * FROM pyembed._local_model_parts(1)")
        _connect(pg15, embed_mode="local", python_path=":".join(paths)).close()
        # As a reader, who may not read model files itself: they come through pyembed.
        with psycopg.connect(reader_dsn, autocommit=True) as conn:
            register_vector(conn)
            conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
            vector = conn.execute("SELECT pyembed.embed('apple pie', 'docs')").fetchone()
            assert vector is not None
            reference = _reference(pg15, "apple pie")
            np.testing.assert_allclose(vector[0].to_numpy(), reference, atol=1e-4)
            assert any("holds its own copy in memory" in n for n in notices)
            with pytest.raises(psycopg.Error, match="no collection or model named 'nope'"):
                conn.execute("SELECT pyembed.embed('x', 'nope')")
        # An ONNX Runtime version runs in the backend too.
        int8 = conversion.convert(database.Database(pg15), 1, "int8")
        with psycopg.connect(reader_dsn, autocommit=True) as conn:
            register_vector(conn)
            name = f"all-MiniLM-L6-v2@{int8.version}"
            vector = conn.execute("SELECT pyembed.embed('apple pie', %s)", (name,)).fetchone()
            assert vector is not None
            with psycopg.connect(pg15) as own:
                reference = embed(own, "apple pie", version=int8.id)[0]
            np.testing.assert_allclose(vector[0].to_numpy(), reference, atol=1e-4)
    finally:
        with psycopg.connect(pg15, autocommit=True) as admin:
            admin.execute("DROP OWNED BY local_reader")
            admin.execute("DROP ROLE local_reader")


def test_a_session_cannot_steer_where_the_backend_embeds(pg15: str, api: str) -> None:
    with _connect(pg15, embed_url=api) as admin:
        admin.execute("CREATE ROLE steer_reader LOGIN IN ROLE pyembed_reader")
        admin.execute("GRANT SELECT ON docs TO pyembed_reader")
    try:
        with psycopg.connect(pg15.replace("postgres@", "steer_reader@"), autocommit=True) as conn:
            register_vector(conn)
            # Settings a reader could once steer: ignored now (the table decides).
            conn.execute("SET pyembed.embed_url = 'http://169.254.169.254'")
            conn.execute("SET pyembed.embed_mode = 'local'")
            conn.execute("SET pyembed.python_path = '/tmp/evil'")
            search = "SELECT pk FROM pyembed.search('docs', 'stone walls', 1)"
            rows = conn.execute(search).fetchall()
            assert rows == [([1],)]
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("UPDATE pyembed.settings SET value = 'http://169.254.169.254'")
    finally:
        with psycopg.connect(pg15, autocommit=True) as admin:
            admin.execute("DROP OWNED BY steer_reader")
            admin.execute("DROP ROLE steer_reader")
