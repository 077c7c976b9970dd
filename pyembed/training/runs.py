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
from pathlib import Path
from typing import Any

import psycopg

from pyembed import errors
from pyembed.db import database, queries
from pyembed.evaluation import comparisons, retrieval
from pyembed.models import registry, switches
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


def train(
    db: database.Database,
    collection: str,
    data: sources.TrainingData | None = None,
    *,
    options: train_options.TrainOptions | None = None,
    promote_if_better: bool = False,
    resume_run_id: int | None = None,
) -> TrainResult:
    """Train a new version of the collection's model (from its feedback unless ``data`` says)."""
    opts = options or train_options.TrainOptions()
    with db.session() as conn:
        if resume_run_id is not None:
            run_id, base, family, data, opts, set_id, folder = _resume(conn, resume_run_id)
        else:
            base, family = run_rows.collection_model(conn, collection)
            data = data or sources.from_feedback(conn, collection, seed=opts.seed)
            set_id = run_rows.save_held_out(conn, collection, data)
            run_id, folder = run_rows.start(
                conn, collection, base, opts.loss, dataclasses.asdict(opts), data, set_id
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
    base_metrics, new_metrics = _evaluate(db, collection, set_id, base, registered.id)
    promoted = False
    if promote_if_better and set_id is not None:
        try:
            switches.promote(
                db,
                collection,
                registered.id,
                when_better_than_active=True,
                reason=f"training run {run_id}",
            )
            promoted = True
        except errors.PyembedError as exc:
            logger.info("not promoted: %s", exc.message)
    return TrainResult(
        run_id,
        base,
        registered.id,
        set_id,
        base_metrics,
        new_metrics,
        promoted,
        seconds,
        peak,
        summary,
    )


def _resume(
    conn: psycopg.Connection, run_id: int
) -> tuple[int, int, str, sources.TrainingData, train_options.TrainOptions, int | None, Path]:
    run, data, folder = run_rows.load_run(conn, run_id, "embedding")
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
    db: database.Database, collection: str, set_id: int | None, base: int, new: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Both versions on the held-out set, the model alone and, when the collection's gate
    compares reranked pipelines, reranked too (the gate reads these rows)."""
    if set_id is None:
        return {}, {}
    with db.session() as conn:
        name = conn.execute(queries.get("eval_set_name"), {"id": set_id}).fetchone()
        mode = switches.gate_mode(conn, collection)
    assert name is not None
    modes = ("exact", "reranked") if mode == "reranked" else ("exact",)
    done = {
        version: retrieval.evaluate(
            db, collection, version_id=version, eval_set=name[0], modes=modes, ks=(1, 10)
        )
        for version in (base, new)
    }
    results = {version: runs[0].metrics for version, runs in done.items()}
    # The paired test of the difference, per mode (eval_vs_parent shows it; the gate redoes it).
    with db.session() as conn:
        metric, k = switches.gate_metric(conn, collection)
        for ours, theirs in zip(done[new], done[base], strict=True):
            comparisons.compare(conn, ours.run_id, theirs.run_id, metric, k)
    return results[base], results[new]
