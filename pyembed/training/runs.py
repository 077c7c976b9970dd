"""Fine-tuning a collection's model from its own data, recorded in the database.

A run: mine (or take) pairs, save the held-out queries as an eval set, train with
sentence-transformers' trainer (checkpoints, so a killed run resumes; every logged step's loss
and learning rate in pyembed.training_metrics), register the result as a new version whose
parent is the base, evaluate both on the held-out set, and promote through the gate if asked.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import resource
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from pyembed import errors
from pyembed.db import database, queries
from pyembed.evaluation import eval_sets, retrieval
from pyembed.models import registry, switches
from pyembed.training import fitting, sources
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


def work_root() -> Path:
    """Where runs keep checkpoints: ``PYEMBED_TRAINING_DIR`` or ~/.cache/pyembed/training."""
    configured = os.environ.get("PYEMBED_TRAINING_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "pyembed" / "training"


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
            base, family = collection_model(conn, collection)
            data = data or sources.from_feedback(conn, collection, seed=opts.seed)
            set_id = save_held_out(conn, collection, data)
            run_id, folder = start(
                conn, collection, base, opts.loss, dataclasses.asdict(opts), data, set_id
            )
        summary = data.summary
        started = time.monotonic()
        try:
            model_dir = fitting.fit(
                conn, run_id, base, data, opts, folder, resume_run_id is not None
            )
        except BaseException as exc:
            record_failure(
                conn,
                run_id,
                exc,
                hint="lower --batch-size, or use --loss cached_mnrl (a large effective batch in "
                f"small pieces); resume with --resume {run_id}",
                batch_size=opts.batch_size,
            )
            raise
        seconds = time.monotonic() - started
        peak = peak_memory()
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
        finish(conn, run_id, registered.id, peak)
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


def collection_model(conn: psycopg.Connection, collection: str) -> tuple[int, str]:
    """The collection's active version and its model's name."""
    row = conn.execute(queries.get("collection_model"), {"name": collection}).fetchone()
    if row is None:
        raise errors.CollectionError(f"collection {collection!r} does not exist")
    return int(row[0]), str(row[1])


def save_held_out(
    conn: psycopg.Connection, collection: str, data: sources.TrainingData
) -> int | None:
    """The held-out queries as an eval set (None when there are none)."""
    if not data.held_out:
        return None
    name = f"held-out {time.strftime('%Y-%m-%d %H:%M:%S')}"
    return eval_sets.create_set(
        conn,
        collection,
        name,
        "held_out",
        data.held_out,
        description="queries held out of a training run, with their feedback as judgments",
        details={"queries": len(data.held_out)},
    )


def start(
    conn: psycopg.Connection,
    collection: str,
    base: int,
    loss: str,
    params: dict[str, Any],
    data: sources.TrainingData,
    set_id: int | None,
) -> tuple[int, Path]:
    """The run's row and its folder, which keeps the run's exact pairs."""
    row = conn.execute(
        queries.get("training_run_start"),
        {
            "collection": collection,
            "base": base,
            "loss": loss,
            "summary": Jsonb(data.summary),
            "params": Jsonb(params),
            "eval_set_id": set_id,
            "checkpoint_dir": None,
        },
    ).fetchone()
    assert row is not None
    run_id = int(row[0])
    folder = work_root() / f"run-{run_id}"
    folder.mkdir(parents=True, exist_ok=True)
    # The run's exact data, so a resumed run trains on the same pairs.
    with (folder / "pairs.jsonl").open("w") as out:
        for pair in data.pairs:
            out.write(json.dumps(dataclasses.asdict(pair)) + "\n")
    (folder / "summary.json").write_text(json.dumps(data.summary))
    conn.execute(queries.get("training_run_dir"), {"id": run_id, "dir": str(folder)})
    return run_id, folder


def _resume(
    conn: psycopg.Connection, run_id: int
) -> tuple[int, int, str, sources.TrainingData, train_options.TrainOptions, int | None, Path]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(queries.get("training_run_get"), {"id": run_id})
        run = cur.fetchone()
    if run is None:
        raise errors.PyembedError(f"training run {run_id} does not exist")
    if run["data_summary"].get("task") == "reranker":
        raise errors.PyembedError(
            f"training run {run_id} trained a reranker, and reranker runs do not resume",
            hint="start a new one: pyembed train-reranker " + run["collection"],
        )
    if run["status"] == "done":
        raise errors.PyembedError(
            f"training run {run_id} is done (model version {run['result_version_id']})"
        )
    folder = Path(run["checkpoint_dir"] or "")
    if not (folder / "pairs.jsonl").is_file():
        raise errors.PyembedError(
            f"training run {run_id} left no data in {folder}", hint="start a new run instead"
        )
    lines = (folder / "pairs.jsonl").read_text().splitlines()
    pairs = [
        sources.Pair(**{**row, "negatives": tuple(row["negatives"])})
        for row in map(json.loads, lines)
    ]
    params = dict(run["params"])
    if params.get("matryoshka_dims") is not None:
        params["matryoshka_dims"] = tuple(params["matryoshka_dims"])
    _, family = collection_model(conn, run["collection"])
    data = sources.TrainingData(pairs, [], dict(run["data_summary"]))
    conn.execute(
        queries.get("training_run_status"), {"id": run_id, "status": "running", "error": None}
    )
    return (
        run_id,
        int(run["base_version_id"]),
        family,
        data,
        train_options.TrainOptions(**params),
        run["eval_set_id"],
        folder,
    )


def record_failure(
    conn: psycopg.Connection, run_id: int, exc: BaseException, *, hint: str, batch_size: int
) -> None:
    """Mark the run failed (interrupted, for Ctrl-C); out of memory is an error that says what
    to lower."""
    status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
    conn.execute(
        queries.get("training_run_status"),
        {"id": run_id, "status": status, "error": repr(exc)[:4000]},
    )
    if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
        raise errors.PyembedError(
            f"training run {run_id} ran out of memory at batch size {batch_size}", hint=hint
        ) from exc


def finish(conn: psycopg.Connection, run_id: int, version_id: int, peak: int) -> None:
    """The run is done: its result version and peak memory."""
    conn.execute(
        queries.get("training_run_finish"),
        {"id": run_id, "status": "done", "version_id": version_id, "error": None, "peak": peak},
    )


def peak_memory() -> int:
    """The process's peak resident memory, in bytes."""
    # ru_maxrss is in KiB on Linux.
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


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
    results = {}
    for version in (base, new):
        done = retrieval.evaluate(
            db, collection, version_id=version, eval_set=name[0], modes=modes, ks=(1, 10)
        )
        results[version] = done[0].metrics
    return results[base], results[new]
