"""The database handle of pyembed's public API: open it once, pass it down.

Public functions take a ``Database``; only the edges (the CLI, configuration) turn a DSN into
one. A handle keeps one autocommit connection per thread for pyembed's short statements, so a
training run or a promotion reuses one connection instead of opening one per step. Work that
needs a connection of its own (a worker's heartbeat, a setting for one session, a transaction
that must commit by itself) opens one with ``connect``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from types import TracebackType

import psycopg
from psycopg.pq import TransactionStatus

from pyembed import errors
from pyembed.db import connection


class Database:
    """Where pyembed's database is, and the connections pyembed holds to it."""

    def __init__(self, dsn: str) -> None:
        self.dsn = connection.normalize_dsn(dsn)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._sessions: list[psycopg.Connection] = []

    @classmethod
    def resolve(cls, dsn: str | None = None, *, start_embedded: bool = True) -> Database:
        """The database of --dsn, PYEMBED_DSN, DATABASE_URL, PG* variables, else the embedded."""
        return cls(connection.resolve_dsn(dsn, start_embedded=start_embedded))

    def describe(self) -> str:
        """Where the database is, without the password (for logs and messages)."""
        return connection.describe(self.dsn)

    def __repr__(self) -> str:
        return f"Database({self.describe()})"

    @contextlib.contextmanager
    def session(self) -> Iterator[psycopg.Connection]:
        """This thread's autocommit connection, opened on first use and kept open afterwards.

        Errors inside are translated to PyembedError. When the thread's connection is inside a
        transaction (a caller's ``conn.transaction()``), the block gets a connection of its own,
        so what it commits does not wait for, or vanish with, the caller's transaction.
        """
        conn: psycopg.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and not conn.closed and not conn.broken:
            if conn.info.transaction_status != TransactionStatus.IDLE:
                with errors.translated(), self.connect(autocommit=True) as own:
                    yield own
                return
        else:
            conn = connection.connect(self.dsn, autocommit=True)
            self._local.conn = conn
            with self._lock:
                self._sessions.append(conn)
        with errors.translated():
            yield conn

    def connect(self, *, autocommit: bool = False, vector: bool = True) -> psycopg.Connection:
        """A new connection of the caller's own (``with db.connect() as conn``: closed after)."""
        return connection.connect(self.dsn, autocommit=autocommit, vector=vector)

    def close(self) -> None:
        """Close the connections the handle holds (it opens new ones if used again)."""
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for conn in sessions:
            conn.close()
        self._local = threading.local()

    def __enter__(self) -> Database:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
