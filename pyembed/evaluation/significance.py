"""Whether one evaluation run beats another by more than noise: a paired test on the same queries.

The candidate's and the baseline's per-query values of a metric are paired by eval query. The
p-value is a two-sided randomization (sign-flip) test of the mean difference: under "no
difference" each query's difference is as likely negative as positive. The 95% interval is a
bootstrap over queries. Both use a fixed seed, so the same runs always give the same answer.
"""

from __future__ import annotations

import dataclasses

import numpy as np

ROUNDS = 10_000
_BLOCK = 500
METHOD = f"paired randomization test ({ROUNDS} sign flips), 95% bootstrap interval"


@dataclasses.dataclass(frozen=True)
class Comparison:
    """A paired comparison of two runs on one metric."""

    queries: int
    delta: float  # candidate minus baseline, mean over queries
    ci_low: float
    ci_high: float
    p_value: float


def paired_test(
    candidate: np.ndarray, baseline: np.ndarray, rounds: int = ROUNDS, seed: int = 0
) -> Comparison:
    """Mean difference of paired values with its 95% bootstrap interval and two-sided p-value."""
    diff = np.asarray(candidate, dtype=np.float64) - np.asarray(baseline, dtype=np.float64)
    n = len(diff)
    if n == 0:
        return Comparison(0, 0.0, 0.0, 0.0, 1.0)
    observed = float(diff.mean())
    rng = np.random.default_rng(seed)
    as_extreme = 0
    means = []
    # In blocks: rounds x queries at once would not fit for large eval sets.
    for start in range(0, rounds, _BLOCK):
        size = min(_BLOCK, rounds - start)
        signs = rng.choice((-1.0, 1.0), size=(size, n))
        as_extreme += int(np.sum(np.abs((signs * diff).mean(axis=1)) >= abs(observed) - 1e-12))
        means.append(diff[rng.integers(0, n, size=(size, n))].mean(axis=1))
    # The observed assignment counts as one of the rounds: p is never 0.
    p_value = (as_extreme + 1) / (rounds + 1)
    low, high = np.percentile(np.concatenate(means), [2.5, 97.5])
    return Comparison(n, observed, float(low), float(high), min(p_value, 1.0))


def unpaired_test(
    candidate: np.ndarray, baseline: np.ndarray, rounds: int = ROUNDS, seed: int = 0
) -> Comparison:
    """The same for two independent samples (e.g. the searches two versions served): a
    permutation test of the difference of means, and its bootstrap interval. ``queries`` is
    the smaller sample's size."""
    a = np.asarray(candidate, dtype=np.float64)
    b = np.asarray(baseline, dtype=np.float64)
    if len(a) == 0 or len(b) == 0:
        return Comparison(0, 0.0, 0.0, 0.0, 1.0)
    observed = float(a.mean() - b.mean())
    pooled = np.concatenate([a, b])
    rng = np.random.default_rng(seed)
    as_extreme = 0
    deltas = []
    for start in range(0, rounds, _BLOCK):
        size = min(_BLOCK, rounds - start)
        shuffled = rng.permuted(np.tile(pooled, (size, 1)), axis=1)
        moved = shuffled[:, : len(a)].mean(axis=1) - shuffled[:, len(a) :].mean(axis=1)
        as_extreme += int(np.sum(np.abs(moved) >= abs(observed) - 1e-12))
        deltas.append(
            a[rng.integers(0, len(a), size=(size, len(a)))].mean(axis=1)
            - b[rng.integers(0, len(b), size=(size, len(b)))].mean(axis=1)
        )
    p_value = (as_extreme + 1) / (rounds + 1)
    low, high = np.percentile(np.concatenate(deltas), [2.5, 97.5])
    return Comparison(min(len(a), len(b)), observed, float(low), float(high), min(p_value, 1.0))
