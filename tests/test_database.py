"""The database handle: one connection per thread reused, a connection of its own inside a
caller's transaction, reconnects after a lost connection, and whole operations on one connection."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest

from pyembed import errors
from pyembed.db import connection, database
from pyembed.ingest import dead_letters
from pyembed.models import switches


def _pid(conn: psycopg.Connection) -> int:
    return conn.info.backend_pid


def test_a_thread_reuses_its_connection_and_threads_do_not_share(db_dsn: str) -> None:
    with database.Database(db_dsn) as db:
        with db.session() as first:
            pid = _pid(first)
        with db.session() as second:
            assert _pid(second) == pid
        seen: list[int] = []

        def other() -> None:
            with db.session() as conn:
                seen.append(_pid(conn))

        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        assert seen and seen[0] != pid
    assert first.closed  # closing the handle closes what it held


def test_inside_a_transaction_a_session_commits_on_its_own(
    db: psycopg.Connection, db_dsn: str
) -> None:
    db.execute("CREATE TABLE notes (n int)")
    with database.Database(db_dsn) as handle, handle.session() as outer:
        with outer.transaction():
            outer.execute("INSERT INTO notes VALUES (1)")
            with handle.session() as inner:
                assert _pid(inner) != _pid(outer)
                inner.execute("INSERT INTO notes VALUES (2)")
            # The inner insert is committed while the outer transaction is still open.
            assert db.execute("SELECT array_agg(n) FROM notes").fetchone() == ([2],)
        assert db.execute("SELECT count(*) FROM notes").fetchone() == (2,)


def test_errors_are_translated_and_the_connection_stays_usable(db_dsn: str) -> None:
    with database.Database(db_dsn) as db:
        with pytest.raises(errors.DatabaseError, match="division by zero"), db.session() as conn:
            conn.execute("SELECT 1 / 0")
        with db.session() as conn:
            assert conn.execute("SELECT 41 + 1").fetchone() == (42,)


def test_a_lost_connection_is_opened_again(db: psycopg.Connection, db_dsn: str) -> None:
    with database.Database(db_dsn) as handle:
        with handle.session() as conn:
            pid = _pid(conn)
        db.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(errors.PyembedError), handle.session() as conn:
            conn.execute("SELECT 1")  # the first use finds the connection gone
        with handle.session() as conn:
            assert _pid(conn) != pid
            assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_bad_dsn_is_a_configuration_error() -> None:
    with (
        pytest.raises(errors.ConfigError, match="DSN is not valid"),
        database.Database("host=x port=notaport dbname").session(),
    ):
        pass


def test_operations_open_one_connection_each(
    db: psycopg.Connection, db_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
    db.execute("SELECT pyembed.create_collection('docs', 'docs', ARRAY['body'])")
    opened: list[str] = []
    real = connection.connect

    def counting(dsn: str, **kwargs: Any) -> psycopg.Connection:
        opened.append(dsn)
        return real(dsn, **kwargs)

    monkeypatch.setattr(connection, "connect", counting)
    with database.Database(db_dsn) as handle:
        with pytest.raises(errors.PyembedError, match="no earlier version"):
            switches.rollback(handle, "docs", "nothing to roll back to")
        with pytest.raises(errors.PyembedError, match="is not switching models"):
            switches.abort(handle, "docs", "no switch pending")
        assert dead_letters.list_failed(handle, "docs") == []
        assert dead_letters.retry_failed(handle, "docs") == 0
    assert len(opened) == 1, opened  # four operations, one connection
