"""What a claimed batch is made of while the worker handles it: the collection's settings, one
task per item and model version, and the outcome counted for the worker's totals."""

from __future__ import annotations

import dataclasses

import numpy as np

from pyembed.ingest import leases


@dataclasses.dataclass(frozen=True)
class Collection:
    """The columns of pyembed.collections the worker needs."""

    id: int
    name: str
    chunk_tokens: int
    chunk_overlap: int
    active_version_id: int | None
    pending_version_id: int | None
    adopted_version_id: int | None = None  # copies the application's vectors (adopted.py)

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
    retry_after: float | None = None  # an endpoint's Retry-After, the least wait of failures
    collection_ids: list[int] = dataclasses.field(default_factory=list)
