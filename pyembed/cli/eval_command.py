"""`pyembed eval`: measure a version on an eval set (retrieval) or beyond retrieval."""

from __future__ import annotations

from pathlib import Path

import click

from pyembed import errors
from pyembed.cli import options, output
from pyembed.db import database
from pyembed.evaluation import intrinsic_runs, retrieval
from pyembed.models import registry


@click.command(name="eval")
@options.dsn_option
@click.argument("collection")
@click.option("--version", default=None, help="Model version (default: the active one).")
@click.option(
    "--kind",
    type=click.Choice(["retrieval", *intrinsic_runs.KINDS]),
    default="retrieval",
    show_default=True,
)
@click.option("--set", "eval_set", default=None, help="Eval set name (default: the newest).")
@click.option(
    "--mode",
    type=click.Choice(["exact", "deployed", "reranked", "both", "all"]),
    default="both",
    show_default=True,
    help="both: exact and deployed; all: the three.",
)
@click.option(
    "--reranker",
    default=None,
    help="reranked: the reranker (default: the collection's, else COLLECTION-reranker).",
)
@click.option(
    "--rerank",
    type=int,
    default=retrieval.DEFAULT_RERANK,
    show_default=True,
    help="reranked: how many candidates the reranker reorders.",
)
@click.option("--k", "ks", default="1,3,5,10,100", show_default=True, help="Cut-offs.")
@click.option(
    "--sts",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="similarity: a TSV of sentence1, sentence2, score.",
)
@click.option("--labels", "label_column", help="clustering: the source column of the labels.")
@click.option(
    "--weat",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="bias: a JSON file of targets_x/_y and attributes_a/_b word lists.",
)
@click.option("--batch-sizes", default="1,16,64,128", show_default=True, help="efficiency.")
def eval_command(
    dsn: str | None,
    collection: str,
    version: str | None,
    kind: str,
    eval_set: str | None,
    mode: str,
    reranker: str | None,
    rerank: int,
    ks: str,
    sts: Path | None,
    label_column: str | None,
    weat: Path | None,
    batch_sizes: str,
) -> None:
    """Measure a version: retrieval on an eval set (the model alone, through the live index, or
    reranked), or similarity, clustering, bias and efficiency."""
    db = database.Database.resolve(dsn)
    with db.session() as conn:
        version_id = registry.resolve_version(conn, version) if version else None
    if kind != "retrieval":
        run_id, values = intrinsic_runs.run(
            db,
            collection,
            kind,
            version_id=version_id,
            sts_file=sts,
            label_column=label_column,
            weat_file=weat,
            batch_sizes=_numbers(batch_sizes),
        )
        rows = [(name, f"{value:.4f}") for name, value in sorted(values.items())]
        output.table(f"{collection}: {kind} (run {run_id})", ("metric", "value"), rows)
        return
    modes = {
        "both": ("exact", "deployed"),
        "all": ("exact", "deployed", "reranked"),
    }.get(mode, (mode,))
    results = retrieval.evaluate(
        db,
        collection,
        version_id=version_id,
        eval_set=eval_set,
        modes=modes,
        ks=_numbers(ks),
        reranker=reranker,
        rerank=rerank,
    )
    names = sorted({name for r in results for name in r.metrics})
    output.table(
        f"{collection}: version {results[0].version_id if results else '?'}, "
        f"eval set {results[0].eval_set_id if results else '?'}",
        ("metric", *(f"{r.mode} (run {r.run_id})" for r in results)),
        [(name, *(f"{r.metrics[name]:.4f}" for r in results)) for name in names],
    )


def _numbers(text: str) -> tuple[int, ...]:
    try:
        numbers = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError as exc:
        raise errors.ConfigError(f"{text!r} is not a list of numbers", hint="e.g. 1,5,10") from exc
    if not numbers or numbers[0] < 1:
        raise errors.ConfigError(f"{text!r}: give positive numbers", hint="e.g. 1,5,10")
    return numbers
