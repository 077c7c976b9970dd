"""Which database to use, and connections to it.

Every command resolves its database in the same order: an explicit DSN (``--dsn``),
``PYEMBED_DSN``, ``DATABASE_URL``, libpq's ``PG*`` variables, else the embedded server,
started on demand.
"""

from __future__ import annotations

import logging
import os
import re

import psycopg
from pgvector.psycopg import register_vector

from pyembed import errors
from pyembed.db import embedded, queries

logger = logging.getLogger(__name__)

# libpq variables that, when set, mean "the user configured a server through the environment".
_LIBPQ_VARS = ("PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGSERVICE", "PGUSER")
_SQLALCHEMY_DRIVER = re.compile(r"^(postgres(?:ql)?)\+\w+://")


def normalize_dsn(dsn: str) -> str:
    """Accept SQLAlchemy-style URLs (``postgresql+psycopg://``) where libpq wants ``postgresql://``."""
    return _SQLALCHEMY_DRIVER.sub(r"\1://", dsn.strip())


def configured_dsn(explicit: str | None = None) -> str | None:
    """The DSN given by option or environment, or None when the embedded server should be used.

    An empty string means "libpq's PG* variables decide".
    """
    for candidate in (explicit, os.environ.get("PYEMBED_DSN"), os.environ.get("DATABASE_URL")):
        if candidate:
            return normalize_dsn(candidate)
    if any(os.environ.get(name) for name in _LIBPQ_VARS):
        return ""
    return None


def resolve_dsn(explicit: str | None = None, *, start_embedded: bool = True) -> str:
    """The DSN to use; falls back to the embedded server, starting it unless told not to."""
    dsn = configured_dsn(explicit)
    if dsn is not None:
        return dsn
    server = embedded.EmbeddedServer()
    if start_embedded:
        server.start()
    return server.dsn()


def describe(dsn: str) -> str:
    """The DSN without its password, safe for logs and error messages."""
    if not dsn:
        return "(libpq PG* environment)"
    try:
        info = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "(unparsable DSN)"
    host = info.get("host") or info.get("hostaddr") or "localhost"
    return f"{info.get('user') or ''}@{host}:{info.get('port') or 5432}/{info.get('dbname') or ''}"


def connect(dsn: str, *, autocommit: bool = False, vector: bool = True) -> psycopg.Connection:
    """Open a connection; with ``vector``, register pgvector's types when the extension exists."""
    try:
        psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise errors.ConfigError(
            f"the DSN is not valid: {exc}",
            hint="use postgresql://user:password@host:port/dbname or 'host=... dbname=...'",
        ) from exc
    with errors.translated():
        conn = psycopg.connect(dsn, autocommit=autocommit, connect_timeout=10)
        if vector:
            with conn.cursor() as cur:
                cur.execute(queries.get("extension_installed"), {"name": "vector"})
                has_vector = cur.fetchone() is not None
            if not autocommit:
                conn.rollback()
            if has_vector:
                register_vector(conn)
    return conn


# Backoff between reconnection attempts after the server went away.
RECONNECT_FIRST_SECONDS = 1.0
RECONNECT_MAX_SECONDS = 30.0
# SQLSTATEs of a connection that is gone: class 08, admin shutdown, crash shutdown.
_LOST_STATES = ("08", "57P01", "57P02", "57P03")


def lost(exc: Exception) -> bool:
    """Whether ``exc`` says the connection is gone (and a reconnect may help)."""
    if isinstance(exc, errors.ConnectionFailed):
        return True
    sqlstate: str | None = getattr(exc, "sqlstate", None)
    if sqlstate is None:
        # libpq gives no SQLSTATE when the socket closes under a statement.
        return isinstance(exc, psycopg.OperationalError)
    return sqlstate.startswith(_LOST_STATES)
