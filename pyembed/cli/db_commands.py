"""`pyembed db ...`: the embedded server and schema migrations."""

from __future__ import annotations

from pathlib import Path

import click

from pyembed.cli import options, output
from pyembed.db import connection, embedded, migrate, status

home_option = click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="PYEMBED_HOME",
    default=None,
    help="Directory of the embedded server [env PYEMBED_HOME; default ./.pyembed].",
)
port_option = click.option(
    "--port",
    type=click.IntRange(1, 65535),
    envvar="PYEMBED_PORT",
    default=None,
    help="TCP port on 127.0.0.1 [env PYEMBED_PORT; default: a free port, remembered].",
)


@click.group()
def db() -> None:
    """The embedded PostgreSQL server and pyembed's schema migrations."""


def _print_server(state: embedded.ServerStatus) -> None:
    output.pairs(
        "embedded PostgreSQL",
        [
            ("home", state.home),
            ("state", "running" if state.running else "stopped"),
            ("pid", state.pid),
            ("dsn", state.dsn),
        ],
    )


def print_database(info: status.DatabaseStatus) -> None:
    """Print a database's status table (also used by the demo)."""
    output.pairs(
        "database",
        [
            ("server", info.where),
            ("PostgreSQL", info.server_version),
            ("pgvector", info.pgvector_version or "not installed"),
            ("role", "standby" if info.in_recovery else "primary"),
            ("pyembed schema", info.revision or "not installed (run `pyembed db upgrade`)"),
            ("newest schema", info.head),
        ],
    )


@db.command()
@home_option
@port_option
def start(home: Path | None, port: int | None) -> None:
    """Start the embedded server (initializing it on first use)."""
    state = embedded.EmbeddedServer(home, port=port).start()
    _print_server(state)


@db.command()
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Directory of the standby (its own, not the primary's).",
)
@click.option(
    "--primary-home",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="PYEMBED_HOME",
    default=None,
    help="Directory of the running primary [env PYEMBED_HOME; default ./.pyembed].",
)
@port_option
def replica(home: Path, primary_home: Path | None, port: int | None) -> None:
    """Start a streaming hot standby of the embedded server, for read-only searches."""
    primary = embedded.EmbeddedServer(primary_home)
    _print_server(embedded.EmbeddedServer(home, port=port).start_replica(primary))


@db.command()
@home_option
def stop(home: Path | None) -> None:
    """Stop the embedded server."""
    _print_server(embedded.EmbeddedServer(home).stop())


@db.command(name="status")
@options.dsn_option
@home_option
def status_command(dsn: str | None, home: Path | None) -> None:
    """Show the server, pgvector and schema revision; exit 1 if the database is unreachable."""
    configured = connection.configured_dsn(dsn)
    if configured is None:
        state = embedded.EmbeddedServer(home).status()
        _print_server(state)
        if not state.running or state.dsn is None:
            raise SystemExit(3)
        configured = state.dsn
    print_database(status.database_status(configured))


@db.command(name="dsn")
@options.dsn_option
@home_option
def dsn_command(dsn: str | None, home: Path | None) -> None:
    """Print the DSN commands will use (for the embedded server, without starting it)."""
    configured = connection.configured_dsn(dsn)
    click.echo(configured if configured is not None else embedded.EmbeddedServer(home).dsn())


@db.command()
@options.dsn_option
@click.argument("revision", default="head")
def upgrade(dsn: str | None, revision: str) -> None:
    """Migrate the database up to REVISION (default: head)."""
    target = connection.resolve_dsn(dsn)
    after = migrate.upgrade(target, revision)
    click.echo(f"pyembed schema at {after or 'base'} on {connection.describe(target)}")


@db.command()
@options.dsn_option
@click.argument("revision")
def downgrade(dsn: str | None, revision: str) -> None:
    """Migrate the database down to REVISION (`base` removes pyembed and its embeddings)."""
    target = connection.resolve_dsn(dsn)
    after = migrate.downgrade(target, revision)
    click.echo(f"pyembed schema at {after or 'base'} on {connection.describe(target)}")


@db.command()
@options.dsn_option
def current(dsn: str | None) -> None:
    """Print the database's pyembed revision (`base` when not installed)."""
    click.echo(migrate.current(connection.resolve_dsn(dsn)) or "base")


@db.command()
def history() -> None:
    """List pyembed's migrations, oldest first."""
    head = migrate.heads()
    output.table(
        "pyembed migrations",
        ("revision", "revises", "what it does"),
        [
            (
                r.revision + (" (head)" if r.revision in head else ""),
                r.down_revision or "base",
                r.doc,
            )
            for r in migrate.history()
        ],
    )
