"""`pyembed canary ...` (a candidate version on live traffic) and `pyembed online-metrics`."""

from __future__ import annotations

import click

from pyembed.cli import options, output
from pyembed.db import database
from pyembed.evaluation import online
from pyembed.models import canaries

_COLUMNS = ("collection", "canary", "candidate", "baseline", "mode", "score", "verdict", "ended")


def _show(found: list[canaries.Canary], as_json: bool) -> None:
    if as_json:
        output.emit_json(found)
        return
    output.table(
        "canaries",
        _COLUMNS,
        [
            (
                k.collection,
                k.canary_id,
                k.candidate_version_id,
                k.baseline_version_id,
                k.mode,
                k.score(),
                k.verdict,
                f"{k.decision}: {k.decision_reason}" if k.decision else "running",
            )
            for k in found
        ],
    )


@click.group(name="canary")
def canary_group() -> None:
    """Serve a candidate model version beside the active one and let clicks decide."""


@canary_group.command(name="start")
@options.dsn_option
@click.argument("collection")
@click.argument("version_id", type=int)
@click.option("--mode", type=click.Choice(canaries.MODES), default="interleave", show_default=True)
@click.option(
    "--share",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.5,
    show_default=True,
    help="split: the share of searches the candidate serves.",
)
@click.option("--min-searches", type=click.IntRange(1), default=200, show_default=True)
@click.option("--max-searches", type=click.IntRange(1), default=2000, show_default=True)
@click.option(
    "--require",
    type=click.Choice(canaries.REQUIREMENTS),
    default="better",
    show_default=True,
    help="better: users must prefer it by more than noise; not_worse: they must not prefer the "
    "active version (for a candidate the offline gate passed).",
)
@click.option(
    "--when-better-than-active",
    is_flag=True,
    help="Only when the offline gate passes first (as `pyembed models promote` has it).",
)
@click.option("--eval-set", "eval_sets", multiple=True, help="Gate on this eval set.")
@click.option("--reason", default="", help="Recorded with the canary.")
def start_command(
    dsn: str | None,
    collection: str,
    version_id: int,
    mode: str,
    share: float,
    min_searches: int,
    max_searches: int,
    require: str,
    when_better_than_active: bool,
    eval_sets: tuple[str, ...],
    reason: str,
) -> None:
    """Embed and index VERSION_ID beside the active version, then open its canary."""
    db = database.Database.resolve(dsn)
    settings = canaries.Settings(mode, share, min_searches, max_searches, require=require)
    canary_id, ready = canaries.start(
        db,
        collection,
        version_id,
        settings,
        when_better_than_active=when_better_than_active,
        gate_sets=eval_sets,
        reason=reason,
    )
    output.console.print(
        f"{collection}: canary {canary_id} serves model version {version_id} beside the active "
        f"one ({mode}; {ready.backfilled} rows embedded in {ready.seconds:.1f} s). Searches "
        f"that pass candidate_query take part; pyembed.canary_version('{collection}') names "
        "the version to embed queries with.",
        highlight=False,
    )


@canary_group.command(name="status")
@options.dsn_option
@click.argument("collection", required=False)
@click.option("--open", "open_only", is_flag=True, help="Only running canaries.")
@output.json_option
def status_command(dsn: str | None, collection: str | None, open_only: bool, as_json: bool) -> None:
    """Canaries, newest first, with their interleaving score and verdict."""
    db = database.Database.resolve(dsn)
    with db.session() as conn:
        _show(canaries.status(conn, collection, open_only=open_only), as_json)


@canary_group.command(name="decide")
@options.dsn_option
@click.argument("collection")
def decide_command(dsn: str | None, collection: str) -> None:
    """Act on the running canary's verdict, if it has one (the learner does this by itself)."""
    db = database.Database.resolve(dsn)
    decided = canaries.decide(db, collection)
    if decided is None:
        output.console.print(f"{collection}: no canary has a verdict yet")
        return
    output.console.print(
        f"{collection}: canary {decided.canary_id} {decided.decision}: {decided.score()}",
        highlight=False,
    )


@canary_group.command(name="end")
@options.dsn_option
@click.argument("collection")
@click.option(
    "--promote",
    "decision",
    flag_value="promoted",
    help="Make the candidate active (the switch finishes).",
)
@click.option("--reject", "decision", flag_value="rejected", help="Drop the candidate.")
@click.option("--abort", "decision", flag_value="aborted", help="Stop without a verdict.")
@click.option("--reason", default="", help="Recorded with the decision.")
def end_command(dsn: str | None, collection: str, decision: str | None, reason: str) -> None:
    """End COLLECTION's canary by hand."""
    if decision is None:
        raise click.UsageError("say how it ends: --promote, --reject or --abort")
    db = database.Database.resolve(dsn)
    canary_id = canaries.end(db, collection, decision, reason or "by hand")
    output.console.print(f"{collection}: canary {canary_id} {decision}")


@click.command(name="online-metrics")
@options.dsn_option
@click.argument("collection", required=False)
@output.json_option
def online_metrics_command(dsn: str | None, collection: str | None, as_json: bool) -> None:
    """Per model version, from the searches it served alone: clicks per search, MRR, no-click."""
    db = database.Database.resolve(dsn)
    with db.session() as conn:
        found = online.metrics(conn, collection)
    if as_json:
        output.emit_json(found)
        return
    output.table(
        "online metrics",
        ("collection", "version", "searches", "clicks/search", "MRR", "no click"),
        [
            (
                m.collection,
                m.model_version_id,
                m.searches,
                f"{m.clicks_per_search:.3f}",
                f"{m.mrr:.4f}",
                f"{m.no_click_share:.1%}",
            )
            for m in found
        ],
    )
