"""`pyembed worker` and `pyembed failed ...`."""

from __future__ import annotations

import contextlib
import signal
from types import FrameType

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pyembed.cli import options, output
from pyembed.db import database
from pyembed.ingest import dead_letters, work_items, worker
from pyembed.training import learner


@click.command(name="worker")
@options.dsn_option
@click.option("--collection", "collections", multiple=True, help="Only these collections.")
@click.option(
    "--batch-size",
    envvar="PYEMBED_BATCH_SIZE",
    default=options.default(worker.WorkerOptions, "claim_size"),
    show_default=True,
    type=click.IntRange(1),
    help="Rows claimed at once [env PYEMBED_BATCH_SIZE].",
)
@click.option(
    "--encode-batch-size",
    envvar="PYEMBED_ENCODE_BATCH_SIZE",
    default=options.default(worker.WorkerOptions, "encode_batch_size"),
    show_default=True,
    type=click.IntRange(1),
    help="Chunks per forward pass of the model.",
)
@click.option("--once", is_flag=True, help="Exit when no work is due instead of waiting.")
@click.option("--max-rows", type=click.IntRange(1), default=None, help="Exit after N rows.")
@click.option(
    "--lease-seconds",
    envvar="PYEMBED_LEASE_SECONDS",
    default=options.default(worker.WorkerOptions, "lease_seconds"),
    show_default=True,
    type=click.FloatRange(5),
    help="How long claimed rows stay ours without a heartbeat.",
)
@click.option(
    "--max-attempts",
    envvar="PYEMBED_MAX_ATTEMPTS",
    default=options.default(worker.WorkerOptions, "max_attempts"),
    show_default=True,
    type=click.IntRange(1),
    help="Failures before a row moves to failed_items.",
)
@click.option("--device", envvar="PYEMBED_DEVICE", default=None, help="cpu, cuda, ... (auto).")
@click.option(
    "--learn",
    is_flag=True,
    envvar="PYEMBED_WORKER_LEARN",
    help="Also run due learning policies; the role must be a writer too "
    "[env PYEMBED_WORKER_LEARN].",
)
def worker_command(
    dsn: str | None,
    collections: tuple[str, ...],
    batch_size: int,
    encode_batch_size: int,
    once: bool,
    max_rows: int | None,
    lease_seconds: float,
    max_attempts: int,
    device: str | None,
    learn: bool,
) -> None:
    """Embed queued rows until stopped (SIGTERM/Ctrl-C finish the current batch first)."""
    opts = worker.WorkerOptions(
        collections=list(collections) or None,
        claim_size=batch_size,
        encode_batch_size=encode_batch_size,
        lease_seconds=lease_seconds,
        heartbeat_seconds=min(10.0, lease_seconds / 3),
        max_attempts=max_attempts,
        once=once,
        max_rows=max_rows,
        device=device,
    )
    runner = worker.Worker(database.Database.resolve(dsn), opts)

    def graceful(signum: int, frame: FrameType | None) -> None:
        output.err_console.print("stopping after this batch (signal again to abort)")
        signal.signal(signal.SIGINT, signal.default_int_handler)
        runner.stop()

    signal.signal(signal.SIGTERM, graceful)
    signal.signal(signal.SIGINT, graceful)
    with learner.beside(runner) if learn else contextlib.nullcontext():
        stats = _run(runner)
    output.pairs(
        "worker finished",
        [
            ("rows", stats.rows),
            ("chunks", stats.chunks),
            ("unchanged", stats.unchanged),
            ("empty text", stats.skipped_empty),
            ("deleted", stats.deleted),
            ("failures", stats.failures),
        ],
    )


def _run(runner: worker.Worker) -> worker.WorkerStats:
    if not output.err_console.is_terminal:
        stats = runner.run()
    else:
        with Progress(
            TextColumn("embedding"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            console=output.err_console,
        ) as progress:
            task = progress.add_task("rows", total=runner.pending(), rate="")

            def advance(outcome: work_items.Outcome, totals: worker.WorkerStats) -> None:
                progress.update(
                    task,
                    advance=outcome.rows,
                    total=totals.rows + runner.pending(),
                    rate=f"{totals.chunks} chunks, {totals.failures} failed",
                )

            stats = runner.run(on_batch=advance)
    return stats


@click.group(name="failed")
def failed_group() -> None:
    """Rows that failed too often (pyembed.failed_items)."""


@failed_group.command(name="list")
@options.dsn_option
@click.option("--collection", default=None)
@click.option(
    "--limit",
    default=options.default(dead_letters.list_failed, "limit"),
    show_default=True,
    type=click.IntRange(1),
)
@output.json_option
def failed_list(dsn: str | None, collection: str | None, limit: int, as_json: bool) -> None:
    """Show the newest failed rows with their last error."""
    rows = dead_letters.list_failed(database.Database.resolve(dsn), collection, limit)
    if as_json:
        output.emit_json(rows)
        return
    output.table(
        "failed rows",
        ("id", "collection", "key", "attempts", "failed at", "last error"),
        [
            (
                r.id,
                r.collection,
                r.pk,
                r.attempts,
                f"{r.failed_at:%Y-%m-%d %H:%M:%S}",
                r.last_error[:200],
            )
            for r in rows
        ],
    )


@failed_group.command(name="retry")
@options.dsn_option
@click.option("--collection", default=None, help="Only this collection's rows.")
@click.argument("ids", nargs=-1, type=int)
def failed_retry(dsn: str | None, collection: str | None, ids: tuple[int, ...]) -> None:
    """Put failed rows (all, a collection's, or IDS) back in the queue with fresh attempts."""
    count = dead_letters.retry_failed(database.Database.resolve(dsn), collection, list(ids) or None)
    click.echo(f"requeued {count} row(s)")
