"""Canaries: a candidate version served beside the active one on live traffic, judged by clicks.

``start`` readies the candidate like a promotion does (through the offline gate when asked; the
switch begun, its backfill embedded, its store indexed like the active one) and leaves the switch
pending while ``pyembed.start_canary`` opens the canary. From then on a search that brings the
query embedded by the candidate too (``candidate_query``; ``pyembed.canary_version`` names the
version, the text form of pyembed.search and the Python client do it themselves) is interleaved
by team draft, or served wholly by one version in a split. ``pyembed.canary_status`` scores it
(wins, losses and ties with a sign test; per-arm MRR with a z-test) and gives a verdict;
``decide`` acts on it: promoted finishes the switch, rejected or inconclusive aborts it.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from pyembed import errors
from pyembed.db import database, queries
from pyembed.models import switches

logger = logging.getLogger(__name__)

MODES = ("interleave", "split")
REQUIREMENTS = ("better", "not_worse")
DECISIONS = {"candidate": "promoted", "baseline": "rejected", "inconclusive": "inconclusive"}


@dataclasses.dataclass(frozen=True)
class Settings:
    """How a canary runs and when it is decided."""

    mode: str = "interleave"
    share: float = 0.5  # split: the share of searches the candidate serves
    min_searches: int = 200  # judged searches before a verdict may be given
    max_searches: int = 2000  # judged searches after which no verdict is inconclusive
    alpha: float = 0.05
    # better: promoted only when users prefer it by more than noise. not_worse: promoted at
    # min_searches unless they prefer the active version so: for a candidate that already
    # passed the offline gate, the canary guards against what users see worse.
    require: str = "better"


@dataclasses.dataclass(frozen=True)
class Canary:
    """A canary and its score (a row of pyembed.canary_status)."""

    collection: str
    canary_id: int
    candidate_version_id: int
    baseline_version_id: int
    mode: str
    share: float
    min_searches: int
    max_searches: int
    alpha: float
    started_at: datetime.datetime
    ended_at: datetime.datetime | None
    decision: str | None
    decision_reason: str | None
    searches: int
    judged: int
    candidate_wins: int
    baseline_wins: int
    ties: int
    candidate_searches: int
    baseline_searches: int
    candidate_mrr: float | None
    baseline_mrr: float | None
    p_value: float | None
    verdict: str
    require: str = "better"

    def score(self) -> str:
        """The score in words, for logs, the CLI and decision reasons."""
        p = "?" if self.p_value is None else f"{self.p_value:.4f}"
        if self.mode == "interleave":
            return (
                f"{self.candidate_wins} wins, {self.baseline_wins} losses, {self.ties} ties "
                f"in {self.judged} clicked of {self.searches} searches, p = {p}"
            )
        return (
            f"MRR {_number(self.candidate_mrr)} ({self.candidate_searches} searches) vs "
            f"{_number(self.baseline_mrr)} ({self.baseline_searches}), p = {p}"
        )

    def metrics(self) -> dict[str, Any]:
        """The figures the decision rests on, for the canary's and the deployment's rows."""
        keys = ("searches", "judged", "candidate_wins", "baseline_wins", "ties", "p_value")
        split = ("candidate_searches", "baseline_searches", "candidate_mrr", "baseline_mrr")
        chosen = keys + (split if self.mode == "split" else ())
        return {
            "mode": self.mode,
            "require": self.require,
            **{key: getattr(self, key) for key in chosen},
        }


def _number(value: float | None) -> str:
    return "?" if value is None else f"{value:.4f}"


def status(
    conn: psycopg.Connection,
    collection: str | None = None,
    *,
    open_only: bool = False,
    limit: int = 20,
) -> list[Canary]:
    """Canaries (of ``collection``, else all), newest first, with their scores."""
    params = {"collection": collection, "open_only": open_only, "limit": limit}
    with conn.cursor(row_factory=class_row(Canary)) as cur, errors.translated():
        cur.execute(queries.get("canary_status"), params)
        return cur.fetchall()


def running(conn: psycopg.Connection, collection: str) -> Canary | None:
    """The collection's open canary, or None."""
    found = status(conn, collection, open_only=True, limit=1)
    return found[0] if found else None


