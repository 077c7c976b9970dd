"""The learner: carries out learning policies, so that a collection improves by itself.

On every poll, per policy: an open canary whose score has a verdict is decided (promoted,
rejected, inconclusive); a promotion whose version has served the policy's ``watch_searches``
is judged on its online metrics and rolled back when worse than its predecessor; and a due run
trains (not while a canary or a watch is open), then keeps, promotes or canaries its result.
All of it under the collection's training lock, so one process acts on a collection at a time.
``Learner.watch`` polls until stopped (``pyembed learn --watch``); ``beside`` runs it in a
thread next to a worker (``pyembed worker --learn``). Every run, decision and reason is a row of
``pyembed.training_runs``, ``pyembed.canaries`` or ``pyembed.deployments``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from collections.abc import Callable, Iterator, Sequence

import psycopg

from pyembed import errors
from pyembed.db import connection, database, queries
from pyembed.evaluation import online
from pyembed.ingest import worker
from pyembed.models import canaries
from pyembed.training import policies, run_rows, runs, sources

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one policy led to on a poll: a training run, a canary decided, a promotion judged
    online, or why nothing ran."""

    collection: str
    result: runs.TrainResult | None = None
    skipped: str | None = None
    error: str | None = None
    canary: canaries.Canary | None = None
    check: online.Check | None = None


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
    """Carries out learning policies; remembers, between calls, the policies whose feedback was
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
        """Act once on every enabled policy: decide canaries, judge promotions, run due
        training (skipping collections another process is acting on)."""
        with self.db.session() as conn:
            found = [p for p in policies.status(conn, self.collections) if p.enabled]
        outcomes = [self._run(policy) for policy in found]
        return [outcome for outcome in outcomes if outcome is not None]

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

    def _run(self, policy: policies.Policy) -> Outcome | None:
        collection = policy.collection
        try:
            with run_rows.training_lock(self.db, collection):
                outcome, blocked = self._follow_up(policy)
                if blocked:
                    return outcome
                return self._train(collection)
        except errors.TrainingBusy as exc:
            return Outcome(collection, skipped=exc.message) if policy.due else None
        except Exception as exc:  # a daemon goes on; the rows say what failed
            logger.exception("learning: acting on %s failed", collection)
            return Outcome(collection, error=str(exc))

    def _follow_up(self, policy: policies.Policy) -> tuple[Outcome | None, bool]:
        """A running canary or a watched promotion first: decided, or waited for. Returns what
        was done and whether training must wait (so that no comparison is cut short)."""
        collection = policy.collection
        with self.db.session() as conn:
            open_canary = canaries.running(conn, collection)
        if open_canary is not None:
            decided = canaries.decide(self.db, collection)
            if decided is not None:
                return Outcome(collection, canary=decided), True
            waiting = f"canary {open_canary.canary_id} runs: {open_canary.score()}"
            return (Outcome(collection, skipped=waiting) if policy.due else None), True
        if policy.watch_searches <= 0:
            return None, False
        check = online.watch(self.db, collection, policy.watch_searches)
        if check is not None:
            return Outcome(collection, check=check), True
        with self.db.session() as conn:
            if not online.unjudged(conn, collection):
                return None, False
        waiting = "the last promotion waits for its online check"
        return (Outcome(collection, skipped=waiting) if policy.due else None), True

    def _train(self, collection: str) -> Outcome | None:
        with self.db.session() as conn:
            found = policies.status(conn, [collection])
            # Another process may have run it between our look and the lock.
            if not found or not found[0].due:
                return None
            policy = found[0]
            if self._thin.get(collection) == policy.new_feedback:
                return Outcome(collection, skipped="waiting for more feedback")
            opts, mining = policies.training_setup(policy)
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
            promote_if_better=policy.after_training in ("promote", "canary"),
            triggered_by="policy",
            gate_sets=policy.eval_sets,
            take_lock=False,
            canary=policy.canary(),
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
