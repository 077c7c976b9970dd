"""Online metrics: how each version does with real users, from the query log and its clicks.

``pyembed.online_metrics`` gives per version the searches it served alone, clicks per search,
the mean reciprocal rank of the best clicked row (0 for a search without a click) and the share
of searches without a click. ``watch`` guards a promotion after the fact: once the new version
has served ``searches`` searches, their reciprocal ranks are compared with the predecessor's
last as many (a permutation test); worse by more than noise rolls the collection back, else the
promotion is kept. Either way the check is a row of ``pyembed.deployments`` (``online_check``).
"""

from __future__ import annotations

import dataclasses
import datetime
import logging

import numpy as np
import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from pyembed import errors
from pyembed.db import database, queries
from pyembed.evaluation import significance
from pyembed.models import switches

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class VersionMetrics:
    """A version's online metrics (a row of pyembed.online_metrics)."""

    collection: str
    model_version_id: int | None
    searches: int
    clicked_searches: int
    clicks_per_search: float
    mrr: float
    no_click_share: float
    first_search_at: datetime.datetime
    last_search_at: datetime.datetime


@dataclasses.dataclass(frozen=True)
class Check:
    """What watching a promotion decided."""

    collection: str
    version_id: int
    predecessor_id: int
    searches: int
    mrr: float
    predecessor_mrr: float
    test: significance.Comparison
    rolled_back: bool

    def describe(self) -> str:
        verb = "rolled back" if self.rolled_back else "kept"
        return (
            f"{verb}: MRR of clicks {self.mrr:.4f} on {self.searches} searches vs "
            f"{self.predecessor_mrr:.4f} of version {self.predecessor_id}, "
            f"p = {self.test.p_value:.4f}"
        )


def metrics(conn: psycopg.Connection, collection: str | None = None) -> list[VersionMetrics]:
    """Online metrics per version (of ``collection``, else all)."""
    with conn.cursor(row_factory=class_row(VersionMetrics)) as cur, errors.translated():
        cur.execute(queries.get("online_metrics"), {"collection": collection})
        return cur.fetchall()


def unjudged(conn: psycopg.Connection, collection: str) -> bool:
    """Whether the promotion that made the active version active awaits its online check."""
    with errors.translated():
        row = conn.execute(queries.get("watched_promotion"), {"collection": collection}).fetchone()
    return row is not None


def _reciprocal_ranks(
    conn: psycopg.Connection,
    collection: str,
    version: int,
    n: int,
    since: datetime.datetime | None = None,
    until: datetime.datetime | None = None,
) -> np.ndarray:
    params = {
        "collection": collection,
        "version": version,
        "n": n,
        "since": since,
        "until": until,
    }
    rows = conn.execute(queries.get("reciprocal_ranks"), params).fetchall()
    return np.array([row[0] for row in rows], dtype=np.float64)


def watch(
    db: database.Database, collection: str, searches: int, alpha: float = 0.05
) -> Check | None:
    """Judge the promotion that made the active version active once it served ``searches``
    searches: roll back when its clicks rank worse than its predecessor's by more than noise.
    None while it has served fewer, or when the promotion was judged already."""
    with db.session() as conn, errors.translated():
        row = conn.execute(queries.get("watched_promotion"), {"collection": collection}).fetchone()
        if row is None:
            return None
        _, predecessor, version, promoted_at = row
        new = _reciprocal_ranks(conn, collection, version, searches, since=promoted_at)
        if len(new) < searches:
            return None
        old = _reciprocal_ranks(conn, collection, predecessor, searches, until=promoted_at)
        test = significance.unpaired_test(new, old)
        worse = test.delta < 0 and test.p_value < alpha
        check = Check(
            collection,
            version,
            predecessor,
            len(new),
            float(new.mean()),
            float(old.mean()) if len(old) else 0.0,
            test,
            worse and len(old) > 0,
        )
        conn.execute(
            queries.get("record_online_check"),
            {
                "collection": collection,
                "version": version,
                "predecessor": predecessor,
                "metrics": Jsonb(
                    {
                        "searches": check.searches,
                        "predecessor_searches": len(old),
                        "mrr": check.mrr,
                        "predecessor_mrr": check.predecessor_mrr,
                        **dataclasses.asdict(test),
                        "rolled_back": check.rolled_back,
                    }
                ),
                "reason": check.describe(),
            },
        )
    if check.rolled_back:
        switches.rollback(db, collection, reason=f"online metrics: {check.describe()}")
    logger.info("%s: version %s %s", collection, version, check.describe())
    return check
