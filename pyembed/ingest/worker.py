"""The embedding worker: claim, embed, write, repeat; many may share one queue.

An idle worker sleeps on LISTEN pyembed_queue (the capture triggers NOTIFY) and polls as a
fallback. A heartbeat thread keeps its row in pyembed.workers fresh and extends the leases of the
items it holds; if the process dies, the leases lapse and another worker takes the items.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from pyembed import errors, extras
from pyembed.db import connection, database, queries
from pyembed.ingest import auto_index, leases, pipeline, work_items

logger = logging.getLogger(__name__)

WRITE_ATTEMPTS = 3


@dataclasses.dataclass(frozen=True)
class WorkerOptions:
    """How a worker claims and paces its work (CLI flags and PYEMBED_* variables)."""

    collections: Sequence[str] | None = None
    # Rows claimed at once: enough that one sorted encode call wastes little on padding.
    claim_size: int = 1024
    encode_batch_size: int = 64
    lease_seconds: float = 60.0
    heartbeat_seconds: float = 10.0
    poll_seconds: float = 5.0
    max_attempts: int = 5
    backoff_seconds: float = 2.0
    once: bool = False
    max_rows: int | None = None
    device: str | None = None

    def __post_init__(self) -> None:
        if self.claim_size < 1 or self.encode_batch_size < 1:
            raise errors.ConfigError("batch sizes must be at least 1")
        if self.heartbeat_seconds >= self.lease_seconds:
            raise errors.ConfigError(
                "the heartbeat must come more often than the lease lasts",
                hint="keep heartbeat_seconds well below lease_seconds",
            )


@dataclasses.dataclass
class WorkerStats:
    """Running totals, mirrored into pyembed.workers by the heartbeat."""

    rows: int = 0
    chunks: int = 0
    batches: int = 0
    failures: int = 0
    unchanged: int = 0
    skipped_empty: int = 0
    deleted: int = 0
    last_error: str | None = None


BatchCallback = Callable[[work_items.Outcome, WorkerStats], None]


class Worker:
    """One worker process's loop. ``run()`` returns when stopped, idle with ``once``, or done."""

    def __init__(self, db: database.Database, options: WorkerOptions | None = None) -> None:
        self.db = db
        self.options = options or WorkerOptions()
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.lease = leases.Lease(
            self.id,
            self.options.lease_seconds,
            self.options.max_attempts,
            self.options.backoff_seconds,
        )
        self.stats = WorkerStats()
        self.processor = pipeline.BatchProcessor(
            encode_batch_size=self.options.encode_batch_size, device=self.options.device
        )
        self.indexer = auto_index.AutoIndexer(db)
        self._stop = threading.Event()
        self._state = "running"
        self._connected = False  # reconnect only once the database was reached

    def stop(self) -> None:
        """Finish the current batch, then exit (safe to call from a signal handler)."""
        self._state = "stopping"
        self._stop.set()

    def pending(self) -> int:
        with self.db.connect(autocommit=True) as conn:
            return leases.pending(conn, self.options.collections)

    def run(self, on_batch: BatchCallback | None = None) -> WorkerStats:
        """Embed due work until stopped (or, with ``once``, until none is due); the totals."""
        extras.check("embed", "sentence_transformers")  # not after claiming rows it cannot embed
        beat = threading.Thread(target=self._heartbeat_loop, name="pyembed-heartbeat")
        delay = connection.RECONNECT_FIRST_SECONDS
        try:
            while not self._stop.is_set():
                try:
                    self._run_connected(on_batch, beat)
                    break
                except (psycopg.OperationalError, errors.PyembedError) as exc:
                    # Before the first connection, a failure is a wrong DSN or a server that is
                    # not there: say so at once instead of retrying forever.
                    if not self._connected or not connection.lost(exc):
                        raise
                    # The server restarted or the network dropped: our leases lapse and other
                    # workers may take the items; come back when the server does.
                    logger.warning("lost the database (%s); reconnecting in %.0f s", exc, delay)
                    if self._stop.wait(delay):
                        break
                    delay = min(delay * 2, connection.RECONNECT_MAX_SECONDS)
        finally:
            self.indexer.join()
            self._state = "stopped"
            self._stop.set()
            if beat.is_alive():
                beat.join()
            if self._connected:
                self._final_heartbeat()
        return self.stats

    def _run_connected(self, on_batch: BatchCallback | None, beat: threading.Thread) -> None:
        with (
            self.db.connect(autocommit=True) as conn,
            self.db.connect(autocommit=True, vector=False) as listener,
        ):
            from pyembed.db import migrate  # Alembic's scripts: loaded when a worker starts

            migrate.check_current(conn)
            self._register(conn)
            channel = listener.execute(queries.get("work_channel")).fetchone()
            assert channel is not None
            listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel[0])))
            self._connected = True
            if not beat.is_alive():
                beat.start()
            while not self._stop.is_set():
                outcome = self.run_batch(conn)
                if outcome.claimed and on_batch is not None:
                    on_batch(outcome, self.stats)
                if outcome.rows:
                    self.indexer.wrote(outcome.collection_ids)
                self.indexer.check(conn, idle=outcome.claimed == 0)
                if self._reached_max_rows():
                    break
                if outcome.claimed == 0:
                    if self.options.once:
                        break
                    self._wait_for_work(listener)

    def _final_heartbeat(self) -> None:
        try:
            with self.db.connect(autocommit=True, vector=False) as conn:
                self._heartbeat(conn)
        except (psycopg.Error, errors.PyembedError) as exc:
            logger.warning("could not record that this worker stopped (%s)", exc)

    def run_batch(self, conn: psycopg.Connection) -> work_items.Outcome:
        """Claim one batch and see it through; returns what happened."""
        limit = self.options.claim_size
        if self.options.max_rows is not None:
            limit = max(1, min(limit, self.options.max_rows - self.stats.rows))
        with errors.translated():
            items = leases.claim(conn, self.lease, limit, self.options.collections)
        outcome = work_items.Outcome(
            claimed=len(items), collection_ids=sorted({item.collection_id for item in items})
        )
        if not items:
            return outcome
        started = time.perf_counter()
        tasks = self.processor.plan(conn, items, outcome)
        self.processor.encode(conn, tasks, outcome)
        self._write(conn, items, tasks, outcome)
        self._account(outcome, time.perf_counter() - started)
        return outcome

    def _write(
        self,
        conn: psycopg.Connection,
        items: list[leases.Item],
        tasks: list[work_items.Task],
        outcome: work_items.Outcome,
    ) -> None:
        # A deadlock or serialization failure (an app updating the same rows in another order)
        # rolled the write back whole; the embeddings still stand, so write them again.
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                self.processor.write(conn, self.lease, items, tasks, outcome)
                return
            except errors.DatabaseError as exc:
                if not (exc.sqlstate or "").startswith("40") or attempt == WRITE_ATTEMPTS:
                    raise
                logger.warning("write of %d rows rolled back (%s); again", len(items), exc.message)
                time.sleep(0.1 * attempt)

    def _account(self, outcome: work_items.Outcome, seconds: float) -> None:
        stats = self.stats
        stats.rows += outcome.rows
        stats.chunks += outcome.chunks
        stats.batches += 1
        stats.failures += len(outcome.failures)
        stats.unchanged += outcome.unchanged
        stats.skipped_empty += outcome.skipped_empty
        stats.deleted += outcome.deleted
        if outcome.failures:
            stats.last_error = next(iter(outcome.failures.values()))
        logger.info(
            "batch of %d: %d rows done (%d chunks, %d unchanged, %d empty, %d deleted), "
            "%d failed, %d changed meanwhile; %.1f s, %.0f rows/s",
            outcome.claimed,
            outcome.rows,
            outcome.chunks,
            outcome.unchanged,
            outcome.skipped_empty,
            outcome.deleted,
            len(outcome.failures),
            outcome.released,
            seconds,
            outcome.rows / seconds if seconds else 0.0,
        )

    def _reached_max_rows(self) -> bool:
        return self.options.max_rows is not None and self.stats.rows >= self.options.max_rows

    def _wait_for_work(self, listener: psycopg.Connection) -> None:
        deadline = time.monotonic() + self.options.poll_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            # Short slices so a stop request is seen quickly.
            for _ in listener.notifies(timeout=0.5, stop_after=1):
                return

    # -- heartbeat ---------------------------------------------------------------------
    def _register(self, conn: psycopg.Connection) -> None:
        with errors.translated():
            conn.execute(
                queries.get("register_worker"),  # again after a reconnect: an upsert
                {
                    "id": self.id,
                    "hostname": socket.gethostname(),
                    "pid": os.getpid(),
                    "collections": list(self.options.collections or []) or None,
                    "details": Jsonb(
                        {
                            "claim_size": self.options.claim_size,
                            "lease_seconds": self.options.lease_seconds,
                        }
                    ),
                },
            )

    def _heartbeat(self, conn: psycopg.Connection) -> None:
        stats = self.stats
        conn.execute(
            queries.get("worker_heartbeat"),
            {
                "id": self.id,
                "state": self._state,
                "rows": stats.rows,
                "chunks": stats.chunks,
                "batches": stats.batches,
                "failures": stats.failures,
                "last_error": stats.last_error,
            },
        )

    def _heartbeat_loop(self) -> None:
        while not self._stop.is_set():
            try:
                with self.db.connect(autocommit=True, vector=False) as conn:
                    while not self._stop.wait(self.options.heartbeat_seconds):
                        leases.extend(conn, self.lease)
                        self._heartbeat(conn)
            except (psycopg.Error, errors.PyembedError) as exc:
                # Without heartbeats our leases lapse and others take over; retry until the
                # server is back (the main loop reconnects on its own).
                logger.warning("heartbeat lost its connection (%s); retrying", exc)
                self._stop.wait(self.options.heartbeat_seconds)
