"""Terminal output: rich tables and progress on a terminal, plain lines elsewhere."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import decimal
import json
import logging
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

logger = logging.getLogger(__name__)

console = Console()
if not console.is_terminal:
    # Piped output (logs, CI, scripts) gets whole lines rather than 80-column wrapping.
    console = Console(width=200)
err_console = Console(stderr=True)


def log_handler() -> logging.Handler:
    """Rich log lines on a terminal; plain timestamped lines in CI and pipes."""
    if err_console.is_terminal:
        return RichHandler(console=err_console, show_path=False, rich_tracebacks=False)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    return handler


@contextlib.contextmanager
def index_build_progress() -> Iterator[Callable[[dict[str, Any]], None]]:
    """A callback for pg_stat_progress_create_index rows: a progress bar with the build's phase
    on a terminal, a log line per phase elsewhere."""
    if not err_console.is_terminal:
        phases: list[str] = []

        def log(row: dict[str, Any]) -> None:
            if not phases or phases[-1] != row["phase"]:
                phases.append(row["phase"])
                logger.info("index build: %s", row["phase"])

        yield log
        return
    with Progress(
        TextColumn("building index"),
        BarColumn(),
        TextColumn("{task.fields[phase]}"),
        TimeElapsedColumn(),
        console=err_console,
    ) as progress:
        task = progress.add_task("build", total=None, phase="")

        def show(row: dict[str, Any]) -> None:
            total = row["tuples_total"] or row["blocks_total"] or None
            done = row["tuples_done"] if row["tuples_total"] else row["blocks_done"]
            progress.update(task, total=total, completed=done, phase=row["phase"])

        yield show


def error(message: str) -> None:
    """Print an error for a person: the problem, then the fix."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)


def table(
    title: str, columns: Sequence[str], rows: Iterable[Sequence[object]], *, header: bool = True
) -> None:
    """Print a small table."""
    out = Table(title=title, title_justify="left", show_header=header)
    for column in columns:
        out.add_column(column)
    for row in rows:
        out.add_row(*("" if value is None else str(value) for value in row))
    console.print(out)


def pairs(title: str, items: Sequence[tuple[str, object]]) -> None:
    """Print key/value lines as a two-column table."""
    table(title, ("", ""), [(key, value) for key, value in items], header=False)


json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print JSON (the records behind the table) for scripts."
)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def emit_json(records: Any) -> None:
    """Print records as one JSON document on stdout (no colours, no wrapping)."""
    click.echo(json.dumps(records, default=_plain, indent=2, sort_keys=False))
