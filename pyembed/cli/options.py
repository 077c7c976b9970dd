"""Options shared by several commands."""

from __future__ import annotations

import click

dsn_option = click.option(
    "--dsn",
    default=None,
    metavar="DSN",
    help="PostgreSQL connection string. Default: PYEMBED_DSN, DATABASE_URL, PG* variables, "
    "else the embedded server.",
)