def start(
    db: database.Database,
    collection: str,
    version_id: int,
    settings: Settings | None = None,
    *,
    when_better_than_active: bool = False,
    gate_sets: Sequence[str] = (),
    reason: str = "",
    timeout: float | None = None,
) -> tuple[int, switches.Promotion]:
    """Ready ``version_id`` beside the active version and open its canary; returns the
    canary's id and what readying did (the gate's comparison with ``when_better_than_active``)."""
    settings = settings or Settings()
    if settings.mode not in MODES:
        raise errors.ConfigError(
            f"a canary's mode is one of {', '.join(MODES)}, not {settings.mode!r}",
            hint="interleave compares on every search; split serves a share by the candidate",
        )
    if settings.require not in REQUIREMENTS:
        raise errors.ConfigError(
            f"a canary requires one of {', '.join(REQUIREMENTS)}, not {settings.require!r}",
            hint="better: users must prefer the candidate; not_worse: they must not prefer the "
            "active version",
        )
    with db.session() as conn:
        if running(conn, collection) is not None:
            raise errors.PyembedError(
                f"collection {collection!r} already runs a canary",
                hint=f"see `pyembed canary status {collection}`, or end it: "
                f"pyembed canary end {collection} --abort",
            )
    ready = switches.promote(
        db,
        collection,
        version_id,
        when_better_than_active=when_better_than_active,
        reason=reason,
        timeout=timeout,
        gate_sets=gate_sets,
        finish=False,
    )
    try:
        with db.session() as conn, errors.translated():
            row = conn.execute(
                queries.get("start_canary"),
                {
                    "collection": collection,
                    "version": version_id,
                    "mode": settings.mode,
                    "share": settings.share,
                    "min_searches": settings.min_searches,
                    "max_searches": settings.max_searches,
                    "alpha": settings.alpha,
                    "reason": reason,
                    "require": settings.require,
                },
            ).fetchone()
    except errors.PyembedError:
        # A switch readied for a canary that did not open would block every other switch.
        switches.abort(db, collection, reason="the canary could not start")
        raise
    assert row is not None
    logger.info(
        "%s: canary %s of version %s (%s) is on live traffic",
        collection,
        row[0],
        version_id,
        settings.mode,
    )
    return int(row[0]), ready


def end(
    db: database.Database,
    collection: str,
    decision: str,
    reason: str = "",
    metrics: dict[str, Any] | None = None,
) -> int:
    """End the open canary: ``promoted`` finishes its switch, ``rejected``, ``inconclusive``
    or ``aborted`` abort it. Returns the canary's id."""
    with db.session() as conn, errors.translated():
        row = conn.execute(
            queries.get("end_canary"),
            {
                "collection": collection,
                "decision": decision,
                "reason": reason,
                "metrics": Jsonb(metrics or {}),
            },
        ).fetchone()
    assert row is not None
    return int(row[0])


def decide(db: database.Database, collection: str) -> Canary | None:
    """Act on the open canary's verdict once it has one: promote a candidate that won by more
    than noise, reject one that lost, give up at max_searches. The canary as it was decided,
    or None while it runs on (or none runs)."""
    with db.session() as conn:
        canary = running(conn, collection)
    if canary is None or canary.verdict not in DECISIONS:
        return None
    decision = DECISIONS[canary.verdict]
    end(db, collection, decision, canary.score(), canary.metrics())
    logger.info(
        "%s: canary %s of version %s %s: %s",
        collection,
        canary.canary_id,
        canary.candidate_version_id,
        decision,
        canary.score(),
    )
    return dataclasses.replace(canary, decision=decision, decision_reason=canary.score())
