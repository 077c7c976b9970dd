"""Named SQL queries from ``sql/queries.sql``: Python refers to them by name."""

from __future__ import annotations

import functools
import re

from psycopg import sql

from pyembed import errors
from pyembed.db import sql_files

_HEADER = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


@functools.cache
def _all() -> dict[str, str]:
    text = sql_files.read_sql("queries.sql")
    parts = _HEADER.split(text)
    # parts = [preamble, name1, body1, name2, body2, ...]
    named = {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}
    if len(named) != len(parts[1::2]):
        raise errors.PyembedError("sql/queries.sql defines a query name twice")
    return named


def get(name: str) -> sql.SQL:
    """The named query, ready for ``execute`` or for ``.format()`` with identifiers."""
    try:
        text = _all()[name]
    except KeyError:
        raise errors.PyembedError(f"no query named {name!r} in sql/queries.sql") from None
    # The text comes from pyembed's own packaged file, never from user input.
    return sql.SQL(text)
