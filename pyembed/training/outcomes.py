"""After a training run: both versions measured on the same queries, then the gate's decision
(kept, refused, promoted or on a canary) recorded with its reason on the run's row."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pyembed import errors
from pyembed.db import database, queries
from pyembed.evaluation import comparisons, retrieval
from pyembed.models import canaries, switches
from pyembed.training import run_rows

logger = logging.getLogger(__name__)


def record(db: database.Database, run_id: int, outcome: str, reason: str) -> None:
    with db.session() as conn:
        params = {"id": run_id, "outcome": outcome, "reason": reason}
        conn.execute(queries.get("training_run_outcome"), params)


def decide(
    db: database.Database,
    collection: str,
    run_id: int,
    version_id: int,
    promote_if_better: bool,
    set_id: int | None,
    gate_sets: Sequence[str],
    canary: canaries.Settings | None,
    *,
    other_model: bool,
) -> tuple[str, str]:
    """Offer the new version to the gate when asked, then promote it or open its canary:
    (outcome, reason) for the run's row."""
    if not promote_if_better:
        return "kept", "not offered for promotion"
    if set_id is None and not gate_sets:
        return "kept", "no held-out queries or eval sets to gate on"
    reason = f"training run {run_id}"
    try:
        if canary is not None:
            canary_id, ready = canaries.start(
                db,
                collection,
                version_id,
                canary,
                when_better_than_active=True,
                gate_sets=gate_sets,
                reason=reason,
            )
            checked = ready.gate
        else:
            checked = switches.promote(
                db,
                collection,
                version_id,
                when_better_than_active=True,
                allow_other_model=other_model,
                reason=reason,
                gate_sets=gate_sets,
            ).gate
    except errors.PyembedError as exc:
        logger.info("not promoted: %s", exc.message)
        return "refused", exc.message
    assert checked is not None
    offline = (
        f"{checked.metric} {checked.candidate:.4f} vs {checked.active:.4f} on eval set "
        f"{checked.eval_set_id}, p = {switches.p_text(checked)}"
    )
    if canary is not None:
        return "canary", f"{offline}; canary {canary_id} ({canary.mode}) on live traffic"
    return "promoted", offline


def evaluate(
    db: database.Database,
    collection: str,
    set_id: int | None,
    base: int,
    new: int,
    gate_sets: Sequence[str],
) -> tuple[dict[str, float], dict[str, float]]:
    """Both versions on the held-out set and on ``gate_sets``, the model alone and, when the
    collection's gate compares reranked pipelines, reranked too (the gate reads these rows).
    The metrics returned are the held-out set's (else the first gate set's)."""
    with db.session() as conn:
        mode = switches.gate_mode(conn, collection)
        metric, k = switches.gate_metric(conn, collection)
        held_out = conn.execute(queries.get("eval_set_name"), {"id": set_id}).fetchone()
        active = run_rows.collection_model(conn, collection)[0]
    names = [str(held_out[0])] if held_out else []
    names += [name for name in gate_sets if name not in names]
    modes = ("exact", "reranked") if mode == "reranked" else ("exact",)
    results: dict[int, dict[str, float]] = {base: {}, new: {}}
    for position, name in enumerate(names):
        done = {
            version: retrieval.evaluate(
                db, collection, version_id=version, eval_set=name, modes=modes, ks=(1, 10)
            )
            # The gate compares with the active version: measured too when training began
            # from another (a local model for an endpoint's collection).
            for version in dict.fromkeys((base, new, active))
        }
        if position == 0:
            results = {version: runs[0].metrics for version, runs in done.items()}
        # The paired test of the difference, per mode (eval_vs_parent shows it; the gate redoes
        # it against whatever is active then).
        with db.session() as conn:
            for ours, theirs in zip(done[new], done[base], strict=True):
                comparisons.compare(conn, ours.run_id, theirs.run_id, metric, k)
    return results[base], results[new]
