"""`pyembed serve`: the OpenAI-compatible embeddings API."""

from __future__ import annotations

import click

from pyembed import extras
from pyembed.cli import options
from pyembed.db import database


@click.command(name="serve")
@options.dsn_option
@click.option(
    "--host",
    envvar="PYEMBED_SERVE_HOST",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on [env PYEMBED_SERVE_HOST].",
)
@click.option(
    "--port",
    envvar="PYEMBED_SERVE_PORT",
    default=8001,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="Port [env PYEMBED_SERVE_PORT].",
)
@click.option("--access-log", is_flag=True, help="Log a line per request.")
def serve_command(dsn: str | None, host: str, port: int, access_log: bool) -> None:
    """Serve POST /v1/embeddings, GET /v1/models, /health and /metrics for every version."""
    with extras.needed("serve"):
        from pyembed.serve import http_api

    http_api.serve(database.Database.resolve(dsn), host=host, port=port, access_log=access_log)
