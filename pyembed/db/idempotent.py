"""The re-applied SQL (sql/idempotent/): which files apply at a revision, and applying them.

Each file says the revision it needs (``-- requires: NNNN``); at a revision below it, what the file
defines is dropped, so a downgrade removes functions added to a file later without editing frozen
migrations.
"""

from __future__ import annotations

import logging
import re

import psycopg
from psycopg import sql

from pyembed import errors
from pyembed.db import queries, sql_files

logger = logging.getLogger(__name__)

REQUIRED_EXTENSION = "vector"
EXTSCHEMA_VECTOR = "@extschema:vector@"
_REQUIRES = re.compile(r"^--\s*requires:\s*(\S+)\s*$", re.MULTILINE)
# What an idempotent file defines: (FUNCTION|VIEW, name) in schema pyembed.
_DEFINES = re.compile(r"^CREATE OR REPLACE (FUNCTION|VIEW) pyembed\.(\w+)", re.MULTILINE)


def files(driver: psycopg.Connection, applied: set[str]) -> list[tuple[str, str, bool]]:
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


def drop_unapplied(driver: psycopg.Connection, files: list[tuple[str, str, bool]]) -> None:
    """Drop the functions and views of files that do not apply (last file first)."""
    if not driver.execute(queries.get("schema_exists"), {"name": "pyembed"}).fetchone():
        return
    kept = {name for _, text, use in files if use for name in _DEFINES.findall(text)}
    for _, text, use in reversed(files):
        if not use:
            for kind, name in reversed(_DEFINES.findall(text)):
                if (kind, name) not in kept:
                    _drop(driver, kind, name)


def apply(driver: psycopg.Connection, applied: set[str]) -> None:
    """Drop what files above the applied revisions define, then re-apply the others in order."""
    every = files(driver, applied)
    drop_unapplied(driver, every)
    # Signatures name pgvector's types unqualified; resolve them in trusted schemas only.
    row = driver.execute(queries.get("extension_schema"), {"name": REQUIRED_EXTENSION}).fetchone()
    path = f"pg_catalog, {row[0]}" if row else "pg_catalog, public"
    driver.execute(queries.get("set_local_search_path"), {"path": path})
    redefined: set[int] = set()
    for name, text, use in every:
        if use:
            logger.debug("re-applying %s", name)
            before = _function_rows(driver)
            driver.execute(text.encode())
            names = {n for kind, n in _DEFINES.findall(text) if kind == "FUNCTION"}
            redefined |= {
                oid
                for oid, (fname, version, _) in _function_rows(driver).items()
                if fname in names and (oid not in before or before[oid][1] != version)
            }
    drop_stale_overloads(driver, every, redefined)


def _function_rows(driver: psycopg.Connection) -> dict[int, tuple[str, str, str]]:
    rows = driver.execute(queries.get("function_rows")).fetchall()
    return {oid: (name, version, signature) for oid, version, name, signature in rows}


def drop_stale_overloads(
    driver: psycopg.Connection, files: list[tuple[str, str, bool]], redefined: set[int]
) -> None:
    """Drop overloads of re-applied functions that the files no longer define.

    A function whose arguments change is a new overload beside the old one; left behind, the old
    one makes calls ambiguous ("function is not unique"). CREATE OR REPLACE writes a new catalog
    row, so a function of a name its file defines whose row that file did not rewrite is stale
    (per file: the grants file rewrites every function's row).
    """
    defined = {
        name
        for _, text, use in files
        if use
        for kind, name in _DEFINES.findall(text)
        if kind == "FUNCTION"
    }
    for oid, (name, _, signature) in _function_rows(driver).items():
        if name in defined and oid not in redefined:
            logger.info("dropping %s: the SQL files no longer define it", signature)
            # No CASCADE: an application object that still uses it should stop the upgrade.
            driver.execute(sql.SQL("DROP FUNCTION {}").format(sql.SQL(signature)))


def _drop(driver: psycopg.Connection, kind: str, name: str) -> None:
    if kind == "VIEW":
        driver.execute(sql.SQL("DROP VIEW IF EXISTS {}").format(sql.Identifier("pyembed", name)))
        return
    for (signature,) in driver.execute(queries.get("function_overloads"), {"name": name}):
        # The signature is the catalog's own regprocedure text, not input.
        driver.execute(sql.SQL("DROP FUNCTION {}").format(sql.SQL(signature)))
