"""One claimed batch: read the rows, decide what each needs, chunk, encode, write.

Reading and writing are short statements; chunking and encoding run with no transaction open.
One bad row never fails the batch: errors are kept per item and recorded by the caller.
"""

from __future__ import annotations

import logging
from collections import defaultdict

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from pyembed import errors
from pyembed.db import queries
from pyembed.ingest import adopted, encoding, leases, work_items
from pyembed.models import encoder, loading

logger = logging.getLogger(__name__)


class BatchProcessor:
    """Turns claimed items into store rows; keeps one Encoder per model version."""

    def __init__(self, *, encode_batch_size: int = 64, device: str | None = None) -> None:
        self.encode_batch_size = encode_batch_size
        self.device = device
        self._encoders: dict[int, encoder.Encoder] = {}

    def encoder_for(self, conn: psycopg.Connection, version_id: int) -> encoder.Encoder:
        if version_id not in self._encoders:
            loaded = loading.load(conn, version_id, device=self.device)
            self._encoders[version_id] = encoder.Encoder(loaded, batch_size=self.encode_batch_size)
        return self._encoders[version_id]

    # -- planning (short reads) ---------------------------------------------------------
    def plan(
        self, conn: psycopg.Connection, items: list[leases.Item], outcome: work_items.Outcome
    ) -> list[work_items.Task]:
        by_collection: dict[int, list[leases.Item]] = defaultdict(list)
        for item in items:
            by_collection[item.collection_id].append(item)
        tasks: list[work_items.Task] = []
        for collection_id, group in by_collection.items():
            try:
                tasks.extend(self._plan_collection(conn, collection_id, group, outcome))
            except Exception as exc:  # one collection's trouble must not stop the others
                message = str(exc) if isinstance(exc, errors.PyembedError) else repr(exc)
                logger.warning("collection id %s: %s", collection_id, message)
                for item in group:
                    outcome.failures[item] = message
        return tasks

    def _plan_collection(
        self,
        conn: psycopg.Connection,
        collection_id: int,
        items: list[leases.Item],
        outcome: work_items.Outcome,
    ) -> list[work_items.Task]:
        with errors.translated(), conn.cursor(row_factory=class_row(work_items.Collection)) as cur:
            cur.execute(queries.get("collection_by_id"), {"id": collection_id})
            collection = cur.fetchone()
        if collection is None:
            return []
        keys = Jsonb([item.pk for item in items])
        with errors.translated():
            rows = conn.execute(
                queries.get("source_rows"), {"collection": collection.name, "keys": keys}
            ).fetchall()
        source = {tuple(pk): (body, exists) for pk, body, exists in rows}
        live = collection.live_versions()
        tasks: list[work_items.Task] = []
        hidden_message: str | None = None
        for version_id in live:
            # A row can be queued twice for one version (a switch's backfill and a fresh write):
            # one task writes it, and both items are finished by that write.
            by_key = {i.key: i for i in items if i.model_version_id in (None, version_id)}
            wanted = list(by_key.values())
            if not wanted:
                continue
            enc = self.encoder_for(conn, version_id)
            copied = {}
            if version_id == collection.adopted_version_id:
                copied = adopted.vectors(conn, collection.name, wanted)
            with errors.translated():
                stored = dict(
                    (tuple(pk), bytes(h))
                    for pk, h in conn.execute(
                        queries.get("stored_hashes"),
                        {
                            "collection": collection.name,
                            "version_id": version_id,
                            "keys": Jsonb([i.pk for i in wanted]),
                        },
                    ).fetchall()
                )
            for item in wanted:
                body, exists = source.get(item.key, (None, False))
                if exists is None:
                    # Row-level security may hide the row: only the capture trigger, which saw
                    # the DELETE, can say it is gone. Never delete embeddings of a hidden row.
                    if item.operation != "delete":
                        if hidden_message is None:  # one query per batch, not per row
                            hidden_message = self._hidden_row_message(conn, collection.name)
                        outcome.failures[item] = hidden_message
                        continue
                    exists = False
                task = work_items.Task(item, collection, version_id, body)
                if not exists:
                    task.action = "delete"
                elif item.key in copied:
                    problem = adopted.take(task, copied[item.key], enc.version.dimensions)
                    if problem is not None:
                        outcome.failures[item] = problem
                        continue
                    if stored.get(item.key) == task.content_hash:
                        task.action = "unchanged"
                else:
                    task.content_hash = enc.content_hash(
                        body, collection.chunk_tokens, collection.chunk_overlap
                    )
                    if stored.get(item.key) == task.content_hash:
                        task.action = "unchanged"
                tasks.append(task)
        return tasks

    @staticmethod
    def _hidden_row_message(conn: psycopg.Connection, collection: str) -> str:
        role, source = conn.execute(
            queries.get("collection_source_and_role"), {"name": collection}
        ).fetchone() or ("?", "?")
        return (
            f"row not visible to role {role}: row-level security on {source} may hide it, so "
            f"it is neither embedded nor deleted. Fix: ALTER ROLE {role} BYPASSRLS, or CREATE "
            f"POLICY pyembed_worker_reads_all ON {source} FOR SELECT TO pyembed_worker USING "
            f"(true); then `pyembed failed retry --collection {collection}`"
        )

    # -- chunk and encode (no transaction open) ----------------------------------------
    def encode(
        self, conn: psycopg.Connection, tasks: list[work_items.Task], outcome: work_items.Outcome
    ) -> None:
        by_version: dict[int, list[work_items.Task]] = defaultdict(list)
        for task in tasks:
            # Adopted rows come with their vectors: nothing to encode.
            if task.action == "write" and task.body is not None and task.vectors is None:
                by_version[task.version_id].append(task)
        for version_id, group in by_version.items():
            encoding.encode(self.encoder_for(conn, version_id), group, outcome)

    # -- write (one short transaction) ---------------------------------------------------
    def write(
        self,
        conn: psycopg.Connection,
        lease: leases.Lease,
        items: list[leases.Item],
        tasks: list[work_items.Task],
        outcome: work_items.Outcome,
    ) -> None:
        with errors.translated(), conn.transaction():
            current = leases.lock_revisions(conn, lease, [i.id for i in items])
            failed = set(outcome.failures)
            # A row changed while it was embedded (higher revision): leave it for the next pass.
            stale = {i for i in items if i.id in current and current[i.id] != i.revision}
            lost = {i for i in items if i.id not in current}  # lease expired, taken over
            done = [i for i in items if i.id in current and i not in stale and i not in failed]
            done_set = set(done)
            writes = [t for t in tasks if t.item in done_set and t.action != "unchanged"]
            self._stage(conn, writes)
            for (name, version_id), keys in _keys_by_store(writes).items():
                conn.execute(
                    queries.get("apply_chunks"),
                    {"collection": name, "version_id": version_id, "keys": Jsonb(keys)},
                )
            leases.finish(conn, lease, [i.id for i in done])
            leases.release(conn, lease, [i.id for i in stale])
            failures = {i: e for i, e in outcome.failures.items() if i not in lost}
            leases.fail(conn, lease, failures, not_before_seconds=outcome.retry_after)
        outcome.released += len(stale)
        self._count(tasks, done_set, outcome)

    @staticmethod
    def _stage(conn: psycopg.Connection, tasks: list[work_items.Task]) -> None:
        conn.execute(queries.get("create_staging"))
        with conn.cursor() as cur, cur.copy(queries.get("copy_staging")) as copy:
            copy.set_types(["int8", "jsonb", "int4", "text", "vector", "bytea"])
            for task in tasks:
                if task.action == "delete":
                    continue
                if not task.chunks or task.vectors is None:
                    # NULL or empty text: a marker row, so the row counts as handled, not pending.
                    copy.write_row((task.version_id, task.item.pk, 0, "", None, task.content_hash))
                    continue
                for seq, (chunk, vector) in enumerate(zip(task.chunks, task.vectors, strict=True)):
                    copy.write_row(
                        (task.version_id, task.item.pk, seq, chunk, vector, task.content_hash)
                    )

    @staticmethod
    def _count(
        tasks: list[work_items.Task], done: set[leases.Item], outcome: work_items.Outcome
    ) -> None:
        for task in tasks:
            if task.item not in done:
                continue
            if task.action == "unchanged":
                outcome.unchanged += 1
            elif task.action == "delete":
                outcome.deleted += 1
            elif not task.chunks:
                outcome.skipped_empty += 1
            else:
                outcome.chunks += len(task.chunks)
        outcome.rows += len(done)


def _keys_by_store(tasks: list[work_items.Task]) -> dict[tuple[str, int], list[list[object]]]:
    keys: dict[tuple[str, int], list[list[object]]] = defaultdict(list)
    for task in tasks:
        keys[(task.collection.name, task.version_id)].append(task.item.pk)
    return keys
