"""`pyembed report`: the self-contained HTML report of a database's collections."""

from __future__ import annotations

from pathlib import Path

import click

from pyembed.cli import options
from pyembed.db import database
from pyembed.evaluation import report


@click.command(name="report")
@options.dsn_option
@click.argument("collection", required=False)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("report.html"),
    show_default=True,
)
def report_command(dsn: str | None, collection: str | None, out: Path) -> None:
    """Write a self-contained HTML page: metrics by version, training loss, index tuning,
    queues, workers and deployments."""
    written = report.write(database.Database.resolve(dsn), out, collection)
    click.echo(f"wrote {written.resolve()}")
