"""Registering an OpenAI-compatible embeddings endpoint as a model version.

The version's row holds the request settings (``pyembed.model_versions.endpoint``) and their
hash; no file, and never the key: only the name of the environment variable that holds it
where embedding happens (the worker, ``pyembed serve``, the PostgreSQL server in local mode).
Registration asks the endpoint once, so a wrong URL, key, model name or dimension fails here
and not in the worker's queue.
"""

from __future__ import annotations

import logging

from psycopg.types.json import Jsonb

from pyembed import errors
from pyembed.db import database, queries
from pyembed.models import endpoint_client, endpoint_model, folders, registry

logger = logging.getLogger(__name__)

PROBE = "pyembed checks that this endpoint embeds"


def register_endpoint(
    db: database.Database,
    name: str,
    spec: endpoint_client.EndpointSpec,
    *,
    max_input_tokens: int = 8191,
    normalize: bool = True,
    query_prefix: str = "",
    document_prefix: str = "",
    description: str = "",
    check: bool = True,
) -> registry.Registered:
    """Register ``spec`` as the next version of model ``name``; with ``check``, embed one text
    through it first (the key must be set here, and the server in ``endpoint_origins``)."""
    endpoint_model.check_url(spec.base_url)
    if max_input_tokens < 16:
        raise errors.ConfigError(
            f"max_input_tokens {max_input_tokens} is too small",
            hint="give the endpoint's input limit in tokens (8191 for OpenAI's models, 512 for "
            "most Text Embeddings Inference models)",
        )
    with db.session() as conn:
        allowed = conn.execute(queries.get("endpoint_origins")).fetchone()
    endpoint_model.check_origin(spec, allowed[0] if allowed else None)
    if check:
        model = endpoint_model.EndpointModel(
            spec, max_input_tokens=max_input_tokens, normalize=normalize
        )
        model.encode([PROBE], input_type="document")  # EndpointError with the provider's words
    info = folders.ModelInfo(
        task="embedding",
        dimensions=spec.dimensions,
        max_seq_length=max_input_tokens,
        pooling="mean",  # the provider's business; the column needs a value
        normalize=normalize,
        query_prefix=query_prefix,
        document_prefix=document_prefix,
    )
    sha256 = endpoint_model.spec_sha256(spec)
    stored = endpoint_model.spec_to_json(spec, max_input_tokens)
    base = f"endpoint:{spec.model}"
    with db.session() as conn, conn.transaction():
        what = f"the endpoint {spec.model!r}"
        model_id = registry.upsert_family(conn, name, info, base, description, what)
        row = conn.execute(
            queries.get("endpoint_version_insert"),
            {
                "model_id": model_id,
                "endpoint": Jsonb(stored),
                "sha256": sha256,
                "produced_by": Jsonb({"how": "registered", "source": base}),
            },
        ).fetchone()
    assert row is not None
    version_id, version = row
    logger.info(
        "registered %s v%s (id %s): endpoint %s at %s",
        name,
        version,
        version_id,
        spec.model,
        endpoint_model.origin(spec.base_url),
    )
    return registry.Registered(version_id, name, version, sha256, 0, 0)


def allow_origins(
    db: database.Database, add: list[str], remove: list[str] | None = None
) -> list[str]:
    """Add (and remove) servers endpoint models may be at, in pyembed.settings
    'endpoint_origins' (admin only); the list after the change."""
    with db.session() as conn, conn.transaction():
        row = conn.execute(queries.get("endpoint_origins")).fetchone()
        current = (row[0] if row and row[0] else "").split()
        if not add and not remove:
            return current
        for url in add:
            endpoint_model.check_url(url)
            wanted = endpoint_model.origin(url)
            if not wanted.startswith(("http://", "https://")) or wanted.endswith("://"):
                raise errors.ConfigError(
                    f"{url!r} is not an http(s) URL", hint="give e.g. https://api.openai.com"
                )
            if wanted not in current:
                current.append(wanted)
        dropped = {endpoint_model.origin(url) for url in remove or []}
        current = [entry for entry in current if entry not in dropped]
        conn.execute(queries.get("endpoint_origins_set"), {"value": " ".join(current)})
    return current
