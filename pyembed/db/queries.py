"""Named SQL queries from ``sql/queries/*.sql`` (and the demo's ``demo.sql``), called by name."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from importlib import resources

from psycopg import sql

from pyembed import errors
from pyembed.db import sql_files

_HEADER = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


class Catalog:
    """The ``-- name: NAME`` queries of one packaged SQL file, read once on first use."""

    def __init__(self, label: str, read: Callable[[], str]) -> None:
        self.label = label
        self._read = read

    @classmethod
    def beside(cls, package: str, filename: str) -> Catalog:
        """The queries of a SQL file shipped inside a Python package (e.g. the demo's)."""
        return cls(
            f"{package}/{filename}",
            lambda: resources.files(package).joinpath(filename).read_text(encoding="utf-8"),
        )

    @functools.cached_property
    def _named(self) -> dict[str, str]:
        parts = _HEADER.split(self._read())
        # parts = [preamble, name1, body1, name2, body2, ...]
        named = {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}
        if len(named) != len(parts[1::2]):
            raise errors.PyembedError(f"{self.label} defines a query name twice")
        return named

    def get(self, name: str) -> sql.SQL:
        """The named query, ready for ``execute`` or for ``.format()`` with identifiers."""
        try:
            text = self._named[name]
        except KeyError:
            raise errors.PyembedError(f"no query named {name!r} in {self.label}") from None
        # The text comes from pyembed's own packaged file, never from user input.
        return sql.SQL(text)


def _pyembed_queries() -> str:
    # One namespace over the files by domain (db, ingest, search, models, ...): names are unique.
    folder = sql_files.sql_dir() / "queries"
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.sql")))


_PYEMBED = Catalog("sql/queries/", _pyembed_queries)


def get(name: str) -> sql.SQL:
    """A named query of ``sql/queries/``."""
    return _PYEMBED.get(name)
