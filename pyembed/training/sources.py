"""Training pairs from the database and elsewhere, split before training.

Sources, one pipeline: the query log with its feedback (positives: rows users clicked, bought or
judged relevant, weighted by signal; hard negatives: rows the search showed above the chosen one
that got no positive signal), a JSONL file of pairs, and synthetic pairs drawn from the
collection itself (title -> body, adjacent chunks) for a collection without traffic yet.
Queries are split into train and held-out **before** training; the held-out queries keep their
graded judgments for the eval set every later version is measured on.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from pyembed import errors
from pyembed.db import queries

logger = logging.getLogger(__name__)

Key = tuple[Any, ...]


@dataclasses.dataclass(frozen=True)
class Pair:
    """A query with a text that answers it, and texts that do not (hard negatives)."""

    query: str
    positive: str
    negatives: tuple[str, ...] = ()
    weight: float = 1.0


@dataclasses.dataclass
class TrainingData:
    """Pairs to train on, held-out judged queries, and what went into them."""

    pairs: list[Pair]
    held_out: list[tuple[str, dict[Key, float]]]
    summary: dict[str, Any]


def from_feedback(
    conn: psycopg.Connection,
    collection: str,
    *,
    min_signals: int = 1,
    negatives_per_pair: int = 1,
    held_out_fraction: float = 0.1,
    min_pairs: int = 20,
    seed: int = 0,
) -> TrainingData:
    """Pairs mined from pyembed.feedback on logged searches of the collection."""
    evidence: dict[str, dict[Key, list[float]]] = defaultdict(lambda: defaultdict(list))
    query_ids: dict[int, str] = {}
    for query_id, text, pk, weight in conn.execute(
        queries.get("feedback_for_training"), {"collection": collection}
    ):
        query_ids[query_id] = text
        evidence[text][tuple(pk)].append(float(weight))
    positives = {
        text: {key: sum(ws) for key, ws in rows.items() if sum(ws) > 0 and len(ws) >= min_signals}
        for text, rows in evidence.items()
    }
    positives = {text: rows for text, rows in positives.items() if rows}
    if len(positives) < min_pairs:
        raise errors.PyembedError(
            f"collection {collection!r} has {len(positives)} searches with enough feedback to "
            f"learn from; at least {min_pairs} are needed",
            hint="record clicks with pyembed.record_feedback(query_id, pk) on searches that "
            "passed query_text, or train from --pairs FILE.jsonl or --synthetic",
        )
    shown: dict[str, list[tuple[int, Key]]] = defaultdict(list)
    for query_id, rank, pk in conn.execute(
        queries.get("results_for_training"), {"ids": list(query_ids)}
    ):
        shown[query_ids[query_id]].append((rank, tuple(pk)))
    texts = _row_texts(conn, collection, positives, shown)
    texts_missing = sum(1 for rows in positives.values() for key in rows if key not in texts)

    ordered = sorted(positives)
    random.Random(seed).shuffle(ordered)
    held = set(ordered[: round(len(ordered) * held_out_fraction)])
    pairs: list[Pair] = []
    for text in ordered:
        if text in held:
            continue
        liked = positives[text]
        for key, weight in sorted(liked.items(), key=lambda kv: -kv[1]):
            if key not in texts:
                continue  # the row was deleted since it was clicked
            best_rank = min((r for r, k in shown[text] if k == key), default=None)
            above = sorted(
                {
                    (r, k)
                    for r, k in shown[text]
                    if best_rank is not None and r < best_rank and k not in liked
                }
            )
            negatives = tuple(texts[k] for _, k in above if k in texts)[:negatives_per_pair]
            pairs.append(Pair(text, texts[key], negatives, weight))
    held_out = [(text, positives[text]) for text in ordered if text in held]
    summary = {
        "source": "feedback",
        "queries_with_feedback": len(positives),
        "train_queries": len(ordered) - len(held),
        "held_out_queries": len(held),
        "pairs": len(pairs),
        "pairs_with_negatives": sum(1 for p in pairs if p.negatives),
        "clicked_rows_deleted": texts_missing,
        "min_signals": min_signals,
        "ignored_queries": len(evidence) - len(positives),
    }
    logger.info("mined %d pairs from feedback (%d held-out queries)", len(pairs), len(held))
    return TrainingData(pairs, held_out, summary)


def _row_texts(conn: psycopg.Connection, collection: str, *groups: Any) -> dict[Key, str]:
    keys: set[Key] = set()
    for group in groups:
        for rows in group.values():
            keys.update(rows if isinstance(rows, dict) else (k for _, k in rows))
    texts: dict[Key, str] = {}
    for pk, body, exists in conn.execute(
        queries.get("source_rows"),
        {"collection": collection, "keys": Jsonb([list(k) for k in keys])},
    ):
        if exists and body:
            texts[tuple(pk)] = body
    return texts


def from_jsonl(path: Path, *, on_error: str = "stop") -> TrainingData:
    """Pairs from a JSONL file: {"query", "positive"[, "negative"][, "score"]} per line
    (anchor/positive/negative and question/answer are understood too)."""
    pairs: list[Pair] = []
    skipped: list[int] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise errors.ConfigError(f"cannot read {path}: {exc}") from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            query = row.get("query") or row.get("anchor") or row.get("question")
            positive = row.get("positive") or row.get("answer")
            negative = row.get("negative")
            if (
                not isinstance(query, str)
                or not isinstance(positive, str)
                or not query
                or not positive
            ):
                raise ValueError("needs non-empty strings 'query' and 'positive'")
            negatives = (negative,) if isinstance(negative, str) and negative else ()
            pairs.append(Pair(query, positive, negatives, float(row.get("score", 1.0))))
        except (ValueError, AttributeError, TypeError) as exc:
            if on_error == "stop":
                raise errors.ConfigError(
                    f"{path}, line {number}: {exc}",
                    hint="fix the line, or pass --on-bad-line skip to leave such lines out",
                ) from exc
            skipped.append(number)
    if skipped:
        logger.warning("%s: skipped %d bad lines (first: %s)", path, len(skipped), skipped[:5])
    if not pairs:
        raise errors.ConfigError(f"{path} holds no usable pairs")
    summary = {
        "source": "jsonl",
        "file": str(path),
        "pairs": len(pairs),
        "pairs_with_negatives": sum(1 for p in pairs if p.negatives),
        "skipped_lines": skipped[:100],
    }
    return TrainingData(pairs, [], summary)


def synthetic(
    conn: psycopg.Connection, collection: str, *, limit: int = 20_000, seed: int = 0
) -> TrainingData:
    """Pairs drawn from the collection's own text: its first text column against the rest
    (title -> body), else consecutive paragraphs of a row."""
    pairs: list[Pair] = []
    for _pk, body in conn.execute(queries.get("source_texts"), {"collection": collection}):
        parts = [part.strip() for part in body.split("\n\n") if part.strip()]
        if len(parts) >= 2:
            pairs.append(Pair(parts[0], "\n\n".join(parts[1:])))
            pairs.extend(Pair(a, b) for a, b in itertools.pairwise(parts[1:]))
    if not pairs:
        raise errors.PyembedError(
            f"collection {collection!r} has no rows with two or more text parts to pair",
            hint="synthetic pairs need title/body columns (text_columns => ARRAY['title', "
            "'body']) or texts with paragraphs; otherwise train from feedback or a JSONL file",
        )
    random.Random(seed).shuffle(pairs)
    pairs = pairs[:limit]
    return TrainingData(pairs, [], {"source": "synthetic", "pairs": len(pairs)})
