"""Retrieval evaluation of model versions on a collection's eval sets, stored as tables.

Three ways, stored separately so the index's recall loss and the reranker's gain show: ``exact``
measures the model alone (every row scored against every query, from the version's store, or by
embedding the source rows when the version has no store yet, e.g. a freshly trained one),
``deployed`` runs ``pyembed.search`` through the live index (the active version only),
``reranked`` reorders the exact top N with a reranker (the run names it), as
``pyembed.search(..., rerank => N)`` does. A run and its metrics are written in one transaction
once all are computed: an evaluation that fails writes nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from typing import Any

import numpy as np
import psycopg
from psycopg.types.json import Jsonb

from pyembed import errors
from pyembed.db import database, queries
from pyembed.evaluation import corpora, eval_sets, ir_metrics
from pyembed.models import encoder, loading, rerankers

logger = logging.getLogger(__name__)

DEFAULT_KS = (1, 3, 5, 10, 100)
DEFAULT_RERANK = 20
Key = corpora.Key


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """What one evaluation run measured."""

    run_id: int
    mode: str
    version_id: int
    eval_set_id: int
    metrics: dict[str, float]
    queries: int


def evaluate(
    db: database.Database,
    collection: str,
    *,
    version_id: int | None = None,
    eval_set: str | None = None,
    modes: tuple[str, ...] = ("exact", "deployed"),
    ks: tuple[int, ...] = DEFAULT_KS,
    reranker: str | int | None = None,
    rerank: int = DEFAULT_RERANK,
) -> list[EvalResult]:
    """Evaluate a version (default: the active one) on an eval set and store the metrics.

    ``reranked`` reorders the top ``rerank`` with ``reranker`` (default: the collection's, as
    pyembed.search picks it); the rows below them keep the exact order.
    """
    unknown = set(modes) - {"exact", "deployed", "reranked"}
    if unknown:
        raise errors.ConfigError(
            f"unknown evaluation mode {sorted(unknown)[0]!r}",
            hint="the modes are exact, deployed and reranked",
        )
    if rerank < 1:
        raise errors.ConfigError(
            f"rerank = {rerank} reorders nothing", hint="rerank the top 20 to 50 candidates"
        )
    with db.session() as conn:
        info = conn.execute(queries.get("collection_eval_info"), {"name": collection}).fetchone()
        if info is None:
            raise errors.CollectionError(f"collection {collection!r} does not exist")
        active, distance, chunk_tokens, overlap = info
        version = version_id or active
        the_set = eval_sets.load_set(conn, collection, eval_set)
        enc = encoder.Encoder(loading.load(conn, version))
        vectors = enc.encode_queries([q.text for q in the_set.queries])
        results = []
        corpus: corpora.Corpus | None = None
        for mode in modes:
            if mode == "deployed" and version != active:
                logger.info(
                    "version %s is not active on %s: no deployed evaluation", version, collection
                )
                continue
            started = dt.datetime.now(dt.UTC)
            reranker_id = None
            if mode in ("exact", "reranked"):
                corpus = corpus or corpora.Corpus.load(conn, collection, enc, chunk_tokens, overlap)
                params: dict[str, Any] = {"rows": len(corpus.keys), "chunks": len(corpus.rows)}
                hits = corpus.top_chunks(vectors, max(max(ks), rerank), distance)
                ranked = [[key for key, _ in found] for found in hits]
                if mode == "reranked":
                    reranker_id = _reranker_id(conn, collection, reranker)
                    scorer = rerankers.load(conn, reranker_id)
                    ranked = [
                        _reordered(scorer, q.text, found, rerank)
                        for q, found in zip(the_set.queries, hits, strict=True)
                    ]
                    params.update({"rerank": rerank, "reranker": scorer.version.label})
            else:
                limit = conn.execute(queries.get("max_results")).fetchone()
                assert limit is not None
                ranked = _deployed(conn, collection, vectors, min(max(ks), limit[0]))
                params = _index_settings(conn, collection)
            runs = [(r, q.judgments) for r, q in zip(ranked, the_set.queries, strict=True)]
            values = ir_metrics.mean_metrics(runs, ks)
            per_query = ir_metrics.query_metrics(runs, ks)
            params.update({"queries": len(runs), "ks": list(ks)})
            run_id = store_run(
                conn,
                collection,
                version,
                the_set.id,
                "retrieval",
                mode,
                params,
                values,
                started,
                reranker_version_id=reranker_id,
                per_query=([q.id for q in the_set.queries], per_query),
            )
            results.append(EvalResult(run_id, mode, version, the_set.id, values, len(runs)))
    return results


def _reranker_id(conn: psycopg.Connection, collection: str, reranker: str | int | None) -> int:
    with errors.translated():
        row = conn.execute(
            queries.get("collection_reranker"),
            {"collection": collection, "reranker": None if reranker is None else str(reranker)},
        ).fetchone()
    assert row is not None
    return int(row[0])


def _reordered(
    scorer: rerankers.Reranker, query: str, hits: list[tuple[Key, str]], rerank: int
) -> list[Key]:
    """The top ``rerank`` by the reranker's score (ties keep their order), then the rest."""
    head = hits[:rerank]
    scores = scorer.score(query, [text for _, text in head])
    order = sorted(range(len(head)), key=lambda i: (-float(scores[i]), i))
    return [head[i][0] for i in order] + [key for key, _ in hits[rerank:]]


def _deployed(
    conn: psycopg.Connection, collection: str, vectors: np.ndarray, k: int
) -> list[list[Key]]:
    ranked = []
    for vector in vectors:
        rows = conn.execute(
            queries.get("search_ranked"),
            {
                "collection": collection,
                "query": vector,
                "k": k,
            },
        ).fetchall()
        ranked.append([tuple(pk) for (pk,) in rows])
    return ranked


def _index_settings(conn: psycopg.Connection, collection: str) -> dict[str, Any]:
    row = conn.execute(queries.get("collection_index_settings"), {"name": collection}).fetchone()
    return {"index": row[0] if row else None, "index_options": row[1] if row else {}}


def store_run(
    conn: psycopg.Connection,
    collection: str,
    version: int,
    set_id: int | None,
    kind: str,
    mode: str,
    params: dict[str, Any],
    values: dict[str, float],
    started: dt.datetime,
    *,
    reranker_version_id: int | None = None,
    per_query: tuple[list[int], dict[str, list[float]]] | None = None,
) -> int:
    """One finished evaluation and its metrics ("name@k" labels), in one transaction; with
    ``per_query`` (eval query ids, each label's values in their order) every query's values."""
    with conn.transaction():
        row = conn.execute(
            queries.get("eval_run_record"),
            {
                "collection": collection,
                "version_id": version,
                "set_id": set_id,
                "mode": mode,
                "kind": kind,
                "params": Jsonb(params),
                "started_at": started,
                "reranker_version_id": reranker_version_id,
            },
        ).fetchone()
        assert row is not None
        for label, value in values.items():
            name, _, k = label.partition("@")
            conn.execute(
                queries.get("eval_metric_add"),
                {"run_id": row[0], "metric": name, "k": int(k or 0), "value": value},
            )
        query_ids, per_label = per_query or ([], {})
        for label, per in per_label.items():
            name, _, k = label.partition("@")
            conn.execute(
                queries.get("eval_query_values_add"),
                {
                    "run_id": row[0],
                    "metric": name,
                    "k": int(k or 0),
                    "query_ids": query_ids,
                    "values": per,
                },
            )
    return int(row[0])
