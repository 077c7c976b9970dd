"""Schema migrations: Alembic revisions that run frozen SQL files, plus re-applied SQL.

``sql/migrations/NNNN_what_it_does.sql`` are frozen once released (``sql/migrations/frozen.txt``
holds their sha256, checked by a test) and run exactly once, by the Alembic revision module of the
same name (``*.down.sql`` undoes one). ``sql/idempotent/*.sql`` hold the
``CREATE OR REPLACE`` functions and views; every upgrade or downgrade re-applies those whose
``-- requires: NNNN`` revision is applied. The whole run is one transaction, serialized against
concurrent runs by an advisory lock, with Alembic's version table named
``pyembed_alembic_version`` so it never meets the application's own Alembic history.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import sqlalchemy
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.pool import NullPool

from pyembed import errors
from pyembed.db import database, idempotent, queries, sql_files

logger = logging.getLogger(__name__)

VERSION_TABLE = "pyembed_alembic_version"
# The version table stays outside schema pyembed, which a downgrade to base drops.
VERSION_SCHEMA = "public"
# Fixed key of the advisory lock that serializes concurrent migration runs.
LOCK_KEY = 7_021_149_842_411_101_001
REQUIRED_EXTENSION = idempotent.REQUIRED_EXTENSION
MIN_PGVECTOR = "0.8.0"
# The revision that introduced collections: downgrading below it removes them all.
COLLECTIONS_REVISION = "0002"


def _config(conn: sqlalchemy.Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(sql_files.migrations_dir()))
    cfg.attributes["connection"] = conn
    return cfg


def script_directory() -> ScriptDirectory:
    """Alembic's view of pyembed's revisions."""
    return ScriptDirectory.from_config(_config())


def heads() -> list[str]:
    """The head revisions of pyembed's migration history (one, tests make sure)."""
    return list(script_directory().get_heads())


@dataclasses.dataclass(frozen=True)
class Revision:
    """One migration of pyembed's history."""

    revision: str
    down_revision: str | None
    doc: str


def history() -> list[Revision]:
    """All revisions, oldest first."""
    revisions = []
    for rev in script_directory().walk_revisions():
        down = rev.down_revision
        revisions.append(Revision(rev.revision, down if isinstance(down, str) else None, rev.doc))
    return list(reversed(revisions))


@contextlib.contextmanager
def _transaction(db: database.Database, *, lock: bool = True) -> Iterator[sqlalchemy.Connection]:
    engine = sqlalchemy.create_engine(
        "postgresql+psycopg://",
        creator=lambda: db.connect(vector=False),
        poolclass=NullPool,
    )
    try:
        with errors.translated(), engine.connect() as conn, conn.begin():
            if lock:
                conn.execute(
                    sqlalchemy.text(queries.get("migration_lock").as_string()), {"key": LOCK_KEY}
                )
            yield conn
    finally:
        engine.dispose()


def _current(conn: sqlalchemy.Connection) -> str | None:
    context = MigrationContext.configure(
        conn, opts={"version_table": VERSION_TABLE, "version_table_schema": VERSION_SCHEMA}
    )
    current_heads = context.get_current_heads()
    if len(current_heads) > 1:
        raise errors.MigrationError(f"the database has several pyembed heads: {current_heads}")
    revision = current_heads[0] if current_heads else None
    if revision is not None and _applied(revision) is None:
        raise errors.MigrationError(
            f"this database was migrated by a newer pyembed (revision {revision!r} is unknown "
            f"to this one, whose newest is {heads()[0]!r})",
            hint="upgrade the pyembed package to the release that migrated the database; "
            "nothing was changed",
        )
    return revision


def _applied(revision: str | None) -> set[str] | None:
    """The revisions applied when ``revision`` is current, or None if it is unknown."""
    if revision is None:
        return set()
    script = script_directory()
    try:
        return {rev.revision for rev in script.iterate_revisions(revision, "base")}
    except Exception:  # alembic raises several types for an unknown revision
        return None


def check_extension(
    conn: psycopg.Connection, name: str = REQUIRED_EXTENSION, min_version: str = MIN_PGVECTOR
) -> None:
    """Fail clearly unless the server can install extension ``name`` at ``min_version`` or newer."""
    row = conn.execute(queries.get("extension_available_version"), {"name": name}).fetchone()
    if row is None:
        raise errors.ExtensionMissing(
            f"the PostgreSQL server has no {name!r} extension (pgvector), which pyembed needs",
            hint="install pgvector >= 0.8 on the server (Debian: apt install "
            "postgresql-NN-pgvector; managed services: enable the vector extension), or use "
            "the embedded server: unset the DSN and run `pyembed db start`",
        )
    if _version_tuple(row[0]) < _version_tuple(min_version):
        raise errors.ExtensionMissing(
            f"the server's {name!r} extension is version {row[0]}; pyembed needs {min_version}+",
            hint=f"upgrade pgvector on the server, then ALTER EXTENSION {name} UPDATE",
        )


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version))


