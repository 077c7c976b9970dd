"""`pyembed learn` (run due learning policies, once or watching) and `pyembed learning-policy`."""

from __future__ import annotations

import json
import signal
import threading
from types import FrameType

import click

from pyembed import errors
from pyembed.cli import options, output
from pyembed.db import database
from pyembed.training import learner, policies

_COLUMNS = ("collection", "enabled", "new feedback", "min", "every", "after", "due", "last run")


def _show(found: list[policies.Policy], as_json: bool) -> None:
    if as_json:
        output.emit_json(found)
        return
    output.table(
        "learning policies",
        _COLUMNS,
        [
            (
                p.collection,
                p.enabled,
                p.new_feedback,
                p.min_feedback,
                p.min_interval,
                p.after_training,
                p.due,
                f"{p.last_run_id} {p.last_run_status}, {p.last_outcome}: {p.last_outcome_reason}"
                if p.last_run_id
                else "",
            )
            for p in found
        ],
    )


def _report(outcome: learner.Outcome) -> None:
    if outcome.result is not None:
        r = outcome.result
        output.console.print(
            f"{outcome.collection}: training run {r.run_id} -> model version {r.version_id}, "
            f"{r.outcome} ({r.outcome_reason})",
            highlight=False,
        )
    elif outcome.canary is not None:
        k = outcome.canary
        output.console.print(
            f"{outcome.collection}: canary {k.canary_id} of model version "
            f"{k.candidate_version_id} {k.decision}: {k.score()}",
            highlight=False,
        )
    elif outcome.check is not None:
        output.console.print(
            f"{outcome.collection}: model version {outcome.check.version_id} "
            f"{outcome.check.describe()}",
            highlight=False,
        )
    else:
        output.console.print(
            f"{outcome.collection}: {outcome.error or outcome.skipped}", highlight=False
        )


@click.command(name="learn")
@options.dsn_option
@click.option("--collection", "collections", multiple=True, help="Only these collections.")
@click.option("--watch", is_flag=True, help="Keep running due policies until stopped.")
@click.option(
    "--poll",
    "poll_seconds",
    envvar="PYEMBED_LEARN_POLL_SECONDS",
    default=30.0,
    show_default=True,
    type=click.FloatRange(0.1),
    help="Seconds between looks at the policies with --watch [env PYEMBED_LEARN_POLL_SECONDS].",
)
@click.option("--status", "show_status", is_flag=True, help="Show the policies; run nothing.")
@output.json_option
def learn_command(
    dsn: str | None,
    collections: tuple[str, ...],
    watch: bool,
    poll_seconds: float,
    show_status: bool,
    as_json: bool,
) -> None:
    """Train the collections whose learning policy is due (pyembed.learning_status)."""
    db = database.Database.resolve(dsn)
    running = learner.Learner(db, collections)
    if show_status:
        with db.session() as conn:
            _show(policies.status(conn, collections), as_json)
        return
    if not watch:
        running.check_role()
        done = running.run_due()
        for outcome in done:
            _report(outcome)
        if not done:
            output.console.print("no learning policy is due")
        return
    stop = threading.Event()

    def graceful(signum: int, frame: FrameType | None) -> None:
        output.err_console.print("stopping after the current run (signal again to abort)")
        signal.signal(signal.SIGINT, signal.default_int_handler)
        stop.set()

    signal.signal(signal.SIGTERM, graceful)
    signal.signal(signal.SIGINT, graceful)
    running.watch(poll_seconds=poll_seconds, stop=stop, on_outcome=_report)


@click.command(name="learning-policy")
@options.dsn_option
@click.argument("collection")
@click.option(
    "--min-feedback", type=click.IntRange(1), help="New feedback signals that make a run due."
)
@click.option("--every", "min_interval", help="At most one run per this interval, e.g. '1 hour'.")
@click.option(
    "--options",
    "train_options",
    help='Training options as JSON, e.g. \'{"epochs": 1, "negatives": true}\'.',
)
@click.option("--eval-set", "eval_sets", multiple=True, help="Gate on this eval set (repeatable).")
@click.option(
    "--after",
    "after_training",
    type=click.Choice(["promote", "canary", "nothing"]),
    help="Promote through the gate, or through the gate onto live traffic as a canary first.",
)
@click.option("--canary-mode", type=click.Choice(["interleave", "split"]))
@click.option(
    "--canary-min-searches", type=click.IntRange(1), help="Judged searches before a verdict."
)
@click.option(
    "--canary-max-searches",
    type=click.IntRange(1),
    help="Judged searches after which a canary with no verdict ends inconclusive.",
)
@click.option(
    "--canary-require",
    type=click.Choice(["better", "not_worse"]),
    help="not_worse (default): promote unless users prefer the active version; better: only "
    "when they prefer the candidate.",
)
@click.option(
    "--watch-searches",
    type=click.IntRange(0),
    help="Roll a promotion back when its next N searches rank clicks worse (0: off).",
)
@click.option("--enable/--disable", "enabled", default=None)
@click.option("--drop", is_flag=True, help="Remove the policy (its runs stay recorded).")
@output.json_option
def learning_policy_command(
    dsn: str | None,
    collection: str,
    min_feedback: int | None,
    min_interval: str | None,
    train_options: str | None,
    eval_sets: tuple[str, ...],
    after_training: str | None,
    canary_mode: str | None,
    canary_min_searches: int | None,
    canary_max_searches: int | None,
    watch_searches: int | None,
    canary_require: str | None,
    enabled: bool | None,
    drop: bool,
    as_json: bool,
) -> None:
    """Set, change or drop COLLECTION's learning policy (unset options stay as they are)."""
    db = database.Database.resolve(dsn)
    with db.session() as conn:
        if drop:
            found = policies.drop_policy(conn, collection)
            output.console.print(
                f"{collection}: policy dropped" if found else f"{collection} had no policy"
            )
            return
        try:
            chosen = None if train_options is None else json.loads(train_options)
        except json.JSONDecodeError as exc:
            raise errors.ConfigError(
                f"--options is not JSON: {exc}", hint="e.g. --options '{\"epochs\": 1}'"
            ) from exc
        policy = policies.set_policy(
            conn,
            collection,
            min_feedback=min_feedback,
            min_interval=min_interval,
            train_options=chosen,
            eval_sets=list(eval_sets) or None,
            after_training=after_training,
            enabled=enabled,
            canary_mode=canary_mode,
            canary_min_searches=canary_min_searches,
            canary_max_searches=canary_max_searches,
            watch_searches=watch_searches,
            canary_require=canary_require,
        )
    _show([policy], as_json)
