"""`pyembed dashboard`: the live page of collections, versions, training and learning."""

from __future__ import annotations

import click

from pyembed import extras
from pyembed.cli import options
from pyembed.db import database


@click.command(name="dashboard")
@options.dsn_option
@click.option(
    "--host",
    envvar="PYEMBED_DASHBOARD_HOST",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (anyone who reaches it sees what the role sees) "
    "[env PYEMBED_DASHBOARD_HOST].",
)
@click.option(
    "--port",
    envvar="PYEMBED_DASHBOARD_PORT",
    default=8002,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="Port [env PYEMBED_DASHBOARD_PORT].",
)
@click.option(
    "--refresh",
    "refresh_seconds",
    default=2.0,
    show_default=True,
    type=click.FloatRange(0.2),
    help="Seconds between the page's updates.",
)
@click.option("--access-log", is_flag=True, help="Log a line per request.")
def dashboard_command(
    dsn: str | None, host: str, port: int, refresh_seconds: float, access_log: bool
) -> None:
    """Serve a live page: queues and workers, versions on a timeline with their metrics,
    deployments, training runs and learning policies; it updates while you watch."""
    with extras.needed("serve"):
        from pyembed.serve import dashboard

    db = database.Database.resolve(dsn)
    click.echo(f"pyembed dashboard on http://{host}:{port}/ ({db.describe()})")
    dashboard.serve(
        db, host=host, port=port, refresh_seconds=refresh_seconds, access_log=access_log
    )
