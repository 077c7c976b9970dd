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
from psycopg import sql
from sqlalchemy.pool import NullPool

from pyembed import errors
from pyembed.db import connection, queries, sql_files

logger = logging.getLogger(__name__)

VERSION_TABLE = "pyembed_alembic_version"
# The version table stays outside schema pyembed, which a downgrade to base drops.
VERSION_SCHEMA = "public"
# Fixed key of the advisory lock that serializes concurrent migration runs.
LOCK_KEY = 7_021_149_842_411_101_001
REQUIRED_EXTENSION = "vector"
MIN_PGVECTOR = "0.8.0"
EXTSCHEMA_VECTOR = "@extschema:vector@"
# The revision that introduced collections: downgrading below it removes them all.
COLLECTIONS_REVISION = "0002"
_REQUIRES = re.compile(r"^--\s*requires:\s*(\S+)\s*$", re.MULTILINE)
# What an idempotent file defines: (FUNCTION|VIEW, name) in schema pyembed.
_DEFINES = re.compile(r"^CREATE OR REPLACE (FUNCTION|VIEW) pyembed\.(\w+)", re.MULTILINE)


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
def _transaction(dsn: str, *, lock: bool = True) -> Iterator[sqlalchemy.Connection]:
    engine = sqlalchemy.create_engine(
        "postgresql+psycopg://",
        creator=lambda: connection.connect(dsn, vector=False),
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


def _idempotent_files(driver: psycopg.Connection, applied: set[str]) -> list[tuple[str, str, bool]]:
    """(name, text, applies) of every idempotent file, with pgvector's schema filled in."""
    # Functions pin search_path; pgvector may live in any schema (public, extensions, ...).
    row = driver.execute(queries.get("extension_schema"), {"name": REQUIRED_EXTENSION}).fetchone()
    vector_schema = row[0] if row else "public"
    files = []
    for path in sorted((sql_files.sql_dir() / "idempotent").glob("*.sql")):
        text = path.read_text(encoding="utf-8").replace(EXTSCHEMA_VECTOR, vector_schema)
        match = _REQUIRES.search(text)
        if match is None:
            raise errors.MigrationError(f"{path.name} lacks its '-- requires: REVISION' header")
        files.append((path.name, text, match.group(1) in applied))
    return files


def _drop_unapplied(driver: psycopg.Connection, files: list[tuple[str, str, bool]]) -> None:
    """Drop the functions and views of files that do not apply (last file first)."""
    if not driver.execute(queries.get("schema_exists"), {"name": "pyembed"}).fetchone():
        return
    kept = {name for _, text, use in files if use for name in _DEFINES.findall(text)}
    for _, text, use in reversed(files):
        if not use:
            for kind, name in reversed(_DEFINES.findall(text)):
                if (kind, name) not in kept:
                    _drop(driver, kind, name)


def _apply_idempotent(conn: sqlalchemy.Connection, revision: str | None) -> None:
    """Re-apply the idempotent files whose revision is applied; drop what the others define.

    Dropping by the files (not only by the down migrations) means a function added to a file
    later is removed by a downgrade below its revision too, without editing frozen files.
    """
    driver = conn.connection.driver_connection
    assert isinstance(driver, psycopg.Connection)
    files = _idempotent_files(driver, _applied(revision) or set())
    _drop_unapplied(driver, files)
    # Signatures name pgvector's types unqualified; resolve them in trusted schemas only.
    row = driver.execute(queries.get("extension_schema"), {"name": REQUIRED_EXTENSION}).fetchone()
    path = f"pg_catalog, {row[0]}" if row else "pg_catalog, public"
    driver.execute(queries.get("set_local_search_path"), {"path": path})
    for name, text, use in files:
        if use:
            logger.debug("re-applying %s", name)
            driver.execute(text.encode())


def _drop(driver: psycopg.Connection, kind: str, name: str) -> None:
    if kind == "VIEW":
        driver.execute(sql.SQL("DROP VIEW IF EXISTS {}").format(sql.Identifier("pyembed", name)))
        return
    for (signature,) in driver.execute(queries.get("function_overloads"), {"name": name}):
        # The signature is the catalog's own regprocedure text, not input.
        driver.execute(sql.SQL("DROP FUNCTION {}").format(sql.SQL(signature)))


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


def current(dsn: str) -> str | None:
    """The pyembed revision the database is at, or None before the first upgrade."""
    with _transaction(dsn, lock=False) as conn:
        return _current(conn)


def upgrade(dsn: str, revision: str = "head") -> str | None:
    """Migrate the database up to ``revision``; a no-op when it is there already."""
    return _migrate(dsn, lambda cfg: command.upgrade(cfg, revision), check_pgvector=True)


def downgrade(dsn: str, revision: str) -> str | None:
    """Migrate the database down to ``revision`` (``base`` removes pyembed's schemas)."""

    def run(cfg: Config) -> None:
        # Views and functions over tables a down migration drops must go first.
        resolved = None if revision == "base" else _resolve(revision)
        target = set() if revision == "base" else _applied(resolved) if resolved else None
        if target is not None:
            connection = cfg.attributes["connection"].connection.driver_connection
            if COLLECTIONS_REVISION not in target:
                _prepare_removal(connection, removes_schema=not target)
            _drop_unapplied(connection, _idempotent_files(connection, target))
        command.downgrade(cfg, revision)

    return _migrate(dsn, run, check_pgvector=False)


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


def _migrate(dsn: str, run: Callable[[Config], None], *, check_pgvector: bool) -> str | None:
    with _transaction(dsn) as conn:
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
