"""The root `pyembed` command: logging, error reporting and the sub-command groups."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click
import psycopg

from pyembed import __version__, errors
from pyembed.cli import (
    canary_commands,
    dashboard_command,
    db_commands,
    demo_command,
    endpoint_commands,
    eval_command,
    evalset_commands,
    index_commands,
    learn_commands,
    model_commands,
    output,
    report_command,
    serve_command,
    train_command,
    worker_commands,
)


class _Root(click.Group):
    """Prints any database or pyembed error as one clear message with the exit code of its kind
    (the exit_code of each errors class) instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except errors.PyembedError as exc:
            output.error(str(exc))
            sys.exit(exc.exit_code)
        except psycopg.Error as exc:  # a command that did not translate it itself
            translated = errors.translate(exc)
            output.error(str(translated))
            sys.exit(translated.exit_code)


def _configure_logging(level: str) -> None:
    handler = output.log_handler()
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    # Alembic narrates every context at INFO; pyembed says what matters itself.
    if logging.getLogger().level > logging.DEBUG:
        logging.getLogger("alembic").setLevel(logging.WARNING)


@click.group(cls=_Root, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pyembed")
@click.option(
    "--log-level",
    envvar="PYEMBED_LOG_LEVEL",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    help="Logging verbosity [env PYEMBED_LOG_LEVEL].",
)
def main(log_level: str) -> None:
    """pyembed: PostgreSQL + pgvector as a self-improving embedding platform.

    Commands use the database given by --dsn, else PYEMBED_DSN, else DATABASE_URL,
    else libpq's PG* variables, else the embedded PostgreSQL (started on demand).
    """
    _configure_logging(log_level)


main.add_command(db_commands.db)
main.add_command(demo_command.demo)
main.add_command(worker_commands.worker_command)
main.add_command(worker_commands.failed_group)
main.add_command(index_commands.index_group)
main.add_command(model_commands.models_group)
model_commands.models_group.add_command(endpoint_commands.register_endpoint_command)
model_commands.models_group.add_command(endpoint_commands.allow_endpoint_command)
main.add_command(train_command.train_command)
main.add_command(train_command.train_reranker_command)
main.add_command(learn_commands.learn_command)
main.add_command(learn_commands.learning_policy_command)
main.add_command(canary_commands.canary_group)
main.add_command(canary_commands.online_metrics_command)
main.add_command(eval_command.eval_command)
main.add_command(report_command.report_command)
main.add_command(evalset_commands.evalset_group)
main.add_command(serve_command.serve_command)
main.add_command(dashboard_command.dashboard_command)
