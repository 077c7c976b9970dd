"""`pyembed demo`: the whole loop on the embedded database."""

from __future__ import annotations

import click

from pyembed import demo as demo_module
from pyembed.cli import db_commands


@click.command()
@click.option("--quick", is_flag=True, help="A smaller run for tests and a first look.")
def demo(quick: bool) -> None:
    """Run the demo on the embedded PostgreSQL."""
    result = demo_module.run(quick=quick)
    db_commands.print_database(result.database)
    click.echo(f"\nThe database keeps running. Connect with:\n  psql '{result.dsn}'\n")
    for query in result.queries_to_try:
        click.echo(f"  {query}")
