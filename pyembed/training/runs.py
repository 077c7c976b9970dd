"""Fine-tuning a collection's model from its own data, recorded in the database.

A run: mine (or take) pairs, save the held-out queries as an eval set, train with
sentence-transformers' trainer (checkpoints, so a killed run resumes; every logged step's loss
and learning rate in pyembed.training_metrics), register the result as a new version whose
parent is the base, evaluate both on the held-out set, and promote through the gate if asked.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg

from pyembed import errors
from pyembed.db import database, queries
from pyembed.evaluation import comparisons, retrieval
from pyembed.models import canaries, registry, switches
from pyembed.training import fitting, run_rows, sources
from pyembed.training import options as train_options

logger = logging.getLogger(__name__)

_KINDS = {"tsdae": "adapted", "distill": "distilled"}


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What a training run produced."""

    run_id: int
    base_version_id: int
    version_id: int
    eval_set_id: int | None
    base_metrics: dict[str, float]
    new_metrics: dict[str, float]
    promoted: bool
    train_seconds: float
    peak_memory_bytes: int
    summary: dict[str, Any]
    outcome: str = "kept"
    outcome_reason: str = ""


def train(
    db: database.Database,
    collection: str,
    data: sources.TrainingData | None = None,
    *,
    options: train_options.TrainOptions | None = None,
    promote_if_better: bool = False,
    resume_run_id: int | None = None,
    triggered_by: str = "manual",
    gate_sets: Sequence[str] = (),
    take_lock: bool = True,
    canary: canaries.Settings | None = None,
) -> TrainResult:
    """Train a new version of the collection's model (from its feedback unless ``data`` says).

    One run per collection at a time (its training lock, TrainingBusy otherwise; ``take_lock``
    False when the caller holds it). Both versions are evaluated on the held-out queries and on
    ``gate_sets``; the gate decides on those sets when given. With ``canary`` a version that
    passes the gate goes on live traffic as a canary instead of being promoted at once. The run
    row records what started it and what became of its result."""
    args = (
        db,
        collection,
        data,
        options or train_options.TrainOptions(),
        promote_if_better,
        resume_run_id,
        triggered_by,
        gate_sets,
        canary,
    )
    if not take_lock:
        return _train(*args)
    with run_rows.training_lock(db, collection):
        return _train(*args)


def _train(
    db: database.Database,
    collection: str,
    data: sources.TrainingData | None,
    opts: train_options.TrainOptions,
    promote_if_better: bool,
    resume_run_id: int | None,
    triggered_by: str,
    gate_sets: Sequence[str],
    canary: canaries.Settings | None,
) -> TrainResult:
    with db.session() as conn:
        if resume_run_id is not None:
            run_id, base, family, data, opts, set_id, folder = _resume(
                conn, resume_run_id, collection
            )
        else:
            base, family = run_rows.collection_model(conn, collection)
            data = data or sources.from_feedback(conn, collection, seed=opts.seed)
            set_id = run_rows.save_held_out(conn, collection, data)
            run_id, folder = run_rows.start(
                conn, collection, base, opts.loss, dataclasses.asdict(opts), data, set_id
            )
            conn.execute(
                queries.get("training_run_trigger"), {"id": run_id, "trigger": triggered_by}
            )
        summary = data.summary
        started = time.monotonic()
        try:
            model_dir = fitting.fit(
                conn, run_id, base, data, opts, folder, resume_run_id is not None
            )
        except BaseException as exc:
            run_rows.record_failure(
                conn,
                run_id,
                exc,
                hint="lower --batch-size, or use --loss cached_mnrl (a large effective batch in "
                f"small pieces); resume with --resume {run_id}",
                batch_size=opts.batch_size,
            )
            raise
        seconds = time.monotonic() - started
        peak = run_rows.peak_memory()
        registered = registry.register(
            db,
            family,
            str(model_dir),
            parent_version_id=base,
            kind=_KINDS.get(opts.loss, "fine_tuned"),
            produced_by={
                "how": "trained",
                "training_run": run_id,
                "loss": opts.loss,
                "pairs": summary.get("pairs"),
                "source": summary.get("source"),
            },
        )
        run_rows.finish(conn, run_id, registered.id, peak)
    try:
        base_metrics, new_metrics = _evaluate(
            db, collection, set_id, base, registered.id, gate_sets
        )
    except errors.PyembedError as exc:
        _record_outcome(db, run_id, "kept", f"not evaluated: {exc.message}")
        raise
    outcome, reason = _decide(
        db, collection, run_id, registered.id, promote_if_better, set_id, gate_sets, canary
    )
    _record_outcome(db, run_id, outcome, reason)
    return TrainResult(
        run_id,
        base,
        registered.id,
        set_id,
        base_metrics,
        new_metrics,
        outcome == "promoted",
        seconds,
        peak,
        summary,
        outcome,
        reason,
    )


