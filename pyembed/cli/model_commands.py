"""`pyembed models ...`: the registry and blue/green switches of collections."""

from __future__ import annotations

from pathlib import Path

import click

from pyembed.cli import options, output
from pyembed.db import database
from pyembed.models import conversion, registry, switches


@click.group(name="models")
def models_group() -> None:
    """Register, list, export and retire model versions (embedding models and rerankers);
    promote and roll back collections.

    VERSION is a version id or MODEL@N (MODEL alone: its newest ready version).
    """


def _version(db: database.Database, ref: str) -> int:
    with db.session() as conn:
        return registry.resolve_version(conn, ref)


@models_group.command(name="register")
@options.dsn_option
@click.argument("name")
@click.option(
    "--from",
    "source",
    required=True,
    help="A sentence-transformers folder (an embedding model or a CrossEncoder reranker), or a "
    "package that ships one.",
)
@click.option("--parent", default=None, help="The version this one was made from.")
@click.option("--kind", type=click.Choice(["pretrained", "fine_tuned", "adapted", "distilled"]))
@click.option("--query-prefix", default=None, help="Prepended to queries (e5/bge style).")
@click.option("--document-prefix", default=None, help="Prepended to documents.")
@click.option("--description", default="")
def register_command(
    dsn: str | None,
    name: str,
    source: str,
    parent: str | None,
    kind: str | None,
    query_prefix: str | None,
    document_prefix: str | None,
    description: str,
) -> None:
    """Store the model at --from as the next version of NAME (files in the database)."""
    db = database.Database.resolve(dsn)
    parent_id = _version(db, parent) if parent else None
    done = registry.register(
        db,
        name,
        source,
        parent_version_id=parent_id,
        kind=kind,
        query_prefix=query_prefix,
        document_prefix=document_prefix,
        description=description,
    )
    output.pairs(
        f"registered {done.model} v{done.version}",
        [
            ("version id", done.id),
            ("files", done.files),
            ("size", f"{done.size / 1e6:.1f} MB"),
            ("sha256", done.sha256),
        ],
    )


@models_group.command(name="list")
@options.dsn_option
@output.json_option
def list_command(dsn: str | None, as_json: bool) -> None:
    """Every model version, its lineage and the collections it serves."""
    with database.Database.resolve(dsn).session() as conn:
        rows = registry.list_versions(conn)
    if as_json:
        output.emit_json(rows)
        return
    output.table(
        "model versions",
        (
            "id",
            "model",
            "task",
            "v",
            "kind",
            "runtime",
            "status",
            "parent",
            "dims",
            "MB",
            "active in",
            "pending in",
        ),
        [
            (
                r["id"],
                r["model"],
                r["task"],
                r["version"],
                r["kind"],
                r["runtime"] + (" int8" if r["precision"] == "int8" else ""),
                r["status"],
                r["parent_version_id"],
                r["dimensions"] or "-",
                f"{(r['artifact_size'] or 0) / 1e6:.1f}",
                ", ".join(r["active_in"] or []),
                ", ".join(r["pending_in"] or []),
            )
            for r in rows
        ],
    )


@models_group.command(name="show")
@options.dsn_option
@click.argument("version")
@output.json_option
def show_command(dsn: str | None, version: str, as_json: bool) -> None:
    """One version: metadata, files and deployments."""
    db = database.Database.resolve(dsn)
    with db.session() as conn:
        info = registry.show(conn, registry.resolve_version(conn, version))
    if as_json:
        output.emit_json(info)
        return
    output.pairs(
        f"{info['model']} v{info['version']} (id {info['id']})",
        [
            (key, info[key])
            for key in (
                "task",
                "kind",
                "status",
                "runtime",
                "precision",
                "parent_version_id",
                "dimensions",
                "artifact_size",
                "sha256",
                "produced_by",
                "created_at",
            )
        ],
    )
    output.table(
        "files",
        ("path", "bytes", "parts"),
        [(f["path"], f["bytes"], f["parts"]) for f in info["files"]],
    )
    output.table(
        "deployments",
        ("id", "collection", "action", "from", "to", "reason", "when"),
        [
            (
                d["id"],
                d["collection"],
                d["action"],
                d["from_version_id"],
                d["to_version_id"],
                d["reason"],
                d["created_at"],
            )
            for d in info["deployments"]
        ],
    )


