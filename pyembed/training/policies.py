"""Learning policies: a collection trains by itself once enough new feedback came in.

A policy (``pyembed.learning_policies``, set with ``pyembed.set_learning_policy``) says when a
run is due (``pyembed.learning_status``: enough feedback since the last finished run, and its
interval passed), how it trains, which eval sets gate the result, and what happens after: it is
kept, promoted through the gate, or put on live traffic as a canary first; and whether a
promoted version's online metrics are watched. The learner (``learner``) carries policies out.
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
from pyembed.db import queries
from pyembed.models import canaries
from pyembed.training import options as train_options

logger = logging.getLogger(__name__)

# Policy options that go to TrainOptions; the others choose the pairs mined from the log.
_TRAIN_KEYS = (
    "loss",
    "epochs",
    "batch_size",
    "learning_rate",
    "warmup_ratio",
    "max_seq_length",
    "mini_batch_size",
)

# What a policy trains with unless its train_options say otherwise (benchmarks/finetune.py on
# the WordNet log: the log's hard negatives gain 5.6 points of NDCG@10 over in-batch negatives;
# under the cached loss they peak at 1.65 GiB where plain MNRL with them needs 5.25; 1.75 times
# the time, which a background run can spend).
DEFAULTS: dict[str, Any] = {"loss": "cached_mnrl", "negatives": True, "mini_batch_size": 16}


@dataclasses.dataclass(frozen=True)
class Policy:
    """A collection's learning policy and where it stands (a row of pyembed.learning_status)."""

    collection: str
    enabled: bool
    min_feedback: int
    min_interval: datetime.timedelta
    train_options: dict[str, Any]
    eval_sets: list[str]
    after_training: str
    new_feedback: int
    due: bool
    next_run_not_before: datetime.datetime | None
    last_run_id: int | None
    last_run_status: str | None
    last_outcome: str | None
    last_outcome_reason: str | None
    canary_mode: str = "interleave"
    canary_min_searches: int = 200
    canary_max_searches: int = 2000
    watch_searches: int = 0
    canary_require: str = "not_worse"

    def canary(self) -> canaries.Settings | None:
        """How a result goes on live traffic first (after_training 'canary'), else None."""
        if self.after_training != "canary":
            return None
        return canaries.Settings(
            mode=self.canary_mode,
            min_searches=self.canary_min_searches,
            max_searches=self.canary_max_searches,
            require=self.canary_require,
        )


def status(conn: psycopg.Connection, collections: Sequence[str] | None = None) -> list[Policy]:
    """The policies (of ``collections``, else all) and whether each is due."""
    with conn.cursor(row_factory=class_row(Policy)) as cur, errors.translated():
        cur.execute(
            queries.get("learning_status"), {"collections": list(collections or []) or None}
        )
        return cur.fetchall()


def set_policy(
    conn: psycopg.Connection,
    collection: str,
    *,
    min_feedback: int | None = None,
    min_interval: datetime.timedelta | str | None = None,
    train_options: dict[str, Any] | None = None,
    eval_sets: Sequence[str] | None = None,
    after_training: str | None = None,
    enabled: bool | None = None,
    canary_mode: str | None = None,
    canary_min_searches: int | None = None,
    canary_max_searches: int | None = None,
    watch_searches: int | None = None,
    canary_require: str | None = None,
) -> Policy:
    """Set or change the collection's policy (None keeps a value; ``min_interval`` may be
    PostgreSQL interval text such as ``'30 minutes'``); the policy as it stands."""
    with errors.translated():
        conn.execute(
            queries.get("set_learning_policy"),
            {
                "collection": collection,
                "min_feedback": min_feedback,
                "min_interval": min_interval,
                "train_options": None if train_options is None else Jsonb(train_options),
                "eval_sets": None if eval_sets is None else list(eval_sets),
                "after_training": after_training,
                "enabled": enabled,
                "canary_mode": canary_mode,
                "canary_min_searches": canary_min_searches,
                "canary_max_searches": canary_max_searches,
                "watch_searches": watch_searches,
                "canary_require": canary_require,
            },
        )
    return status(conn, [collection])[0]


def drop_policy(conn: psycopg.Connection, collection: str) -> bool:
    """Remove the collection's policy (its runs stay recorded); False when it had none."""
    with errors.translated():
        row = conn.execute(queries.get("drop_learning_policy"), {"collection": collection})
        found = row.fetchone()
    return bool(found and found[0])


def training_setup(policy: Policy) -> tuple[train_options.TrainOptions, dict[str, Any]]:
    """The policy's training options over DEFAULTS, and how to mine its pairs
    (sources.from_feedback)."""
    chosen = DEFAULTS | policy.train_options
    opts = train_options.TrainOptions(
        **{key: chosen[key] for key in _TRAIN_KEYS if key in chosen},
        use_negatives=bool(chosen["negatives"]),
    )
    mining: dict[str, Any] = {"negatives_per_pair": 1 if opts.use_negatives else 0}
    if "min_signals" in chosen:
        mining["min_signals"] = int(chosen["min_signals"])
    if "held_out" in chosen:
        mining["held_out_fraction"] = float(chosen["held_out"])
    return opts, mining
