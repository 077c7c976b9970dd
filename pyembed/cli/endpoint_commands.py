"""`pyembed models register-endpoint` and `allow-endpoint`: hosted embedding APIs as models."""

from __future__ import annotations

import click

from pyembed.cli import options, output
from pyembed.db import database
from pyembed.models import endpoint_client, endpoint_registry


@click.command(name="register-endpoint")
@options.dsn_option
@click.argument("name")
@click.option("--base-url", required=True, help="Up to the API version: https://api.openai.com/v1")
@click.option("--model", "model_name", required=True, help="The endpoint's model name.")
@click.option("--dimensions", required=True, type=click.IntRange(1, 16000))
@click.option(
    "--send-dimensions/--no-send-dimensions",
    default=False,
    help="Ask for --dimensions in each request (shortened vectors, where the API supports it).",
)
@click.option(
    "--api-key-env",
    default=None,
    metavar="VARIABLE",
    help="The environment variable holding the key where embedding runs (never stored).",
)
@click.option(
    "--key-header",
    default="Authorization",
    show_default=True,
    help="Where the key goes: Authorization sends 'Bearer KEY'; Azure OpenAI takes api-key.",
)
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(1, 2048))
@click.option("--requests-per-minute", type=click.IntRange(1), default=None)
@click.option("--tokens-per-minute", type=click.IntRange(1), default=None)
@click.option("--timeout", default=30.0, show_default=True, type=click.FloatRange(min=0.1))
@click.option("--max-retries", default=5, show_default=True, type=click.IntRange(0))
@click.option(
    "--max-input-tokens",
    default=8191,
    show_default=True,
    type=click.IntRange(16),
    help="The endpoint's input limit; chunks stay under half of it.",
)
@click.option(
    "--input-type/--no-input-type",
    default=False,
    help="Send input_type query|document (pyembed serve and some providers).",
)
@click.option("--normalize/--no-normalize", default=True, show_default=True)
@click.option("--query-prefix", default="", help="Prepended to queries.")
@click.option("--document-prefix", default="", help="Prepended to documents.")
@click.option("--description", default="")
@click.option(
    "--check/--no-check",
    default=True,
    show_default=True,
    help="Embed one text through the endpoint before registering.",
)
def register_endpoint_command(
    dsn: str | None,
    name: str,
    base_url: str,
    model_name: str,
    dimensions: int,
    send_dimensions: bool,
    api_key_env: str | None,
    key_header: str,
    batch_size: int,
    requests_per_minute: int | None,
    tokens_per_minute: int | None,
    timeout: float,
    max_retries: int,
    max_input_tokens: int,
    input_type: bool,
    normalize: bool,
    query_prefix: str,
    document_prefix: str,
    description: str,
    check: bool,
) -> None:
    """Register an OpenAI-compatible embeddings endpoint as the next version of NAME."""
    spec = endpoint_client.EndpointSpec(
        base_url=base_url,
        model=model_name,
        dimensions=dimensions,
        send_dimensions=send_dimensions,
        api_key_env=api_key_env,
        key_header=key_header,
        batch_size=batch_size,
        requests_per_minute=requests_per_minute,
        tokens_per_minute=tokens_per_minute,
        timeout_seconds=timeout,
        max_retries=max_retries,
        send_input_type=input_type,
    )
    done = endpoint_registry.register_endpoint(
        database.Database.resolve(dsn),
        name,
        spec,
        max_input_tokens=max_input_tokens,
        normalize=normalize,
        query_prefix=query_prefix,
        document_prefix=document_prefix,
        description=description,
        check=check,
    )
    output.pairs(
        f"registered {done.model} v{done.version}",
        [("version id", done.id), ("endpoint", f"{model_name} at {base_url}")],
    )


@click.command(name="allow-endpoint")
@options.dsn_option
@click.argument("urls", nargs=-1)
@click.option("--remove", multiple=True, help="A server to take off the list.")
def allow_endpoint_command(dsn: str | None, urls: tuple[str, ...], remove: tuple[str, ...]) -> None:
    """Let endpoint models be at these servers (admin only): pyembed sends keys nowhere else.

    With no URLS and no --remove, prints the list."""
    db = database.Database.resolve(dsn)
    allowed = endpoint_registry.allow_origins(db, list(urls), list(remove))
    output.pairs("endpoint servers", [("allowed", " ".join(allowed) or "(none)")])
