"""Learning policies: a collection trains by itself once enough new feedback came in.

A policy (``pyembed.learning_policies``, set with ``pyembed.set_learning_policy``) says when a
run is due (``pyembed.learning_status``: enough feedback since the last finished run, and its
interval passed), how it trains, which eval sets gate the result and whether it is promoted.
``Learner.run_due`` runs what is due, one run per collection at a time across all processes
(the training lock); ``Learner.watch`` does so until stopped, in ``pyembed learn --watch``, and
``beside`` in a thread next to a worker (``pyembed worker --learn``). Every run and its
outcome is a row of ``pyembed.training_runs``; every promotion one of ``pyembed.deployments``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from pyembed import errors
from pyembed.db import connection, database, queries
from pyembed.ingest import worker
from pyembed.training import options as train_options
from pyembed.training import run_rows, runs, sources

logger = logging.getLogger(__name__)

# Policy options that go to TrainOptions; the others choose the pairs mined from the log.
_TRAIN_KEYS = (
    "loss",
    "epochs",
    "batch_size",
    "learning_rate",
    "warmup_ratio",
    "max_seq_length",
    "mini_batch_size",
)


@dataclasses.dataclass(frozen=True)
class Policy:
    """A collection's learning policy and where it stands (a row of pyembed.learning_status)."""

    collection: str
    enabled: bool
    min_feedback: int
    min_interval: datetime.timedelta
    train_options: dict[str, Any]
    eval_sets: list[str]
    after_training: str
    new_feedback: int
    due: bool
    next_run_not_before: datetime.datetime | None
    last_run_id: int | None
    last_run_status: str | None
    last_outcome: str | None
    last_outcome_reason: str | None


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one due policy led to: a training run, or why none ran."""

    collection: str
    result: runs.TrainResult | None = None
    skipped: str | None = None
    error: str | None = None


def status(conn: psycopg.Connection, collections: Sequence[str] | None = None) -> list[Policy]:
    """The policies (of ``collections``, else all) and whether each is due."""
    with conn.cursor(row_factory=class_row(Policy)) as cur, errors.translated():
        cur.execute(
            queries.get("learning_status"), {"collections": list(collections or []) or None}
        )
        return cur.fetchall()


def set_policy(
    conn: psycopg.Connection,
    collection: str,
    *,
    min_feedback: int | None = None,
    min_interval: datetime.timedelta | str | None = None,
    train_options: dict[str, Any] | None = None,
    eval_sets: Sequence[str] | None = None,
    after_training: str | None = None,
    enabled: bool | None = None,
) -> Policy:
    """Set or change the collection's policy (None keeps a value; ``min_interval`` may be
    PostgreSQL interval text such as ``'30 minutes'``); the policy as it stands."""
    with errors.translated():
        conn.execute(
            queries.get("set_learning_policy"),
            {
                "collection": collection,
                "min_feedback": min_feedback,
                "min_interval": min_interval,
                "train_options": None if train_options is None else Jsonb(train_options),
                "eval_sets": None if eval_sets is None else list(eval_sets),
                "after_training": after_training,
                "enabled": enabled,
            },
        )
    return status(conn, [collection])[0]


def drop_policy(conn: psycopg.Connection, collection: str) -> bool:
    """Remove the collection's policy (its runs stay recorded); False when it had none."""
    with errors.translated():
        row = conn.execute(queries.get("drop_learning_policy"), {"collection": collection})
        found = row.fetchone()
    return bool(found and found[0])


def training_setup(policy: Policy) -> tuple[train_options.TrainOptions, dict[str, Any]]:
    """The policy's training options, and how to mine its pairs (sources.from_feedback)."""
    chosen = policy.train_options
    opts = train_options.TrainOptions(
        **{key: chosen[key] for key in _TRAIN_KEYS if key in chosen},
        use_negatives=bool(chosen.get("negatives", False)),
    )
    mining: dict[str, Any] = {"negatives_per_pair": 1 if opts.use_negatives else 0}
    if "min_signals" in chosen:
        mining["min_signals"] = int(chosen["min_signals"])
    if "held_out" in chosen:
        mining["held_out_fraction"] = float(chosen["held_out"])
    return opts, mining


