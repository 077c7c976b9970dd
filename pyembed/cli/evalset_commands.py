"""`pyembed evalset ...`: eval sets from files."""

from __future__ import annotations

from pathlib import Path

import click

from pyembed.cli import options, output
from pyembed.db import database
from pyembed.evaluation import eval_sets


@click.group(name="evalset")
def evalset_group() -> None:
    """Import eval sets (queries with graded judgments) for a collection."""


def _report(name: str, set_id: int, summary: dict[str, object]) -> None:
    output.pairs(f"eval set {name} (id {set_id})", sorted(summary.items()))


@evalset_group.command(name="import-beir")
@options.dsn_option
@click.argument("collection")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--split", default="test", show_default=True)
@click.option("--name", default=None, help="Eval set name (default: beir FOLDER SPLIT).")
def import_beir_command(
    dsn: str | None, collection: str, folder: Path, split: str, name: str | None
) -> None:
    """Queries and qrels of a BEIR folder; corpus ids are the collection's keys."""
    with database.Database.resolve(dsn).session() as conn:
        set_id, summary = eval_sets.import_beir(conn, collection, folder, split=split, name=name)
    _report(name or f"beir {folder.name} {split}", set_id, summary)


@evalset_group.command(name="import-jsonl")
@options.dsn_option
@click.argument("collection")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", default=None, help="Eval set name (default: jsonl FILE).")
def import_jsonl_command(dsn: str | None, collection: str, path: Path, name: str | None) -> None:
    """{"query": ..., "relevant": {key: grade} or [key, ...]} per line."""
    with database.Database.resolve(dsn).session() as conn:
        set_id, summary = eval_sets.import_jsonl(conn, collection, path, name=name)
    _report(name or f"jsonl {path.stem}", set_id, summary)
