"""Blue/green model switches: promote a version beside the live one, flip, roll back.

``promote`` starts the switch in SQL (pyembed.begin_switch: the new store, a low-priority
backfill), embeds the backfill (in this process, alongside any running workers), builds the new
store's index the way the live one is indexed, and flips the collection in one transaction
(pyembed.finish_switch). Searches answer from the old version until that commit and from the new
one right after it. With ``when_better_than_active`` it first asks the gate: the latest
evaluations of both versions on the same eval set, compared on the collection's metric by a
paired test on their per-query values: the candidate passes when it is better with a p-value
below the collection's gate_p_value (default 0.05).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from pyembed import errors
from pyembed.db import database, queries
from pyembed.evaluation import comparisons, significance
from pyembed.ingest import worker
from pyembed.search import indexes, stores

logger = logging.getLogger(__name__)

DEFAULT_GATE_METRIC = "ndcg@10"
DEFAULT_GATE_P_VALUE = 0.05


@dataclasses.dataclass(frozen=True)
class GateResult:
    """The comparison the promotion gate made."""

    metric: str
    eval_set_id: int
    candidate: float
    active: float
    mode: str = "exact"
    test: significance.Comparison | None = None
    alpha: float = DEFAULT_GATE_P_VALUE

    @property
    def passed(self) -> bool:
        """Better, and by more than noise: the paired test's p-value below the gate's."""
        significant = self.test is not None and self.test.p_value < self.alpha
        return self.candidate > self.active and significant

    def as_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "eval_set_id": self.eval_set_id,
            "candidate": self.candidate,
            "active": self.active,
            "mode": self.mode,
            "alpha": self.alpha,
            **(dataclasses.asdict(self.test) if self.test else {}),
        }


@dataclasses.dataclass(frozen=True)
class Promotion:
    """What a promotion did."""

    collection: str
    from_version_id: int | None
    to_version_id: int
    backfilled: int
    seconds: float
    index: str | None
    gate: GateResult | None


def gate_mode(conn: psycopg.Connection, collection: str) -> str:
    """What the gate compares (settings->>'gate_mode'): ``exact``, the model alone (default),
    or ``reranked``, the model's top candidates reordered by the collection's reranker."""
    return _gate_settings(conn, collection)[1] or "exact"


def _gate_settings(
    conn: psycopg.Connection, collection: str
) -> tuple[str | None, str | None, str | None]:
    row = conn.execute(queries.get("collection_gate_metric"), {"name": collection}).fetchone()
    if row is None:
        raise errors.CollectionError(f"collection {collection!r} does not exist")
    return row[0], row[1], row[2]


def gate_metric(conn: psycopg.Connection, collection: str) -> tuple[str, int]:
    """The collection's gate metric (settings->>'gate_metric', default ndcg@10) as (name, k)."""
    text = _gate_settings(conn, collection)[0] or DEFAULT_GATE_METRIC
    name, _, k = text.partition("@")
    if not name or (k and not k.isdigit()):
        raise errors.ConfigError(
            f"gate_metric {text!r} of {collection!r} is not METRIC@K or METRIC",
            hint='e.g. pyembed.alter_collection(name, settings => \'{"gate_metric": "mrr@10"}\')',
        )
    return name, int(k or 0)


def gate(
    conn: psycopg.Connection, collection: str, candidate: int, eval_sets: Sequence[str] = ()
) -> GateResult:
    """Compare the candidate with the active version on a shared evaluation: on the first of
    ``eval_sets`` both were measured on, or else on judgments the active model did not shape
    before the held-out clicks of training runs."""
    metric, k = gate_metric(conn, collection)
    mode = gate_mode(conn, collection)
    label = f"{metric}@{k}" if k else metric
    row = conn.execute(
        queries.get("gate_comparison"),
        {
            "name": collection,
            "candidate": candidate,
            "metric": metric,
            "k": k,
            "mode": mode,
            "sets": list(eval_sets),
        },
    ).fetchone()
    if row is None:
        same = " with the same reranker" if mode == "reranked" else ""
        sets = f" among {', '.join(map(repr, eval_sets))}" if eval_sets else ""
        raise errors.PyembedError(
            f"no {mode} evaluation on {label} of both model version {candidate} and the active "
            f"version of {collection!r} on the same eval set{sets}{same}",
            hint=f"evaluate both first (pyembed eval {collection} --version V --mode {mode}), "
            "or promote without --when-better-than-active",
        )
    test = comparisons.compare(conn, int(row[3]), int(row[4]), metric, k)
    if test is None:
        raise errors.PyembedError(
            f"the {mode} evaluations of model version {candidate} and the active version of "
            f"{collection!r} kept no per-query values (evaluated before schema 0018), so the "
            "gate cannot test the difference against noise",
            hint=f"evaluate both again: pyembed eval {collection} --version V --mode {mode}",
        )
    alpha = float(_gate_settings(conn, collection)[2] or DEFAULT_GATE_P_VALUE)
    return GateResult(label, int(row[0]), float(row[1]), float(row[2]), mode, test, alpha)