def _record_outcome(db: database.Database, run_id: int, outcome: str, reason: str) -> None:
    with db.session() as conn:
        params = {"id": run_id, "outcome": outcome, "reason": reason}
        conn.execute(queries.get("training_run_outcome"), params)


def _decide(
    db: database.Database,
    collection: str,
    run_id: int,
    version_id: int,
    promote_if_better: bool,
    set_id: int | None,
    gate_sets: Sequence[str],
    canary: canaries.Settings | None,
) -> tuple[str, str]:
    """Offer the new version to the gate when asked, then promote it or open its canary:
    (outcome, reason) for the run's row."""
    if not promote_if_better:
        return "kept", "not offered for promotion"
    if set_id is None and not gate_sets:
        return "kept", "no held-out queries or eval sets to gate on"
    reason = f"training run {run_id}"
    try:
        if canary is not None:
            canary_id, ready = canaries.start(
                db,
                collection,
                version_id,
                canary,
                when_better_than_active=True,
                gate_sets=gate_sets,
                reason=reason,
            )
            checked = ready.gate
        else:
            checked = switches.promote(
                db,
                collection,
                version_id,
                when_better_than_active=True,
                reason=reason,
                gate_sets=gate_sets,
            ).gate
    except errors.PyembedError as exc:
        logger.info("not promoted: %s", exc.message)
        return "refused", exc.message
    assert checked is not None
    offline = (
        f"{checked.metric} {checked.candidate:.4f} vs {checked.active:.4f} on eval set "
        f"{checked.eval_set_id}, p = {switches.p_text(checked)}"
    )
    if canary is not None:
        return "canary", f"{offline}; canary {canary_id} ({canary.mode}) on live traffic"
    return "promoted", offline


def _resume(
    conn: psycopg.Connection, run_id: int, collection: str
) -> tuple[int, int, str, sources.TrainingData, train_options.TrainOptions, int | None, Path]:
    run, data, folder = run_rows.load_run(conn, run_id, "embedding")
    if run["collection"] != collection:
        raise errors.PyembedError(
            f"training run {run_id} trained collection {run['collection']!r}, not {collection!r}",
            hint=f"resume it with pyembed train {run['collection']} --resume {run_id}",
        )
    params = dict(run["params"])
    if params.get("matryoshka_dims") is not None:
        params["matryoshka_dims"] = tuple(params["matryoshka_dims"])
    _, family = run_rows.collection_model(conn, run["collection"])
    return (
        run_id,
        int(run["base_version_id"]),
        family,
        data,
        train_options.TrainOptions(**params),
        run["eval_set_id"],
        folder,
    )


def _evaluate(
    db: database.Database,
    collection: str,
    set_id: int | None,
    base: int,
    new: int,
    gate_sets: Sequence[str],
) -> tuple[dict[str, float], dict[str, float]]:
    """Both versions on the held-out set and on ``gate_sets``, the model alone and, when the
    collection's gate compares reranked pipelines, reranked too (the gate reads these rows).
    The metrics returned are the held-out set's (else the first gate set's)."""
    with db.session() as conn:
        mode = switches.gate_mode(conn, collection)
        metric, k = switches.gate_metric(conn, collection)
        held_out = conn.execute(queries.get("eval_set_name"), {"id": set_id}).fetchone()
    names = [str(held_out[0])] if held_out else []
    names += [name for name in gate_sets if name not in names]
    modes = ("exact", "reranked") if mode == "reranked" else ("exact",)
    results: dict[int, dict[str, float]] = {base: {}, new: {}}
    for position, name in enumerate(names):
        done = {
            version: retrieval.evaluate(
                db, collection, version_id=version, eval_set=name, modes=modes, ks=(1, 10)
            )
            for version in (base, new)
        }
        if position == 0:
            results = {version: runs[0].metrics for version, runs in done.items()}
        # The paired test of the difference, per mode (eval_vs_parent shows it; the gate redoes
        # it against whatever is active then).
        with db.session() as conn:
            for ours, theirs in zip(done[new], done[base], strict=True):
                comparisons.compare(conn, ours.run_id, theirs.run_id, metric, k)
    return results[base], results[new]
