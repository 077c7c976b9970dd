"""Options shared by several commands."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import click

dsn_option = click.option(
    "--dsn",
    default=None,
    metavar="DSN",
    help="PostgreSQL connection string. Default: PYEMBED_DSN, DATABASE_URL, PG* variables, "
    "else the embedded server.",
)


def default(owner: Any, name: str) -> Any:
    """The default of field ``name`` of dataclass ``owner`` (or of parameter ``name`` of a
    function): CLI defaults come from the public API instead of being typed twice."""
    if dataclasses.is_dataclass(owner):
        field = next(f for f in dataclasses.fields(owner) if f.name == name)
        if field.default is dataclasses.MISSING:
            raise TypeError(f"{owner!r}.{name} has no default")
        return field.default
    parameter = inspect.signature(owner).parameters[name]
    if parameter.default is inspect.Parameter.empty:
        raise TypeError(f"{owner!r}({name}) has no default")
    return parameter.default