def promote(
    db: database.Database,
    collection: str,
    version_id: int,
    *,
    when_better_than_active: bool = False,
    allow_other_model: bool = False,
    embed: bool = True,
    reason: str = "",
    timeout: float | None = None,
    poll_seconds: float = 1.0,
    gate_sets: Sequence[str] = (),
    finish: bool = True,
) -> Promotion:
    """Switch ``collection`` to ``version_id`` without interrupting its searches (through the
    gate first with ``when_better_than_active``, on ``gate_sets`` when given). With ``finish``
    False the switch is left pending and ready to finish: embedded and indexed (for a canary)."""
    started = time.monotonic()
    with db.session() as conn:
        checked = gate(conn, collection, version_id, gate_sets) if when_better_than_active else None
        if checked is not None and not checked.passed:
            raise errors.PyembedError(
                f"model version {version_id} does not beat the active version of {collection!r} "
                f"on {checked.metric} ({checked.mode}): {checked.candidate:.4f} vs "
                f"{checked.active:.4f}, p = {p_text(checked)} (gate: below {checked.alpha}) "
                f"(eval set {checked.eval_set_id}); nothing was changed",
                hint="train or pick a better version, or promote without the gate",
            )
        before = conn.execute(queries.get("collection_versions"), {"name": collection}).fetchone()
        if before is None:
            raise errors.CollectionError(f"collection {collection!r} does not exist")
        if before[1] == version_id:
            backfilled = 0  # a switch to this version is pending already: see it through
        else:
            queued = conn.execute(
                queries.get("begin_switch"),
                {
                    "name": collection,
                    "version": version_id,
                    "allow": allow_other_model,
                    "reason": reason,
                },
            ).fetchone()
            backfilled = int(queued[0]) if queued else 0
        logger.info(
            "%s: switching to model version %s, %d rows to embed",
            collection,
            version_id,
            backfilled,
        )
        try:
            _wait_for_backfill(db, conn, collection, embed, started, timeout, poll_seconds)
            index = _index_like_active(db, conn, collection, version_id)
        except BaseException:
            logger.warning(
                "%s: the switch to version %s stays pending; promote again to finish it, or "
                "abort it with pyembed.abort_switch",
                collection,
                version_id,
            )
            raise
        if not finish:
            return Promotion(
                collection,
                before[0],
                version_id,
                backfilled,
                time.monotonic() - started,
                index,
                checked,
            )
        conn.execute(
            queries.get("finish_switch"),
            {
                "name": collection,
                "reason": reason,
                "metrics": Jsonb(checked.as_json() if checked else {}),
            },
        )
    seconds = time.monotonic() - started
    logger.info("%s: model version %s is active (%.1f s)", collection, version_id, seconds)
    return Promotion(collection, before[0], version_id, backfilled, seconds, index, checked)


def p_text(checked: GateResult) -> str:
    """The gate's p-value for a message."""
    return f"{checked.test.p_value:.4f}" if checked.test else "?"


def _wait_for_backfill(
    db: database.Database,
    conn: psycopg.Connection,
    collection: str,
    embed: bool,
    started: float,
    timeout: float | None,
    poll_seconds: float,
) -> None:
    while True:
        if embed:
            worker.Worker(db, worker.WorkerOptions(collections=[collection], once=True)).run()
        row = conn.execute(queries.get("switch_backlog"), {"name": collection}).fetchone()
        if not row or row[0] == 0:
            return
        if timeout is not None and time.monotonic() - started > timeout:
            raise errors.PyembedError(
                f"{collection}: {row[0]} rows still wait to be embedded after {timeout:.0f} s",
                hint="start workers (pyembed worker), then promote again to finish the switch",
            )
        time.sleep(poll_seconds)


def _index_like_active(
    db: database.Database, conn: psycopg.Connection, collection: str, version_id: int
) -> str | None:
    """Build the pending store's ANN index with the active store's method and parameters."""
    active = stores.store_of(conn, collection)
    built = stores.list_indexes(conn, active.store)
    if not built:
        return None
    method, params = built[0]["method"], dict(built[0]["params"] or {})
    result = indexes.create(db, collection, method=method, version_id=version_id, **params)
    return result.index


def rollback(db: database.Database, collection: str, reason: str = "") -> int:
    """Make the previous version active again at once; returns its id."""
    with db.session() as conn:
        row = conn.execute(
            queries.get("rollback"), {"name": collection, "reason": reason}
        ).fetchone()
    assert row is not None
    return int(row[0])


def abort(db: database.Database, collection: str, reason: str = "") -> None:
    """Give up a pending switch: its store and backfill go, the active version stays."""
    with db.session() as conn:
        conn.execute(queries.get("abort_switch"), {"name": collection, "reason": reason})
