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
from pyembed.models import canaries, loading, registry
from pyembed.training import fitting, outcomes, run_rows, sources
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
            if opts.base_version_id is not None:
                base = opts.base_version_id
                family = loading.fetch_version(conn, base).model_name
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
                conn, run_id, collection, base, data, opts, folder, resume_run_id is not None
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
        run_rows.finish(conn, run_id, registered.id, peak, summary)
    try:
        base_metrics, new_metrics = outcomes.evaluate(
            db, collection, set_id, base, registered.id, gate_sets
        )
    except errors.PyembedError as exc:
        outcomes.record(db, run_id, "kept", f"not evaluated: {exc.message}")
        raise
    outcome, reason = outcomes.decide(
        db,
        collection,
        run_id,
        registered.id,
        promote_if_better,
        set_id,
        gate_sets,
        canary,
        other_model=opts.base_version_id is not None,
    )
    outcomes.record(db, run_id, outcome, reason)
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
    family = loading.fetch_version(conn, int(run["base_version_id"])).model_name
    return (
        run_id,
        int(run["base_version_id"]),
        family,
        data,
        train_options.TrainOptions(**params),
        run["eval_set_id"],
        folder,
    )
