"""Searching from Python, on a primary or a read-only standby.

SQL is the main interface (``SELECT * FROM pyembed.search(...)``); this is the same call for
Python applications, plus what SQL alone cannot do on a hot standby: the search runs there, and
its log (so clicks can be recorded and the platform can learn) is written on the primary.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from pyembed import errors
from pyembed.db import queries


@dataclasses.dataclass(frozen=True)
class Hit:
    """One result of pyembed.search."""

    query_id: int | None
    rank: int
    pk: list[Any]
    chunk: str
    distance: float
    similarity: float
    # The reranker's score (rerank=N), else None.
    rerank_score: float | None = None


def is_standby(conn: psycopg.Connection) -> bool:
    """True when the connection's server is a read-only hot standby."""
    row = conn.execute(queries.get("in_recovery")).fetchone()
    return bool(row and row[0])


def canary_version(conn: psycopg.Connection, collection: str) -> int | None:
    """The model version to embed queries with too (for ``candidate_query``) while a canary of
    the collection runs; None otherwise."""
    with errors.translated():
        row = conn.execute(queries.get("canary_version"), {"collection": collection}).fetchone()
    return int(row[0]) if row and row[0] is not None else None


def search(
    conn: psycopg.Connection,
    collection: str,
    query: Sequence[float] | Any,
    k: int = 10,
    *,
    filter: dict[str, Any] | None = None,
    ef_search: int | None = None,
    probes: int | None = None,
    log: bool | None = None,
    query_text: str | None = None,
    rerank: int | None = None,
    reranker: str | None = None,
    primary: psycopg.Connection | None = None,
    candidate_query: Sequence[float] | Any | None = None,
) -> list[Hit]:
    """Nearest rows of a collection (best chunk each), as pyembed.search returns them; with
    ``rerank`` the top N reordered by a reranker (needs ``query_text``).

    On a standby nothing can be written: pass ``primary`` (a connection to the primary) and the
    search is logged there, so the hits carry a query_id for pyembed.record_feedback.
    While a canary runs, pass the query embedded by its version (``canary_version``) as
    ``candidate_query``: both versions serve the search, interleaved or split.
    """
    defer = primary is not None and is_standby(conn)
    params = {
        "collection": collection,
        "query": query,
        "k": k,
        "filter": Jsonb(filter) if filter is not None else None,
        "ef_search": ef_search,
        "probes": probes,
        "log": False if defer else log,
        "query_text": query_text,
        "rerank": rerank,
        "reranker": reranker,
        # A standby's search is logged on the primary as a plain one: no canary there.
        "candidate_query": None if defer else candidate_query,
    }
    started = time.perf_counter()
    with errors.translated(), conn.cursor(row_factory=class_row(Hit)) as cur:
        cur.execute(queries.get("search"), params)
        hits = cur.fetchall()
    if not defer or log is False:
        return hits
    assert primary is not None
    with errors.translated():
        row = primary.execute(
            queries.get("log_search"),
            {
                "collection": collection,
                "query": query,
                "keys": Jsonb([h.pk for h in hits]),
                "query_text": query_text,
                "k": k,
                "params": Jsonb(
                    {
                        "filter": filter,
                        "ef_search": ef_search,
                        "probes": probes,
                        "reranked": rerank,
                        "served_by": "standby",
                    }
                ),
                "latency_ms": (time.perf_counter() - started) * 1000,
            },
        ).fetchone()
    query_id = row[0] if row else None
    return [dataclasses.replace(hit, query_id=query_id) for hit in hits]
