"""Paired comparisons of two evaluation runs, stored in pyembed.eval_comparisons."""

from __future__ import annotations

import numpy as np
import psycopg

from pyembed.db import queries
from pyembed.evaluation import significance


def compare(
    conn: psycopg.Connection, candidate_run: int, baseline_run: int, metric: str, k: int
) -> significance.Comparison | None:
    """The paired test of ``metric@k`` between two runs on their shared queries, stored; None
    when either run kept no per-query values (runs evaluated before 0018)."""
    params = {"candidate": candidate_run, "baseline": baseline_run, "metric": metric, "k": k}
    found = conn.execute(queries.get("eval_query_values_exist"), params).fetchone()
    if found is None or found[0] < 2:
        return None
    rows = conn.execute(queries.get("eval_query_values_get"), params).fetchall()
    result = significance.paired_test(
        np.array([r[1] for r in rows], dtype=np.float64),
        np.array([r[2] for r in rows], dtype=np.float64),
    )
    conn.execute(
        queries.get("eval_comparison_save"),
        {
            **params,
            "queries": result.queries,
            "delta": result.delta,
            "ci_low": result.ci_low,
            "ci_high": result.ci_high,
            "p_value": result.p_value,
            "method": significance.METHOD,
        },
    )
    return result
