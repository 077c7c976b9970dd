"""Where the SQL files and Alembic scripts live, in a wheel and in a source checkout.

A wheel carries them inside the package (`pyembed/_resources/`, see pyproject's force-include);
a source checkout or editable install reads them from the top-level `sql/` and `migrations/`.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

from pyembed import errors

_PACKAGE = "pyembed"


def _locate(name: str) -> Path:
    packaged = resources.files(_PACKAGE) / "_resources" / name
    if packaged.is_dir():
        return Path(str(packaged))
    checkout = Path(__file__).resolve().parents[2] / name
    if checkout.is_dir():
        return checkout
    raise errors.PyembedError(
        f"pyembed's `{name}/` files are missing from this installation",
        hint="reinstall pyembed from a wheel or a full source checkout",
    )


@functools.cache
def sql_dir() -> Path:
    """The directory holding all of pyembed's SQL."""
    return _locate("sql")


@functools.cache
def migrations_dir() -> Path:
    """The Alembic script directory (env.py and versions/)."""
    return _locate("migrations")


def sql_file(relative: str) -> Path:
    """A SQL file below sql/, e.g. ``migrations/0001_core_catalog.sql``."""
    path = sql_dir() / relative
    if not path.is_file():
        raise errors.PyembedError(f"SQL file {relative!r} is not part of this pyembed")
    return path


def read_sql(relative: str) -> str:
    """The text of a SQL file below sql/."""
    return sql_file(relative).read_text(encoding="utf-8")
