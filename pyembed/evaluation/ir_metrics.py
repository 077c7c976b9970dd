"""Information-retrieval metrics over one ranked list and graded relevance judgments.

``ranked`` is the list of returned ids, best first; ``relevant`` maps ids to a grade (> 0 is
relevant). Gains are linear in the grade and discounts are log2(rank + 1), as trec_eval and
sentence-transformers' InformationRetrievalEvaluator compute them for binary judgments.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

Ranked = Sequence[Any]  # hashable ids
Judged = Mapping[Any, float]


def _hits(ranked: Ranked, relevant: Judged, k: int) -> list[float]:
    return [relevant.get(doc, 0.0) for doc in ranked[:k]]


def _relevant_count(relevant: Judged) -> int:
    return sum(1 for grade in relevant.values() if grade > 0)


def recall_at_k(ranked: Ranked, relevant: Judged, k: int) -> float:
    """Share of the relevant documents found in the top k."""
    total = _relevant_count(relevant)
    return sum(1 for g in _hits(ranked, relevant, k) if g > 0) / total if total else 0.0


def precision_at_k(ranked: Ranked, relevant: Judged, k: int) -> float:
    """Share of the top k that is relevant (k in the denominator, as is usual)."""
    return sum(1 for g in _hits(ranked, relevant, k) if g > 0) / k


def mrr_at_k(ranked: Ranked, relevant: Judged, k: int) -> float:
    """1 / rank of the first relevant document in the top k, else 0."""
    for rank, grade in enumerate(_hits(ranked, relevant, k), start=1):
        if grade > 0:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(ranked: Ranked, relevant: Judged, k: int) -> float:
    """DCG of the top k divided by the DCG of the ideal ordering of the judgments."""
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(_hits(ranked, relevant, k)) if g > 0)
    ideal_grades = sorted((g for g in relevant.values() if g > 0), reverse=True)[:k]
    ideal = sum(g / math.log2(i + 2) for i, g in enumerate(ideal_grades))
    return dcg / ideal if ideal else 0.0


def map_at_k(ranked: Ranked, relevant: Judged, k: int) -> float:
    """Average precision at the ranks of relevant documents in the top k, over min(k, R)."""
    total = min(k, _relevant_count(relevant))
    if not total:
        return 0.0
    found, precisions = 0, 0.0
    for rank, grade in enumerate(_hits(ranked, relevant, k), start=1):
        if grade > 0:
            found += 1
            precisions += found / rank
    return precisions / total


METRICS = {
    "ndcg": ndcg_at_k,
    "mrr": mrr_at_k,
    "recall": recall_at_k,
    "precision": precision_at_k,
    "map": map_at_k,
}


def query_metrics(
    runs: Sequence[tuple[Ranked, Judged]], ks: Sequence[int] = (1, 10)
) -> dict[str, list[float]]:
    """Every metric at every k, per query in order: {"ndcg@10": [q1, q2, ...], ...}."""
    return {
        f"{name}@{k}": [fn(ranked, relevant, k) for ranked, relevant in runs]
        for name, fn in METRICS.items()
        for k in ks
    }


def mean_metrics(
    runs: Sequence[tuple[Ranked, Judged]], ks: Sequence[int] = (1, 10)
) -> dict[str, float]:
    """Every metric at every k, averaged over queries: {"ndcg@10": ..., "recall@1": ...}."""
    if not runs:
        return {}
    return {label: statistics.fmean(v) for label, v in query_metrics(runs, ks).items()}
