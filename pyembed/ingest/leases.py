"""The work queue as the worker sees it: claim with a lease, then finish, release, retry or bury.

All state lives in pyembed.queue; every statement is a named query in sql/queries/ingest.sql.
Items are only touched while this worker still holds their lease, so a worker whose lease ran
out (it was slow, or presumed dead) can never delete or overwrite another worker's work.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import psycopg
from psycopg.rows import class_row

from pyembed.db import queries


@dataclasses.dataclass(frozen=True, eq=False)
class Item:
    """A claimed queue item (compared and hashed by identity)."""

    id: int
    collection_id: int
    pk: list[object]
    model_version_id: int | None
    revision: int
    attempts: int
    # 'upsert' or 'delete': what the capture trigger saw last.
    operation: str = "upsert"

    @property
    def key(self) -> tuple[object, ...]:
        return tuple(self.pk)


@dataclasses.dataclass(frozen=True)
class Lease:
    """Who claims and for how long."""

    worker_id: str
    seconds: float
    max_attempts: int
    backoff_seconds: float


def claim(
    conn: psycopg.Connection, lease: Lease, limit: int, collections: Sequence[str] | None
) -> list[Item]:
    """Lease up to ``limit`` due items (one short transaction)."""
    with conn.transaction(), conn.cursor(row_factory=class_row(Item)) as cur:
        cur.execute(queries.get("bury_abandoned"), {"max_attempts": lease.max_attempts})
        cur.execute(
            queries.get("claim_batch"),
            {
                "worker": lease.worker_id,
                "lease_seconds": lease.seconds,
                "limit": limit,
                "max_attempts": lease.max_attempts,
                "collections": list(collections) if collections else None,
            },
        )
        return cur.fetchall()


def lock_revisions(conn: psycopg.Connection, lease: Lease, ids: list[int]) -> dict[int, int]:
    """Inside the write transaction: lock the items still leased to us; id → current revision."""
    rows = conn.execute(queries.get("lock_claimed"), {"ids": ids, "worker": lease.worker_id})
    return {item_id: revision for item_id, revision in rows.fetchall()}


def finish(conn: psycopg.Connection, lease: Lease, ids: list[int]) -> None:
    """Delete items whose work is written."""
    if ids:
        conn.execute(queries.get("finish_items"), {"ids": ids, "worker": lease.worker_id})


def release(conn: psycopg.Connection, lease: Lease, ids: list[int]) -> None:
    """Give items back untouched (their row changed while it was being embedded)."""
    if ids:
        conn.execute(queries.get("release_items"), {"ids": ids, "worker": lease.worker_id})


def fail(
    conn: psycopg.Connection,
    lease: Lease,
    failures: dict[Item, str],
    *,
    not_before_seconds: float | None = None,
) -> None:
    """Record errors: retry later with exponential backoff (at least ``not_before_seconds``: an
    endpoint's Retry-After), or move to failed_items at the limit."""
    retry = {item: error for item, error in failures.items() if item.attempts < lease.max_attempts}
    bury = {item: error for item, error in failures.items() if item not in retry}
    for query, group in (("retry_items", retry), ("bury_items", bury)):
        if group:
            conn.execute(
                queries.get(query),
                {
                    "ids": [item.id for item in group],
                    "errors": [error[:4000] for error in group.values()],
                    "worker": lease.worker_id,
                    "backoff_seconds": lease.backoff_seconds,
                    "not_before_seconds": not_before_seconds or 0.0,
                },
            )


def extend(conn: psycopg.Connection, lease: Lease) -> None:
    """Push the expiry of every item we hold (called by the heartbeat)."""
    conn.execute(
        queries.get("extend_leases"), {"worker": lease.worker_id, "lease_seconds": lease.seconds}
    )


def pending(conn: psycopg.Connection, collections: Sequence[str] | None) -> int:
    """How many items wait (for the progress bar)."""
    row = conn.execute(
        queries.get("pending_count"), {"collections": list(collections) if collections else None}
    ).fetchone()
    return int(row[0]) if row else 0
