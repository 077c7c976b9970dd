"""`pyembed train` and `pyembed train-reranker`: learn from a collection's query log, recorded."""

from __future__ import annotations

from pathlib import Path

import click

from pyembed import errors
from pyembed.cli import options, output
from pyembed.db import database
from pyembed.models import registry
from pyembed.training import losses, reranker_runs, runs, sources
from pyembed.training import options as train_options


@click.command(name="train")
@options.dsn_option
@click.argument("collection")
@click.option(
    "--loss",
    type=click.Choice(losses.LOSSES),
    default=options.default(train_options.TrainOptions, "loss"),
    show_default=True,
)
@click.option(
    "--epochs",
    type=click.FloatRange(min=0.01),
    default=options.default(train_options.TrainOptions, "epochs"),
    show_default=True,
)
@click.option(
    "--batch-size",
    type=click.IntRange(2),
    default=options.default(train_options.TrainOptions, "batch_size"),
    show_default=True,
)
@click.option(
    "--lr",
    "learning_rate",
    type=click.FloatRange(min=1e-8),
    default=options.default(train_options.TrainOptions, "learning_rate"),
    show_default=True,
)
@click.option(
    "--mini-batch-size",
    type=click.IntRange(1),
    default=options.default(train_options.TrainOptions, "mini_batch_size"),
    show_default=True,
    help="Rows per gradient step of a cached loss (memory; the batch stays --batch-size).",
)
@click.option(
    "--negatives",
    is_flag=True,
    help="Train with hard negatives from the log (rows shown above the clicked one).",
)
@click.option(
    "--min-signals",
    type=click.IntRange(1),
    default=options.default(sources.from_feedback, "min_signals"),
    show_default=True,
    help="Ignore (query, row) pairs with fewer feedback signals.",
)
@click.option(
    "--held-out",
    type=click.FloatRange(0, 0.9),
    default=options.default(sources.from_feedback, "held_out_fraction"),
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
    "--base",
    "base",
    default=None,
    help="Train this version instead of the active one, e.g. a local model for a collection "
    "an endpoint embeds (promoted as a change of model).",
)
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
    mini_batch_size: int,
    negatives: bool,
    min_signals: int,
    held_out: float,
    pairs_file: Path | None,
    on_bad_line: str,
    synthetic: bool,
    teacher: str | None,
    base: str | None,
    promote_if_better: bool,
    resume_run: int | None,
) -> None:
    """Fine-tune COLLECTION's model from its query log and feedback (or --pairs/--synthetic)."""
    if pairs_file is not None and synthetic:
        raise errors.ConfigError("give --pairs or --synthetic, not both")
    db = database.Database.resolve(dsn)
    with db.session() as conn:
        teacher_id = registry.resolve_version(conn, teacher) if teacher else None
        base_id = registry.resolve_version(conn, base) if base else None
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
    opts = train_options.TrainOptions(
        loss=loss,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        use_negatives=negatives,
        mini_batch_size=mini_batch_size,
        teacher_version_id=teacher_id,
        base_version_id=base_id,
    )
    result = runs.train(
        db,
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
        ("outcome", f"{result.outcome}: {result.outcome_reason}"),
    ]
    distilled = result.summary.get("distillation")
    if distilled:
        rows.append(("teacher", f"{distilled['teacher']} ({distilled['from']})"))
        rows.append(("cosine to teacher", distilled.get("held_out_mean_cosine")))
    for name in sorted(result.new_metrics):
        rows.append(
            (
                f"{name} (held-out)",
                f"{result.base_metrics.get(name, 0):.4f} -> {result.new_metrics[name]:.4f}",
            )
        )
    output.pairs(f"{collection}: trained", rows)


@click.command(name="train-reranker")
@options.dsn_option
@click.argument("collection")
@click.option("--name", default=None, help="Reranker model to register the result as.")
@click.option(
    "--base",
    default=None,
    help="Reranker version to continue from (default: the collection's embedding model's "
    "transformer with a fresh scoring head).",
)
@click.option(
    "--loss",
    type=click.Choice(reranker_runs.LOSSES),
    default=options.default(reranker_runs.RerankerOptions, "loss"),
    show_default=True,
)
@click.option(
    "--epochs",
    type=click.FloatRange(min=0.01),
    default=options.default(reranker_runs.RerankerOptions, "epochs"),
    show_default=True,
)
@click.option(
    "--batch-size",
    type=click.IntRange(2),
    default=options.default(reranker_runs.RerankerOptions, "batch_size"),
    show_default=True,
)
@click.option(
    "--negatives",
    type=click.IntRange(1, 64),
    default=options.default(reranker_runs.RerankerOptions, "negatives"),
    show_default=True,
    help="Negatives per click: rows shown above it, then rows of other searches.",
)
@click.option(
    "--max-seq-length",
    type=click.IntRange(16),
    default=options.default(reranker_runs.RerankerOptions, "max_seq_length"),
    show_default=True,
    help="Tokens of query and text together.",
)
@click.option(
    "--resume",
    "resume_run",
    type=int,
    default=None,
    help="Resume an interrupted reranker run from its last checkpoint (its own data and options).",
)
def train_reranker_command(
    dsn: str | None,
    collection: str,
    name: str | None,
    base: str | None,
    loss: str,
    epochs: float,
    batch_size: int,
    negatives: int,
    max_seq_length: int,
    resume_run: int | None,
) -> None:
    """Train a reranker (a cross-encoder) for COLLECTION from its query log and feedback."""
    db = database.Database.resolve(dsn)
    with db.session() as conn:
        base_id = registry.resolve_version(conn, base) if base else None
    opts = reranker_runs.RerankerOptions(
        loss=loss,
        epochs=epochs,
        batch_size=batch_size,
        negatives=negatives,
        max_seq_length=max_seq_length,
    )
    result = reranker_runs.train(
        db, collection, name=name, base=base_id, options=opts, resume_run_id=resume_run
    )
    output.pairs(
        f"{collection}: reranker trained",
        [
            ("training run", result.run_id),
            ("reranker", result.model),
            ("new version", result.version_id),
            ("parent version", result.base_version_id),
            ("examples", result.summary.get("examples")),
            ("held-out queries", result.summary.get("held_out_queries")),
            ("training s", f"{result.train_seconds:.0f}"),
            ("peak memory", f"{result.peak_memory_bytes / 2**30:.2f} GiB"),
        ],
    )
