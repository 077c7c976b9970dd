"""The one exception hierarchy of pyembed, and the single place psycopg errors are translated.

Every message says what went wrong and how to fix it; the CLI prints it and exits non-zero.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import psycopg
from psycopg import errors as pg_errors


class PyembedError(Exception):
    """Base class of every error pyembed raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  fix: {self.hint}"
        return self.message


class ConfigError(PyembedError):
    """A setting, option or argument is wrong."""

    exit_code = 2


class ConnectionFailed(PyembedError):
    """The database could not be reached or refused the login."""

    exit_code = 3


class EmbeddedServerError(PyembedError):
    """The embedded PostgreSQL could not be started, stopped or inspected."""


class MigrationError(PyembedError):
    """The schema cannot be migrated as asked, or is missing or older than this package."""

    exit_code = 4


class SchemaOutdated(MigrationError):
    """A pyembed table or function the code needs is missing: the schema is older."""

    def __init__(self, message: str, *, hint: str | None = None, sqlstate: str | None = None):
        super().__init__(message, hint=hint)
        self.sqlstate = sqlstate


class ExtensionMissing(MigrationError):
    """A required PostgreSQL extension (pgvector) is not installed on the server."""


class ModelError(PyembedError):
    """A model cannot be registered, found, verified or loaded."""


class WrongModelTask(ModelError):
    """A reranker where an embedding model is needed, or the other way round."""


class EndpointError(ModelError):
    """An embedding endpoint refused, failed or answered what cannot be used; ``retryable``
    when asking again later may succeed (429, 5xx, timeouts, a broken answer), after
    ``retry_after`` seconds when the provider said so."""

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        status: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after


class CollectionError(PyembedError):
    """A collection is unknown or its configuration cannot work."""


class TrainingBusy(PyembedError):
    """Another process holds the collection's training lock."""


class DatabaseError(PyembedError):
    """PostgreSQL refused a statement; the message carries its SQLSTATE."""

    exit_code = 5

    def __init__(self, message: str, *, hint: str | None = None, sqlstate: str | None = None):
        super().__init__(message, hint=hint)
        self.sqlstate = sqlstate


class PermissionDenied(DatabaseError):
    """The role lacks a privilege pyembed's security model does not give it."""

    exit_code = 6


_MISSING_OBJECT_STATES = ("42P01", "42883", "3F000", "42704")
_UPGRADE_HINT = (
    "run `pyembed db upgrade` against this database (pyembed's schema is missing or older)"
)


# SQLSTATE class (first two characters) → the fix to suggest when the server gave no hint.
_CLASS_HINTS: dict[str, str] = {
    "08": "check that the server runs and the DSN (host, port, dbname) is right",
    "28": "check the user name and password in the DSN, or pg_hba.conf on the server",
    "3D": "create the database first (createdb NAME) or fix dbname in the DSN",
    "42": "run `pyembed db upgrade` if pyembed's schema is missing or older than this package",
    "53": "the server is out of a resource (connections, memory or disk); free some and retry",
    "57": "the server is shutting down or cancelled the statement; retry when it is back",
}

_CONNECT_HINTS: tuple[tuple[str, str], ...] = (
    ("does not exist", _CLASS_HINTS["3D"]),
    ("password authentication failed", _CLASS_HINTS["28"]),
    ("no pg_hba.conf entry", _CLASS_HINTS["28"]),
    (
        "Connection refused",
        "no server listens there: start it, fix host/port in the DSN, or leave the DSN unset "
        "and run `pyembed db start` for the embedded server",
    ),
    ("timeout expired", "the server did not answer in time: check host, firewall and load"),
)


def translate(exc: psycopg.Error) -> PyembedError:
    """Turn a psycopg error into a PyembedError whose message tells the fix."""
    if isinstance(exc, psycopg.OperationalError) and exc.sqlstate is None:
        # No SQLSTATE: libpq failed while connecting; its text is all there is to go by.
        text = " ".join(str(exc).split()) or repr(exc)
        hint = next((fix for pattern, fix in _CONNECT_HINTS if pattern in text), _CLASS_HINTS["08"])
        return ConnectionFailed(f"cannot connect to PostgreSQL: {text}", hint=hint)
    diag = exc.diag
    sqlstate = exc.sqlstate or ""
    message = diag.message_primary or str(exc).strip()
    if diag.message_detail:
        message = f"{message} ({diag.message_detail})"
    server_hint = diag.message_hint or _CLASS_HINTS.get(sqlstate[:2])
    if isinstance(exc, pg_errors.InvalidAuthorizationSpecification | pg_errors.InvalidPassword):
        return ConnectionFailed(f"login refused: {message}", hint=_CLASS_HINTS["28"])
    if isinstance(exc, pg_errors.InvalidCatalogName):
        return ConnectionFailed(message, hint=_CLASS_HINTS["3D"])
    if sqlstate in _MISSING_OBJECT_STATES and "pyembed" in message:
        hint = _UPGRADE_HINT
        if diag.message_hint:  # e.g. a call with arguments of other types
            hint = f"{hint}; if the schema is current, the call is wrong: {diag.message_hint}"
        return SchemaOutdated(message, hint=hint, sqlstate=sqlstate)
    if isinstance(exc, pg_errors.InsufficientPrivilege):
        return PermissionDenied(
            message,
            hint=diag.message_hint
            or "connect as a member of the pyembed role that may do this (README: Security)",
            sqlstate=sqlstate,
        )
    return DatabaseError(message, hint=server_hint, sqlstate=sqlstate or None)


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Re-raise psycopg errors (bare or wrapped by SQLAlchemy) raised inside as PyembedError."""
    try:
        yield
    except psycopg.Error as exc:
        raise translate(exc) from exc
    except Exception as exc:
        # SQLAlchemy's DBAPIError wraps the driver's error as .orig; matched by that attribute
        # so that importing pyembed does not import SQLAlchemy.
        orig = getattr(exc, "orig", None)
        if isinstance(orig, psycopg.Error):
            raise translate(orig) from exc
        raise
