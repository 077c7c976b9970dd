"""`pyembed db ...`: the embedded server and schema migrations."""

from __future__ import annotations

from pathlib import Path

import click

from pyembed.cli import options, output
from pyembed.db import connection, database, embedded, migrate, status

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
@output.json_option
def status_command(dsn: str | None, home: Path | None, as_json: bool) -> None:
    """Show the server, pgvector and schema revision; exit 3 if the database is unreachable."""
    configured = connection.configured_dsn(dsn)
    server = None
    if configured is None:
        server = embedded.EmbeddedServer(home).status()
        if not as_json:
            _print_server(server)
        if not server.running or server.dsn is None:
            if as_json:
                output.emit_json({"embedded": server, "database": None})
            raise SystemExit(3)
        configured = server.dsn
    info = status.database_status(database.Database(configured))
    if as_json:
        output.emit_json({"embedded": server, "database": info})
        return
    print_database(info)


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
    db = database.Database.resolve(dsn)
    after = migrate.upgrade(db, revision)
    click.echo(f"pyembed schema at {after or 'base'} on {db.describe()}")


@db.command()
@options.dsn_option
@click.argument("revision")
def downgrade(dsn: str | None, revision: str) -> None:
    """Migrate the database down to REVISION (`base` removes pyembed and its embeddings)."""
    db = database.Database.resolve(dsn)
    after = migrate.downgrade(db, revision)
    click.echo(f"pyembed schema at {after or 'base'} on {db.describe()}")


@db.command()
@options.dsn_option
@output.json_option
def current(dsn: str | None, as_json: bool) -> None:
    """Print the database's pyembed revision (`base` when not installed)."""
    revision = migrate.current(database.Database.resolve(dsn))
    if as_json:
        output.emit_json({"revision": revision, "head": migrate.heads()[0]})
        return
    click.echo(revision or "base")


@db.command()
@output.json_option
def history(as_json: bool) -> None:
    """List pyembed's migrations, oldest first."""
    head = migrate.heads()
    if as_json:
        output.emit_json([{**vars(r), "head": r.revision in head} for r in migrate.history()])
        return
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
