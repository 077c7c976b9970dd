"""Searching on a hot standby: a streaming replica of the test server on the same machine."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from pgvector.psycopg import register_vector

from pyembed import errors
from pyembed.db import embedded
from pyembed.search import client
from tests.conftest import dsn_for
from tests.helpers import embed, run_worker
from tests.test_cli import run_cli


@pytest.fixture(scope="module")
def replica(pg_server: embedded.EmbeddedServer) -> Iterator[embedded.EmbeddedServer]:
    home = Path(tempfile.mkdtemp(prefix="pyembed-replica-"))
    standby = embedded.EmbeddedServer(home)
    standby.start_replica(pg_server)
    yield standby
    standby.stop()
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def on_replica(
    db: psycopg.Connection, db_dsn: str, replica: embedded.EmbeddedServer
) -> Iterator[psycopg.Connection]:
    """A collection embedded on the primary; a connection to the same database on the replica."""
    db.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
    db.execute("INSERT INTO docs VALUES (1, 'a stone wall'), (2, 'apple pie'), (3, 'a harbour')")
    db.execute("SELECT pyembed.create_collection('docs', 'docs', ARRAY['body'])")
    run_worker(db_dsn)
    port = replica.configured_port()
    assert port is not None
    deadline = time.monotonic() + 30
    while True:  # wait for the standby to replay the primary's WAL this far
        try:
            conn = psycopg.connect(dsn_for(port, db.info.dbname), autocommit=True)
            if conn.execute("SELECT count(*) FROM pyembed_store.docs_v1").fetchone() == (3,):
                break
            conn.close()
        except psycopg.Error:
            pass
        if time.monotonic() > deadline:
            pytest.fail("the standby did not catch up within 30 s")
        time.sleep(0.2)
    register_vector(conn)
    with conn:
        yield conn


def test_search_on_a_standby_answers_without_logging(
    db: psycopg.Connection, on_replica: psycopg.Connection
) -> None:
    assert client.is_standby(on_replica) and not client.is_standby(db)
    query = embed(db, "masonry")[0]
    rows = on_replica.execute(
        "SELECT query_id, pk FROM pyembed.search('docs', %s, 2)", (query,)
    ).fetchall()
    assert rows[0] == (None, [1]) and len(rows) == 2
    hybrid = on_replica.execute(
        "SELECT query_id, pk FROM pyembed.hybrid_search('docs', 'stone', %s, 1)", (query,)
    ).fetchall()
    assert hybrid == [(None, [1])]
    assert db.execute("SELECT count(*) FROM pyembed.query_log").fetchone() == (0,)


def test_python_client_logs_standby_searches_on_the_primary(
    db: psycopg.Connection, on_replica: psycopg.Connection
) -> None:
    query = embed(db, "masonry")[0]
    hits = client.search(on_replica, "docs", query, 2, query_text="masonry", primary=db)
    assert hits[0].pk == [1] and len(hits) == 2
    query_id = hits[0].query_id
    assert query_id is not None and all(h.query_id == query_id for h in hits)
    logged = db.execute(
        "SELECT q.query_text, q.params->>'served_by', r.rank, r.pk, r.chunk_seq, r.distance "
        "FROM pyembed.query_log q JOIN pyembed.query_results r ON r.query_id = q.id "
        "WHERE q.id = %s ORDER BY r.rank",
        (query_id,),
    ).fetchall()
    assert [(r[2], r[3], r[4]) for r in logged] == [(h.rank, h.pk, 0) for h in hits]
    assert logged[0][:2] == ("masonry", "standby")
    assert logged[0][5] == pytest.approx(hits[0].distance, abs=1e-6)
    # The app records the click on the primary, against the standby's search.
    db.execute("SELECT pyembed.record_feedback(%s, '[1]')", (query_id,))
    # Without a primary, a standby search is simply not logged.
    assert client.search(on_replica, "docs", query, 1)[0].query_id is None
    with pytest.raises(psycopg.Error, match="a standby cannot write the query log"):
        on_replica.execute("SELECT pyembed.log_search('docs', %s, '[[1]]')", (query,))


def test_starting_a_standby_again_is_a_no_op(
    pg_server: embedded.EmbeddedServer, replica: embedded.EmbeddedServer
) -> None:
    assert replica.is_standby and replica.start_replica(pg_server).running
    nowhere = embedded.EmbeddedServer(Path(tempfile.gettempdir()) / "pyembed-no-such-primary")
    with pytest.raises(errors.EmbeddedServerError, match="is not running"):
        replica.start_replica(nowhere)


def test_cli_starts_a_standby(pg_server: embedded.EmbeddedServer) -> None:
    home = Path(tempfile.mkdtemp(prefix="pyembed-replica-cli-"))
    try:
        started = run_cli(
            "db", "replica", "--home", str(home), "--primary-home", str(pg_server.home)
        )
        assert started.returncode == 0, started.stderr
        assert "running" in started.stdout
        standby = embedded.EmbeddedServer(home)
        assert standby.is_standby and standby.status().running
        with psycopg.connect(standby.dsn(), autocommit=True) as conn:
            assert client.is_standby(conn)
    finally:
        embedded.EmbeddedServer(home).stop()
        shutil.rmtree(home, ignore_errors=True)