def _apply_idempotent(conn: sqlalchemy.Connection, revision: str | None) -> None:
    """Re-apply the idempotent files whose revision is applied; drop what the others define.

    Dropping by the files (not only by the down migrations) means a function added to a file
    later is removed by a downgrade below its revision too, without editing frozen files.
    """
    driver = conn.connection.driver_connection
    assert isinstance(driver, psycopg.Connection)
    idempotent.apply(driver, _applied(revision) or set())


def run_sql_file(conn: sqlalchemy.Connection, relative: str) -> None:
    """Execute one SQL file of sql/ on the migration's connection."""
    driver = conn.connection.driver_connection
    assert isinstance(driver, psycopg.Connection)
    driver.execute(sql_files.read_sql(relative).encode())


def revision_sql(revision_file: str, *, down: bool = False) -> str:
    """The frozen SQL file of an Alembic revision module, relative to sql/: a revision
    ``versions/0007_hybrid_search.py`` runs ``migrations/0007_hybrid_search[.down].sql``."""
    return f"migrations/{Path(revision_file).stem}{'.down' if down else ''}.sql"


def run_revision_sql(
    conn: sqlalchemy.Connection, revision_file: str, *, down: bool = False
) -> None:
    """Run the frozen SQL of the revision module ``revision_file`` (its ``__file__``)."""
    run_sql_file(conn, revision_sql(revision_file, down=down))


def current(db: database.Database) -> str | None:
    """The pyembed revision the database is at, or None before the first upgrade."""
    with _transaction(db, lock=False) as conn:
        return _current(conn)


def check_current(conn: psycopg.Connection) -> None:
    """Refuse a database at another revision than this package's head (a worker does, before it
    claims rows whose embedding would fail on a column that is not there, or not yet here)."""
    row = conn.execute(queries.get("schema_revision")).fetchone()
    found, head = (row[0] if row else None), heads()[0]
    if found != head:
        raise errors.SchemaOutdated(
            f"the database is at pyembed schema revision {found}; this pyembed needs {head}",
            hint="run `pyembed db upgrade` (or, if the database is newer, upgrade pyembed here)",
        )


def upgrade(db: database.Database, revision: str = "head") -> str | None:
    """Migrate the database up to ``revision``; a no-op when it is there already."""
    return _migrate(db, lambda cfg: command.upgrade(cfg, revision), check_pgvector=True)


def downgrade(db: database.Database, revision: str) -> str | None:
    """Migrate the database down to ``revision`` (``base`` removes pyembed's schemas)."""

    def run(cfg: Config) -> None:
        # Views and functions over tables a down migration drops must go first.
        resolved = None if revision == "base" else _resolve(revision)
        target = set() if revision == "base" else _applied(resolved) if resolved else None
        if target is not None:
            connection = cfg.attributes["connection"].connection.driver_connection
            if COLLECTIONS_REVISION not in target:
                _prepare_removal(connection, removes_schema=not target)
            idempotent.drop_unapplied(connection, idempotent.files(connection, target))
        command.downgrade(cfg, revision)

    return _migrate(db, run, check_pgvector=False)


def _prepare_removal(driver: psycopg.Connection, *, removes_schema: bool) -> None:
    """Before collections go: refuse if application objects depend on pyembed's (naming them),
    else drop every collection while its functions still exist, so its triggers leave the
    application's tables (which keep all their rows)."""
    if not driver.execute(queries.get("schema_exists"), {"name": "pyembed"}).fetchone():
        return
    blockers = (
        [row[0] for row in driver.execute(queries.get("downgrade_blockers"))]
        if removes_schema
        else []
    )
    if blockers:
        raise errors.MigrationError(
            "application objects depend on pyembed's and would be dropped with it: "
            + "; ".join(blockers),
            hint="drop or change them first (nothing was changed)",
        )
    driver.execute(queries.get("drop_all_collections"))


def _resolve(revision: str) -> str | None:
    try:
        found = script_directory().get_revision(revision)
    except Exception:  # alembic raises several types for what it cannot resolve
        return None
    return found.revision if found is not None else None


def _migrate(
    db: database.Database, run: Callable[[Config], None], *, check_pgvector: bool
) -> str | None:
    with _transaction(db) as conn:
        before = _current(conn)
        if check_pgvector:
            driver = conn.connection.driver_connection
            assert isinstance(driver, psycopg.Connection)
            check_extension(driver)
        with errors.translated():
            run(_config(conn))
        after = _current(conn)
        _apply_idempotent(conn, after)
    logger.info("pyembed schema: %s -> %s", before or "base", after or "base")
    return after
