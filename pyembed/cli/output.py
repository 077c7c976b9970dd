"""Terminal output: rich tables and progress on a terminal, plain lines elsewhere."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Sequence

from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table

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
