"""Text embedding inside SQL (plpython3u) on Debian's PostgreSQL 15 with pgvector.

Needs scripts/setup_pg15_plpython.sh (CI runs it); elsewhere these tests are skipped. The
embedded PostgreSQL 18 has no plpython3u and never needs any of this.
"""

from __future__ import annotations

import os
import socket
import sysconfig
import time
from pathlib import Path

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector

import pyembed
from pyembed.db import database, host
from pyembed.models import canaries, conversion, registry
from tests import plpython_fixtures
from tests.conftest import PACKAGE
from tests.helpers import embed

pytestmark = pytest.mark.plpython


def _reference(dsn: str, text: str) -> np.ndarray:
    with psycopg.connect(dsn) as conn:
        return embed(conn, text)[0]


def test_http_mode_embeds_through_the_server_and_search_takes_text(
    pg15: str, pg15_api: str
) -> None:
    with plpython_fixtures.connect(pg15, embed_url=pg15_api) as conn:
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
    with (
        plpython_fixtures.connect(pg15, embed_url=dead_url) as conn,
        pytest.raises(psycopg.Error) as caught,
    ):
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
            plpython_fixtures.connect(pg15, embed_url=url, embed_timeout_ms="1000") as conn,
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
    with plpython_fixtures.connect(pg15) as admin:  # not local: no model files for anyone
        admin.execute("CREATE ROLE local_reader LOGIN IN ROLE pyembed_reader")
    try:
        reader_dsn = pg15.replace("postgres@", "local_reader@")
        with (
            psycopg.connect(reader_dsn, autocommit=True) as conn,
            pytest.raises(psycopg.errors.InsufficientPrivilege, match="local embedding mode"),
        ):
            conn.execute("SELECT * FROM pyembed._local_model_parts(1)")
        plpython_fixtures.connect(pg15, embed_mode="local", python_path=":".join(paths)).close()
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


def test_a_session_cannot_steer_where_the_backend_embeds(pg15: str, pg15_api: str) -> None:
    with plpython_fixtures.connect(pg15, embed_url=pg15_api) as admin:
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


def test_the_text_search_embeds_for_a_running_canary_too(pg15: str, pg15_api: str) -> None:
    db = database.Database(pg15)
    v2 = registry.register(db, "all-MiniLM-L6-v2", PACKAGE).id
    canaries.start(db, "docs", v2, canaries.Settings(min_searches=5))
    try:
        with plpython_fixtures.connect(pg15, embed_url=pg15_api) as conn:
            rows = conn.execute(
                "SELECT query_id, pk FROM pyembed.search('docs', 'stone walls', 3)"
            ).fetchall()
            assert rows[0][1] == [1] and len(rows) == 3
            logged = conn.execute(
                "SELECT canary_id IS NOT NULL, cardinality(result_teams) "
                "FROM pyembed.query_log WHERE id = %s",
                (rows[0][0],),
            ).fetchone()
            assert logged == (True, 3)
    finally:
        canaries.end(db, "docs", "aborted", "test over")