@models_group.command(name="export")
@options.dsn_option
@click.argument("version")
@click.option("--to", "target_dir", required=True, type=click.Path(path_type=Path))
def export_command(dsn: str | None, version: str, target_dir: Path) -> None:
    """Write a version's files (verified against its sha256) into a folder."""
    db = database.Database.resolve(dsn)
    click.echo(registry.export(db, _version(db, version), target_dir))


@models_group.command(name="convert")
@options.dsn_option
@click.argument("version")
@click.option(
    "--precision",
    type=click.Choice(list(conversion.MIN_COSINE)),
    default="int8",
    show_default=True,
    help="int8: weights quantized dynamically (faster on CPUs); fp32: the exported graph.",
)
def convert_command(dsn: str | None, version: str, precision: conversion.Precision) -> None:
    """Register an ONNX Runtime version of VERSION (next version of its model, VERSION its parent).

    Evaluate it and switch a collection to it like any version (`pyembed models promote`).
    """
    db = database.Database.resolve(dsn)
    done = conversion.convert(db, _version(db, version), precision)
    with db.session() as conn:
        agreement = registry.show(conn, done.id)["produced_by"]["probe_cosine"]
    output.pairs(
        f"{done.model} v{done.version}: onnxruntime, {precision}",
        [
            ("version id", done.id),
            ("size", f"{done.size / 1e6:.1f} MB"),
            ("cosine to the source", f"mean {agreement['mean']:.4f}, min {agreement['min']:.4f}"),
            ("sha256", done.sha256),
        ],
    )


@models_group.command(name="retire")
@options.dsn_option
@click.argument("version")
@click.option("--reason", default="")
def retire_command(dsn: str | None, version: str, reason: str) -> None:
    """Retire a version no collection uses and drop its stores."""
    db = database.Database.resolve(dsn)
    dropped = registry.retire(db, _version(db, version), reason)
    click.echo(f"retired; {dropped} store(s) dropped")


@models_group.command(name="promote")
@options.dsn_option
@click.argument("collection")
@click.argument("version")
@click.option(
    "--when-better-than-active",
    is_flag=True,
    help="Refuse unless its latest evaluation beats the active version's.",
)
@click.option(
    "--change-model",
    is_flag=True,
    help="Allow a version of another model (e.g. another dimension).",
)
@click.option("--no-embed", is_flag=True, help="Leave the backfill to running workers.")
@click.option("--timeout", type=float, default=None, help="Give up waiting after N seconds.")
@click.option("--reason", default="")
def promote_command(
    dsn: str | None,
    collection: str,
    version: str,
    when_better_than_active: bool,
    change_model: bool,
    no_embed: bool,
    timeout: float | None,
    reason: str,
) -> None:
    """Switch COLLECTION to VERSION blue/green: searches never stop."""
    db = database.Database.resolve(dsn)
    done = switches.promote(
        db,
        collection,
        _version(db, version),
        when_better_than_active=when_better_than_active,
        allow_other_model=change_model,
        embed=not no_embed,
        timeout=timeout,
        reason=reason,
    )
    items: list[tuple[str, object]] = [
        ("from version", done.from_version_id),
        ("to version", done.to_version_id),
        ("rows backfilled", done.backfilled),
        ("index", done.index or "none"),
        ("seconds", f"{done.seconds:.1f}"),
    ]
    if done.gate is not None:
        items.append((done.gate.metric, f"{done.gate.candidate:.4f} vs {done.gate.active:.4f}"))
    output.pairs(f"{collection} promoted", items)


@models_group.command(name="rollback")
@options.dsn_option
@click.argument("collection")
@click.option("--reason", default="")
def rollback_command(dsn: str | None, collection: str, reason: str) -> None:
    """Make COLLECTION's previous version active again, at once."""
    version = switches.rollback(database.Database.resolve(dsn), collection, reason)
    click.echo(f"{collection}: model version {version} is active again")


@models_group.command(name="abort")
@options.dsn_option
@click.argument("collection")
@click.option("--reason", default="")
def abort_command(dsn: str | None, collection: str, reason: str) -> None:
    """Give up COLLECTION's pending switch (its new store and backfill are dropped)."""
    switches.abort(database.Database.resolve(dsn), collection, reason)
    click.echo(f"{collection}: switch aborted")
