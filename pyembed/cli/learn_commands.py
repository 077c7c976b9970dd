"""`pyembed train` and `pyembed eval`: learning from the query log, measuring every version."""

from __future__ import annotations

from pathlib import Path

import click

from pyembed import errors
from pyembed.cli import options, output
from pyembed.db import connection
from pyembed.evaluation import intrinsic_runs, report, retrieval
from pyembed.models import registry
from pyembed.training import losses, runs, sources


@click.command(name="train")
@options.dsn_option
@click.argument("collection")
@click.option("--loss", type=click.Choice(losses.LOSSES), default="mnrl", show_default=True)
@click.option("--epochs", type=click.FloatRange(min=0.01), default=1.0, show_default=True)
@click.option("--batch-size", type=click.IntRange(2), default=64, show_default=True)
@click.option(
    "--lr", "learning_rate", type=click.FloatRange(min=1e-8), default=3e-5, show_default=True
)
@click.option(
    "--negatives",
    is_flag=True,
    help="Train with hard negatives from the log (rows shown above the clicked one).",
)
@click.option(
    "--min-signals",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Ignore (query, row) pairs with fewer feedback signals.",
)
@click.option(
    "--held-out",
    type=click.FloatRange(0, 0.9),
    default=0.1,
    show_default=True,
    help="Share of logged queries kept out of training for the eval set.",
)
@click.option(
    "--pairs",
    "pairs_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Train from a JSONL file of query/positive(/negative) pairs instead.",
)
@click.option(
    "--on-bad-line", type=click.Choice(["stop", "skip"]), default="stop", show_default=True
)
@click.option(
    "--synthetic", is_flag=True, help="Train from pairs drawn from the collection itself."
)
@click.option("--teacher", default=None, help="Model version to distill from (--loss distill).")
@click.option(
    "--promote-if-better",
    is_flag=True,
    help="Promote the new version if it beats the active one on the held-out set.",
)
@click.option(
    "--resume",
    "resume_run",
    type=int,
    default=None,
    help="Resume an interrupted training run from its last checkpoint.",
)
def train_command(
    dsn: str | None,
    collection: str,
    loss: str,
    epochs: float,
    batch_size: int,
    learning_rate: float,
    negatives: bool,
    min_signals: int,
    held_out: float,
    pairs_file: Path | None,
    on_bad_line: str,
    synthetic: bool,
    teacher: str | None,
    promote_if_better: bool,
    resume_run: int | None,
) -> None:
    """Fine-tune COLLECTION's model from its query log and feedback (or --pairs/--synthetic)."""
    if pairs_file is not None and synthetic:
        raise errors.ConfigError("give --pairs or --synthetic, not both")
    target = connection.resolve_dsn(dsn)
    with connection.connect(target, autocommit=True) as conn:
        teacher_id = registry.resolve_version(conn, teacher) if teacher else None
        data = None
        if resume_run is None:
            if pairs_file is not None:
                data = sources.from_jsonl(pairs_file, on_error=on_bad_line)
            elif synthetic:
                data = sources.synthetic(conn, collection)
            else:
                data = sources.from_feedback(
                    conn,
                    collection,
                    min_signals=min_signals,
                    held_out_fraction=held_out,
                    negatives_per_pair=1 if negatives else 0,
                )
    opts = runs.TrainOptions(
        loss=loss,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        use_negatives=negatives,
        teacher_version_id=teacher_id,
    )
    result = runs.train(
        target,
        collection,
        data,
        options=opts,
        promote_if_better=promote_if_better,
        resume_run_id=resume_run,
    )
    rows = [
        ("training run", result.run_id),
        ("new version", result.version_id),
        ("parent version", result.base_version_id),
        ("pairs", result.summary.get("pairs")),
        ("training s", f"{result.train_seconds:.0f}"),
        ("peak memory", f"{result.peak_memory_bytes / 2**30:.2f} GiB"),
        ("promoted", result.promoted),
    ]
    for name in sorted(result.new_metrics):
        rows.append(
            (
                f"{name} (held-out)",
                f"{result.base_metrics.get(name, 0):.4f} -> {result.new_metrics[name]:.4f}",
            )
        )
    output.pairs(f"{collection}: trained", rows)


@click.command(name="eval")
@options.dsn_option
@click.argument("collection")
@click.option("--version", default=None, help="Model version (default: the active one).")
@click.option(
    "--kind",
    type=click.Choice(["retrieval", "similarity", "clustering", "bias", "efficiency"]),
    default="retrieval",
    show_default=True,
)
@click.option("--set", "eval_set", default=None, help="Eval set name (default: the newest).")
@click.option(
    "--mode", type=click.Choice(["exact", "deployed", "both"]), default="both", show_default=True
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
    ks: str,
    sts: Path | None,
    label_column: str | None,
    weat: Path | None,
    batch_sizes: str,
) -> None:
    """Measure a version: retrieval on an eval set (the model alone and through the live
    index), or similarity, clustering, bias and efficiency."""
    target = connection.resolve_dsn(dsn)
    with connection.connect(target, autocommit=True) as conn:
        version_id = registry.resolve_version(conn, version) if version else None
    if kind != "retrieval":
        run_id, values = intrinsic_runs.run(
            target,
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
    modes = ("exact", "deployed") if mode == "both" else (mode,)
    results = retrieval.evaluate(
        target, collection, version_id=version_id, eval_set=eval_set, modes=modes, ks=_numbers(ks)
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
    written = report.write(connection.resolve_dsn(dsn), out, collection)
    click.echo(f"wrote {written.resolve()}")
