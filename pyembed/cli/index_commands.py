"""`pyembed index ...`: ANN indexes for DBAs."""

from __future__ import annotations

import logging
from typing import Any

import click

from pyembed.cli import options, output
from pyembed.db import database
from pyembed.search import indexes, recall, stores

logger = logging.getLogger(__name__)


@click.group(name="index")
def index_group() -> None:
    """Build, rebuild, drop, list and tune a collection's ANN index (always CONCURRENTLY)."""


def _build(dsn: str | None, collection: str, **params: Any) -> None:
    db = database.Database.resolve(dsn)
    with output.index_build_progress() as show:
        result = indexes.create(db, collection, progress=show, **params)
    output.pairs(
        f"index {result.index}",
        [
            ("method", result.method),
            ("parameters", result.params),
            ("rows", result.rows),
            ("seconds", f"{result.seconds:.1f}"),
            ("size", f"{result.size_bytes / 2**20:.1f} MiB"),
            ("recall@10", "n/a" if result.recall_at_10 is None else f"{result.recall_at_10:.3f}"),
            ("recall queries", result.recall_queries),
        ],
    )


@index_group.command(name="create")
@options.dsn_option
@click.argument("collection")
@click.option(
    "--method",
    type=click.Choice(["hnsw", "ivfflat"]),
    default=options.default(indexes.create, "method"),
    show_default=True,
)
@click.option(
    "--m",
    default=options.default(indexes.create, "m"),
    show_default=True,
    type=click.IntRange(2, 100),
)
@click.option(
    "--ef-construction",
    default=options.default(indexes.create, "ef_construction"),
    show_default=True,
    type=click.IntRange(4, 1000),
)
@click.option(
    "--lists", default=None, type=click.IntRange(1), help="IVFFlat lists (default from rows)."
)
@click.option(
    "--maintenance-work-mem",
    default=options.default(indexes.create, "maintenance_work_mem"),
    show_default=True,
)
def create_command(
    dsn: str | None,
    collection: str,
    method: str,
    m: int,
    ef_construction: int,
    lists: int | None,
    maintenance_work_mem: str,
) -> None:
    """Build COLLECTION's index concurrently, replacing an older one once the new one is ready."""
    _build(
        dsn,
        collection,
        method=method,
        m=m,
        ef_construction=ef_construction,
        lists=lists,
        maintenance_work_mem=maintenance_work_mem,
    )


@index_group.command(name="rebuild")
@options.dsn_option
@click.argument("collection")
@click.option(
    "--maintenance-work-mem",
    default=options.default(indexes.create, "maintenance_work_mem"),
    show_default=True,
)
def rebuild_command(dsn: str | None, collection: str, maintenance_work_mem: str) -> None:
    """Rebuild COLLECTION's index with its recorded parameters (searches keep the old one)."""
    db = database.Database.resolve(dsn)
    with db.session() as conn:
        store = stores.store_of(conn, collection)
        current = stores.list_indexes(conn, store.store)
    if not current:
        raise click.UsageError(f"{collection} has no index; use `pyembed index create`")
    method, params = current[0]["method"], dict(current[0]["params"] or {})
    _build(dsn, collection, method=method, maintenance_work_mem=maintenance_work_mem, **params)


@index_group.command(name="drop")
@options.dsn_option
@click.argument("collection")
def drop_command(dsn: str | None, collection: str) -> None:
    """Drop COLLECTION's ANN index concurrently (searches fall back to an exact scan)."""
    dropped = indexes.drop(database.Database.resolve(dsn), collection)
    click.echo(f"dropped {', '.join(dropped) if dropped else 'nothing'}")


@index_group.command(name="list")
@options.dsn_option
@click.argument("collection", required=False)
@output.json_option
def list_command(dsn: str | None, collection: str | None, as_json: bool) -> None:
    """List ANN indexes of all collections (or one) with size and measured recall."""
    with database.Database.resolve(dsn).session() as conn:
        store = stores.store_of(conn, collection).store if collection else None
        rows = stores.list_indexes(conn, store)
    if as_json:
        output.emit_json(rows)
        return
    output.table(
        "ANN indexes",
        ("index", "method", "store", "size MiB", "valid", "recall@10", "build s", "parameters"),
        [
            (
                r["index_name"],
                r["method"],
                r["store"],
                f"{r['size_bytes'] / 2**20:.1f}",
                r["valid"],
                None if r["recall_at_10"] is None else f"{r['recall_at_10']:.3f}",
                None if r["duration_ms"] is None else f"{r['duration_ms'] / 1000:.1f}",
                r["params"],
            )
            for r in rows
        ],
    )


@index_group.command(name="tune")
@options.dsn_option
@click.argument("collection")
@click.option(
    "--queries",
    "queries_n",
    default=options.default(recall.tune, "queries_n"),
    show_default=True,
    type=click.IntRange(1),
)
@click.option(
    "--target-recall",
    type=click.FloatRange(0, 1),
    default=None,
    help="Make the cheapest setting reaching this recall@10 the collection's default.",
)
@output.json_option
def tune_command(
    dsn: str | None, collection: str, queries_n: int, target_recall: float | None, as_json: bool
) -> None:
    """Sweep ef_search/probes: recall@10 and latency per setting (stored in index_builds)."""
    curve = recall.tune(
        database.Database.resolve(dsn), collection, queries_n=queries_n, target_recall=target_recall
    )
    if as_json:
        output.emit_json(curve)
        return
    setting = next(iter(curve[0]))
    output.table(
        f"recall vs latency ({queries_n} queries)",
        (setting, "recall@10", "p50 ms", "queries/s"),
        [
            (
                point[setting],
                f"{point['recall_at_10']:.3f}",
                f"{point['p50_ms']:.2f}",
                f"{point['qps']:.0f}",
            )
            for point in curve
        ],
    )
    if target_recall is not None:
        chosen = recall.choose(curve, target_recall)
        assert chosen is not None  # tune raised otherwise
        click.echo(f"{collection}: searches use {setting} {chosen[setting]} unless told otherwise")
