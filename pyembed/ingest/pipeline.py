"""One claimed batch: read the rows, decide what each needs, chunk, encode, write.

Reading and writing are short statements; chunking and encoding run with no transaction open.
One bad row never fails the batch: errors are kept per item and recorded by the caller.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict

import numpy as np
import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from pyembed import errors
from pyembed.db import queries
from pyembed.ingest import leases
from pyembed.models import encoder, loading

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Collection:
    """The columns of pyembed.collections the worker needs."""

    id: int
    name: str
    chunk_tokens: int
    chunk_overlap: int
    active_version_id: int | None
    pending_version_id: int | None

    def live_versions(self) -> list[int]:
        return [v for v in (self.active_version_id, self.pending_version_id) if v is not None]


@dataclasses.dataclass(eq=False)
class Task:
    """What one item needs for one model version."""

    item: leases.Item
    collection: Collection
    version_id: int
    body: str | None = None
    content_hash: bytes = b""
    chunks: list[str] = dataclasses.field(default_factory=list)
    vectors: np.ndarray | None = None
    # 'write' (chunks, or a NULL-embedding marker for empty text), 'delete' or 'unchanged'.
    action: str = "write"


@dataclasses.dataclass
class Outcome:
    """What happened to a batch, for the worker's counters."""

    claimed: int = 0
    rows: int = 0
    chunks: int = 0
    unchanged: int = 0
    skipped_empty: int = 0
    deleted: int = 0
    released: int = 0
    failures: dict[leases.Item, str] = dataclasses.field(default_factory=dict)
    collection_ids: list[int] = dataclasses.field(default_factory=list)


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
        self, conn: psycopg.Connection, items: list[leases.Item], outcome: Outcome
    ) -> list[Task]:
        by_collection: dict[int, list[leases.Item]] = defaultdict(list)
        for item in items:
            by_collection[item.collection_id].append(item)
        tasks: list[Task] = []
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
        outcome: Outcome,
    ) -> list[Task]:
        with errors.translated(), conn.cursor(row_factory=class_row(Collection)) as cur:
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
        tasks: list[Task] = []
        hidden_message: str | None = None
        for version_id in live:
            # A row can be queued twice for one version (a switch's backfill and a fresh write):
            # one task writes it, and both items are finished by that write.
            by_key = {i.key: i for i in items if i.model_version_id in (None, version_id)}
            wanted = list(by_key.values())
            if not wanted:
                continue
            enc = self.encoder_for(conn, version_id)
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
                task = Task(item, collection, version_id, body)
                if not exists:
                    task.action = "delete"
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
    def encode(self, conn: psycopg.Connection, tasks: list[Task], outcome: Outcome) -> None:
        by_version: dict[int, list[Task]] = defaultdict(list)
        for task in tasks:
            if task.action == "write" and task.body is not None:
                by_version[task.version_id].append(task)
        for version_id, group in by_version.items():
            enc = self.encoder_for(conn, version_id)
            self._chunk(enc, group, outcome)
            ready = [t for t in group if t.item not in outcome.failures and t.chunks]
            try:
                self._encode_together(enc, ready)
            except Exception as exc:
                # Find the culprit(s): encode each row alone.
                logger.warning("encoding a batch failed (%r); retrying row by row", exc)
                for task in ready:
                    try:
                        self._encode_together(enc, [task])
                    except Exception as row_exc:
                        outcome.failures[task.item] = f"encoding failed: {row_exc!r}"

    @staticmethod
    def _chunk(enc: encoder.Encoder, group: list[Task], outcome: Outcome) -> None:
        by_settings: dict[tuple[int, int], list[Task]] = defaultdict(list)
        for task in group:
            by_settings[(task.collection.chunk_tokens, task.collection.chunk_overlap)].append(task)
        for (tokens, overlap), tasks in by_settings.items():
            try:
                chunked = enc.chunk_many([t.body or "" for t in tasks], tokens, overlap)
            except Exception:
                chunked = []
                for task in tasks:
                    try:
                        chunked.append(enc.chunk_many([task.body or ""], tokens, overlap)[0])
                    except Exception as exc:
                        outcome.failures[task.item] = f"chunking failed: {exc!r}"
                        chunked.append([])
            for task, chunks in zip(tasks, chunked, strict=True):
                task.chunks = chunks

    @staticmethod
    def _encode_together(enc: encoder.Encoder, tasks: list[Task]) -> None:
        texts = [chunk for task in tasks for chunk in task.chunks]
        vectors = enc.encode(texts)
        offset = 0
        for task in tasks:
            task.vectors = vectors[offset : offset + len(task.chunks)]
            offset += len(task.chunks)

    # -- write (one short transaction) ---------------------------------------------------
    def write(
        self,
        conn: psycopg.Connection,
        lease: leases.Lease,
        items: list[leases.Item],
        tasks: list[Task],
        outcome: Outcome,
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
            leases.fail(conn, lease, {i: e for i, e in outcome.failures.items() if i not in lost})
        outcome.released += len(stale)
        self._count(tasks, done_set, outcome)

    @staticmethod
    def _stage(conn: psycopg.Connection, tasks: list[Task]) -> None:
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
    def _count(tasks: list[Task], done: set[leases.Item], outcome: Outcome) -> None:
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


def _keys_by_store(tasks: list[Task]) -> dict[tuple[str, int], list[list[object]]]:
    keys: dict[tuple[str, int], list[list[object]]] = defaultdict(list)
    for task in tasks:
        keys[(task.collection.name, task.version_id)].append(task.item.pk)
    return keys
