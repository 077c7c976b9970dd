"""The rows of training runs (pyembed.training_runs) and their folders: start, resume, finish,
failure, and the held-out eval set a run saves. Shared by embedding and reranker training."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import logging
import os
import resource
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from pyembed import errors
from pyembed.db import database, queries
from pyembed.evaluation import eval_sets
from pyembed.training import sources

logger = logging.getLogger(__name__)

# First key of the advisory lock that lets one embedding training run per collection go at a
# time (the second is the collection id); auto_index uses another.
TRAINING_LOCK_KEY = 70_211_499


@contextlib.contextmanager
def training_lock(db: database.Database, collection: str) -> Iterator[None]:
    """Hold the collection's training lock for the block, or raise TrainingBusy. Runs still
    marked running once the lock is ours lost their process: they are marked interrupted."""
    params = {"key": TRAINING_LOCK_KEY, "name": collection}
    with db.connect(autocommit=True, vector=False) as conn:
        with errors.translated():
            got = conn.execute(queries.get("training_lock"), params).fetchone()
        if got is None:
            raise errors.CollectionError(f"collection {collection!r} does not exist")
        if not got[0]:
            raise errors.TrainingBusy(
                f"another process is training a model of collection {collection!r}",
                hint="wait for it to finish: SELECT id, started_at FROM pyembed.training_runs "
                "WHERE status = 'running'",
            )
        try:
            with errors.translated():
                stale = conn.execute(queries.get("training_runs_left_running"), params).fetchall()
            for (run_id,) in stale:
                logger.warning(
                    "training run %s of %s lost its process; marked interrupted", run_id, collection
                )
            yield
        finally:
            conn.execute(queries.get("training_unlock"), params)


def work_root() -> Path:
    """Where runs keep checkpoints: ``PYEMBED_TRAINING_DIR`` or ~/.cache/pyembed/training."""
    configured = os.environ.get("PYEMBED_TRAINING_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "pyembed" / "training"


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
    # Milliseconds: an embedder's and a reranker's run of one collection may start together.
    name = f"held-out {datetime.datetime.now():%Y-%m-%d %H:%M:%S.%f}"[:-3]
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


def load_run(
    conn: psycopg.Connection, run_id: int, task: str
) -> tuple[dict[str, Any], sources.TrainingData, Path]:
    """A stopped run of ``task`` (embedding or reranker) to resume: its row, its exact data and
    its folder of checkpoints; marked running again."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(queries.get("training_run_get"), {"id": run_id})
        run = cur.fetchone()
    if run is None:
        raise errors.PyembedError(f"training run {run_id} does not exist")
    trained = run["data_summary"].get("task", "embedding")
    if trained != task:
        what, command = (
            ("a reranker", "train-reranker") if trained == "reranker" else ("an embedder", "train")
        )
        raise errors.PyembedError(
            f"training run {run_id} trained {what}",
            hint=f"resume it with pyembed {command} {run['collection']} --resume {run_id}",
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
    conn.execute(
        queries.get("training_run_status"), {"id": run_id, "status": "running", "error": None}
    )
    return run, sources.TrainingData(pairs, [], dict(run["data_summary"])), folder


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


def finish(
    conn: psycopg.Connection,
    run_id: int,
    version_id: int,
    peak: int,
    summary: dict[str, Any] | None = None,
) -> None:
    """The run is done: its result version, peak memory and what training measured (merged
    into its data summary: a distillation's cosine to the teacher)."""
    conn.execute(
        queries.get("training_run_finish"),
        {"id": run_id, "status": "done", "version_id": version_id, "error": None, "peak": peak},
    )
    if summary and "distillation" in summary:
        conn.execute(
            queries.get("training_run_summary_merge"),
            {"id": run_id, "extra": Jsonb({"distillation": summary["distillation"]})},
        )


def peak_memory() -> int:
    """The process's peak resident memory, in bytes."""
    # ru_maxrss is in KiB on Linux.
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
