"""`pyembed demo`: the whole loop on the embedded database, narrated."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.syntax import Syntax

from pyembed.cli import db_commands, output
from pyembed.demo import walkthrough as demo_module


def _narrator() -> demo_module.Narrator:
    def step(title: str) -> None:
        output.console.rule(f"[bold]{title}", align="left")

    def sql(text: str) -> None:
        output.console.print(Syntax(text, "sql", theme="ansi_dark", background_color="default"))

    def table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
        output.table(title, columns, rows)

    return demo_module.Narrator(step=step, sql=sql, table=table)


@click.command()
@click.option("--quick", is_flag=True, help="A smaller run (about 400 documents) for a first look.")
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The HTML report's path (default: in PYEMBED_HOME).",
)
def demo(quick: bool, report_path: Path | None) -> None:
    """Run the whole loop on the embedded PostgreSQL: embed, search, learn, evaluate, promote."""
    result = demo_module.run(quick=quick, narrator=_narrator(), report_path=report_path)
    output.console.rule("[bold]The database keeps running", align="left")
    db_commands.print_database(result.database)
    click.echo(f"\nReport: {result.report}\nConnect with:  psql '{result.dsn}'\nand try:")
    for query in result.queries_to_try:
        click.echo(f"  {query}")