@contextlib.contextmanager
def beside(runner: worker.Worker, poll_seconds: float = 30.0) -> Iterator[Learner]:
    """Run due policies in a thread while the block runs ``runner`` (``pyembed worker --learn``);
    on leaving, the thread finishes the run it is in and stops."""
    learner = Learner(runner.db, runner.options.collections)
    learner.check_role()  # before any work: a worker that cannot learn says so at once
    stop = threading.Event()
    thread = threading.Thread(
        target=learner.watch,
        kwargs={"poll_seconds": poll_seconds, "stop": stop},
        name="pyembed-learning",
    )
    thread.start()
    try:
        yield learner
    finally:
        stop.set()
        thread.join()


class Learner:
    """Runs due learning policies; remembers, between calls, the policies whose feedback was
    too thin to train on, so they wait for more instead of failing on every poll."""

    def __init__(self, db: database.Database, collections: Sequence[str] | None = None) -> None:
        self.db = db
        self.collections = list(collections or []) or None
        self._thin: dict[str, int] = {}

    def check_role(self) -> None:
        """A learner trains, registers and promotes: its role must be a writer."""
        with self.db.session() as conn:
            row = conn.execute(queries.get("is_writer")).fetchone()
            user = conn.info.user
        if not (row and row[0]):
            raise errors.PermissionDenied(
                f"role {user!r} may not run learning policies: they train, register and promote "
                "model versions, which pyembed_writer may",
                hint=f"GRANT pyembed_writer TO {user}, or run pyembed learn --watch as a writer",
            )

    def run_due(self) -> list[Outcome]:
        """Run every due policy once (skipping collections another process trains)."""
        with self.db.session() as conn:
            due = [p for p in status(conn, self.collections) if p.due]
        return [self._run(policy.collection) for policy in due]

    def watch(
        self,
        *,
        poll_seconds: float = 30.0,
        stop: threading.Event | None = None,
        on_outcome: Callable[[Outcome], None] | None = None,
    ) -> None:
        """Run due policies every ``poll_seconds`` until ``stop`` is set."""
        stop = stop or threading.Event()
        self.check_role()
        while not stop.is_set():
            try:
                for outcome in self.run_due():
                    if on_outcome is not None:
                        on_outcome(outcome)
            except (psycopg.OperationalError, errors.PyembedError) as exc:
                # The same test as the worker's: a server that went away is waited for; any
                # other failure (an outdated schema, a revoked grant) stops the learner loudly.
                if not connection.lost(exc):
                    raise
                logger.warning("learning: lost the database (%s); trying again", exc)
            stop.wait(poll_seconds)

    def _run(self, collection: str) -> Outcome:
        try:
            with run_rows.training_lock(self.db, collection):
                return self._run_locked(collection)
        except errors.TrainingBusy as exc:
            return Outcome(collection, skipped=exc.message)
        except Exception as exc:  # a daemon goes on; the run row says what failed
            logger.exception("learning: the run of %s failed", collection)
            return Outcome(collection, error=str(exc))

    def _run_locked(self, collection: str) -> Outcome:
        with self.db.session() as conn:
            found = status(conn, [collection])
            # Another process may have run it between our look and the lock.
            if not found or not found[0].due:
                return Outcome(collection, skipped="no longer due")
            policy = found[0]
            if self._thin.get(collection) == policy.new_feedback:
                return Outcome(collection, skipped="waiting for more feedback")
            opts, mining = training_setup(policy)
            try:
                data = sources.from_feedback(conn, collection, seed=opts.seed, **mining)
            except errors.PyembedError as exc:
                self._thin[collection] = policy.new_feedback
                logger.warning("learning: %s cannot train yet: %s", collection, exc.message)
                return Outcome(collection, skipped=exc.message)
        self._thin.pop(collection, None)
        logger.info(
            "learning: %s has %d new feedback signals; training (%s)",
            collection,
            policy.new_feedback,
            opts.loss,
        )
        result = runs.train(
            self.db,
            collection,
            data,
            options=opts,
            promote_if_better=policy.after_training == "promote",
            triggered_by="policy",
            gate_sets=policy.eval_sets,
            take_lock=False,
        )
        logger.info(
            "learning: %s run %d -> version %d: %s (%s)",
            collection,
            result.run_id,
            result.version_id,
            result.outcome,
            result.outcome_reason,
        )
        return Outcome(collection, result=result)
