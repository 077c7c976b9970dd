"""Blue/green switches: promote beside the live store, flip, roll back, retire, gate."""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from pgvector.psycopg import register_vector

from pyembed import errors
from pyembed.db import database
from pyembed.models import loading, registry, switches
from pyembed.search import indexes
from tests import switch_fixtures
from tests.conftest import PACKAGE
from tests.helpers import embed, run_worker


def versions(db: psycopg.Connection) -> tuple[int, int | None]:
    row = db.execute(
        "SELECT active_version_id, pending_version_id FROM pyembed.collections WHERE name = 'docs'"
    ).fetchone()
    assert row is not None
    return row


def history(db: psycopg.Connection) -> list[tuple[str, int | None, int | None]]:
    return db.execute(
        "SELECT action, from_version_id, to_version_id FROM pyembed.deployments ORDER BY id"
    ).fetchall()


def test_promote_builds_beside_the_live_store_then_flips(
    docs: psycopg.Connection, db_dsn: str
) -> None:
    indexes.create(database.Database(db_dsn), "docs", m=8, recall_queries=5)
    v2 = registry.register(database.Database(db_dsn), "all-MiniLM-L6-v2", PACKAGE)
    done = switches.promote(
        database.Database(db_dsn), "docs", v2.id, reason="same weights, new version"
    )
    rows = len(switch_fixtures.DOCS)
    assert (done.from_version_id, done.to_version_id, done.backfilled) == (1, v2.id, rows)
    assert done.index == f"docs_v{v2.id}_hnsw"
    assert versions(docs) == (v2.id, None)
    assert docs.execute(f"SELECT count(*) FROM pyembed_store.docs_v{v2.id}").fetchone() == (20,)  # noqa: S608
    assert history(docs) == [("switch_started", 1, v2.id), ("promote", 1, v2.id)]
    # The chunk view and the searches read the new store; the old one is kept for a rollback.
    rows = docs.execute(
        "SELECT pk FROM pyembed.search('docs', %s, 1)", (embed(docs, "harbours")[0],)
    ).fetchall()
    assert rows[0][0][0] % 4 == 1
    assert docs.execute("SELECT to_regclass('pyembed_store.docs_v1')").fetchone() == (
        "pyembed_store.docs_v1",
    )
    logged = docs.execute("SELECT model_version_id FROM pyembed.query_log").fetchall()
    assert logged[-1] == (v2.id,)


def test_writes_during_a_switch_reach_both_versions(docs: psycopg.Connection, db_dsn: str) -> None:
    v2 = registry.register(database.Database(db_dsn), "all-MiniLM-L6-v2", PACKAGE)
    assert docs.execute("SELECT pyembed.begin_switch('docs', %s)", (v2.id,)).fetchone() == (20,)
    with pytest.raises(psycopg.Error, match="already switching"):
        docs.execute("SELECT pyembed.begin_switch('docs', %s)", (v2.id,))
    with pytest.raises(psycopg.Error, match="still has 20 rows to embed"):
        docs.execute("SELECT pyembed.finish_switch('docs')")
    docs.execute("INSERT INTO docs VALUES (100, 'written during the switch')")
    docs.execute("UPDATE docs SET body = 'changed during the switch' WHERE id = 0")
    run_worker(db_dsn)
    for store in ("docs_v1", f"docs_v{v2.id}"):
        assert docs.execute(
            f"SELECT chunk FROM pyembed_store.{store} WHERE id IN (0, 100) ORDER BY id"  # noqa: S608
        ).fetchall() == [("changed during the switch",), ("written during the switch",)]
    assert docs.execute("SELECT pyembed.switch_backlog('docs')").fetchone() == (0,)
    docs.execute("SELECT pyembed.finish_switch('docs')")
    assert versions(docs) == (v2.id, None)


def test_searches_never_fail_or_come_back_empty_during_a_promotion(
    docs: psycopg.Connection, db_dsn: str
) -> None:
    v2 = registry.register(database.Database(db_dsn), "all-MiniLM-L6-v2", PACKAGE)
    vector = embed(docs, "stone walls")[0]
    stop = threading.Event()
    results: list[int] = []
    failures: list[BaseException] = []

    def search_loop() -> None:
        with psycopg.connect(db_dsn, autocommit=True) as conn:
            register_vector(conn)
            while not stop.is_set():
                try:
                    rows = conn.execute(
                        "SELECT pk FROM pyembed.search('docs', %s, 3)", (vector,)
                    ).fetchall()
                    results.append(len(rows))
                except psycopg.Error as exc:
                    failures.append(exc)

    searcher = threading.Thread(target=search_loop)
    searcher.start()
    try:
        switches.promote(database.Database(db_dsn), "docs", v2.id)
        before_flip = len(results)
        deadline = time.monotonic() + 60
        while len(results) < before_flip + 20 and searcher.is_alive():  # on the new version
            assert time.monotonic() < deadline, "the searches stopped coming back"
            time.sleep(0.01)
    finally:
        stop.set()
        searcher.join()
    assert failures == []
    assert len(results) > 20 and set(results) == {3}


def test_rollback_retire_and_their_refusals(docs: psycopg.Connection, db_dsn: str) -> None:
    with pytest.raises(errors.PyembedError, match="no earlier version to roll back to"):
        switches.rollback(database.Database(db_dsn), "docs")
    v2 = registry.register(database.Database(db_dsn), "all-MiniLM-L6-v2", PACKAGE)
    switches.promote(database.Database(db_dsn), "docs", v2.id)
    with pytest.raises(errors.PyembedError, match=f"model version {v2.id} is in use by"):
        registry.retire(database.Database(db_dsn), v2.id)
    docs.execute("UPDATE docs SET body = 'changed after the promotion' WHERE id = 1")
    assert switches.rollback(database.Database(db_dsn), "docs", reason="worse in production") == 1
    assert versions(docs) == (1, None)
    run_worker(db_dsn)  # the reinstated store catches up with what changed while it was idle
    assert docs.execute("SELECT chunk FROM pyembed_store.docs_v1 WHERE id = 1").fetchone() == (
        "changed after the promotion",
    )
    assert history(docs)[-1] == ("rollback", v2.id, 1)
    assert registry.retire(database.Database(db_dsn), v2.id, "rolled back") == 1
    assert docs.execute(f"SELECT to_regclass('pyembed_store.docs_v{v2.id}')").fetchone() == (None,)
    with pytest.raises(psycopg.Error, match="append-only"):
        docs.execute("DELETE FROM pyembed.deployments")
    with pytest.raises(errors.PyembedError, match="is retired, not ready"):
        switches.promote(database.Database(db_dsn), "docs", v2.id)


def test_bad_promotions(docs: psycopg.Connection, db_dsn: str, small_model: Path) -> None:
    with pytest.raises(errors.PyembedError, match="model version id 999 does not exist"):
        switches.promote(database.Database(db_dsn), "docs", 999)
    with pytest.raises(errors.PyembedError, match="already active"):
        switches.promote(database.Database(db_dsn), "docs", 1)
    with pytest.raises(errors.CollectionError, match="'nope' does not exist"):
        switches.promote(database.Database(db_dsn), "nope", 1)
    small = registry.register(database.Database(db_dsn), "small-32", str(small_model))
    with pytest.raises(errors.PyembedError, match='belongs to model "small-32"'):
        switches.promote(database.Database(db_dsn), "docs", small.id)
    assert versions(docs) == (1, None) and history(docs) == []


def test_a_model_of_another_dimension_is_a_normal_switch(
    docs: psycopg.Connection, db_dsn: str, small_model: Path
) -> None:
    small = registry.register(database.Database(db_dsn), "small-32", str(small_model))
    switches.promote(database.Database(db_dsn), "docs", small.id, allow_other_model=True)
    assert docs.execute(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = %s::regclass AND attname = 'embedding'",
        (f"pyembed_store.docs_v{small.id}",),
    ).fetchone() == ("vector(32)",)
    rows = docs.execute(
        "SELECT pk FROM pyembed.search('docs', %s, 2)",
        (embed(docs, "harbours", version=small.id)[0],),
    ).fetchall()
    assert len(rows) == 2
    with pytest.raises(psycopg.Error, match="has 384 dimensions, but collection"):
        docs.execute("SELECT * FROM pyembed.search('docs', %s, 2)", (embed(docs, "harbours")[0],))


def _eval_set(conn: psycopg.Connection, name: str, source: str) -> int:
    row = conn.execute(
        "INSERT INTO pyembed.eval_sets (collection_id, name, source) "
        "SELECT id, %s, %s FROM pyembed.collections RETURNING id",
        (name, source),
    ).fetchone()
    assert row is not None
    return int(row[0])


def _evaluated(
    conn: psycopg.Connection, set_id: int, version: int, per_query: list[float] | None
) -> None:
    """A run of the version whose NDCG@10 is the mean of these per-query values."""
    values = per_query or [0.5]
    run = conn.execute(
        "INSERT INTO pyembed.eval_runs (collection_id, model_version_id, eval_set_id, status) "
        "SELECT id, %s, %s, 'done' FROM pyembed.collections RETURNING id",
        (version, set_id),
    ).fetchone()[0]  # type: ignore[index]
    mean = sum(values) / len(values)
    conn.execute("INSERT INTO pyembed.eval_metrics VALUES (%s, 'ndcg', 10, %s)", (run, mean))
    if per_query is not None:
        conn.execute(
            "INSERT INTO pyembed.eval_query_values VALUES (%s, 'ndcg', 10, %s, %s)",
            (run, list(range(1, len(values) + 1)), values),
        )


def test_the_gate_reads_the_recorded_evaluations(docs: psycopg.Connection, db_dsn: str) -> None:
    v2 = registry.register(database.Database(db_dsn), "all-MiniLM-L6-v2", PACKAGE)
    with pytest.raises(errors.PyembedError, match="no exact evaluation on ndcg@10"):
        switches.promote(database.Database(db_dsn), "docs", v2.id, when_better_than_active=True)
    set_id = _eval_set(docs, "held-out", "manual")

    def evaluated(version: int, per_query: list[float] | None) -> None:
        _evaluated(docs, set_id, version, per_query)

    def promote() -> switches.Promotion:
        return switches.promote(
            database.Database(db_dsn), "docs", v2.id, when_better_than_active=True
        )

    # Runs from before 0018 kept means only: the gate cannot tell noise from a difference.
    evaluated(1, None)
    evaluated(v2.id, None)
    with pytest.raises(errors.PyembedError, match="kept no per-query values"):
        promote()
    evaluated(1, [0.5] * 40)
    evaluated(v2.id, [0.45] * 40)
    with pytest.raises(errors.PyembedError, match=r"does not beat .* 0.4500 vs 0.5000, p = "):
        promote()
    # Better on average by 0.05, but half the queries lose: noise, refused.
    evaluated(v2.id, [1.0, 0.1] * 20)
    with pytest.raises(errors.PyembedError, match=r"0.5500 vs 0.5000, p = 0\.[1-9]"):
        promote()
    assert versions(docs) == (1, None) and history(docs) == []
    comparison = docs.execute(
        "SELECT queries, round(delta::numeric, 4), ci_low < 0 AND ci_high > 0, p_value > 0.05 "
        "FROM pyembed.eval_comparisons ORDER BY id DESC LIMIT 1"
    ).fetchone()
    assert comparison == (40, Decimal("0.0500"), True, True)
    evaluated(v2.id, [0.55] * 40)  # better on every query: a later evaluation counts
    done = promote()
    assert done.gate is not None and done.gate.passed
    (metrics,) = docs.execute(
        "SELECT metrics FROM pyembed.deployments WHERE action = 'promote'"
    ).fetchone()  # type: ignore[misc]
    assert {k: metrics[k] for k in ("metric", "eval_set_id", "candidate", "active", "mode")} == {
        "metric": "ndcg@10",
        "eval_set_id": set_id,
        "candidate": pytest.approx(0.55),
        "active": 0.5,
        "mode": "exact",
    }
    assert metrics["queries"] == 40 and metrics["p_value"] < 0.001 and metrics["alpha"] == 0.05
    assert metrics["ci_low"] == pytest.approx(0.05) and metrics["ci_high"] == pytest.approx(0.05)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="gate_p_value"):
        docs.execute("SELECT pyembed.alter_collection('docs', settings => '{\"gate_p_value\": 0}')")


def test_the_gate_trusts_judgments_the_active_model_did_not_shape_first(
    docs: psycopg.Connection, db_dsn: str
) -> None:
    v2 = registry.register(database.Database(db_dsn), "all-MiniLM-L6-v2", PACKAGE)
    judged = _eval_set(docs, "judged", "jsonl")
    _evaluated(docs, judged, 1, [0.6] * 30)
    _evaluated(docs, judged, v2.id, [0.5] * 30)
    # Newer, and the candidate wins there: but its clicks could only land on what v1 showed.
    clicks = _eval_set(docs, "clicks", "held_out")
    _evaluated(docs, clicks, 1, [0.5] * 30)
    _evaluated(docs, clicks, v2.id, [0.7] * 30)
    checked = switches.gate(docs, "docs", v2.id)
    assert (checked.eval_set_id, checked.passed) == (judged, False)
    # Named sets decide, in their order; an unknown name finds nothing to compare.
    assert switches.gate(docs, "docs", v2.id, ["clicks", "judged"]).eval_set_id == clicks
    with pytest.raises(errors.PyembedError, match="among 'other'"):
        switches.gate(docs, "docs", v2.id, ["other"])


def test_a_worker_that_cannot_load_the_version_records_why(
    docs: psycopg.Connection, db_dsn: str
) -> None:
    v2 = registry.register(database.Database(db_dsn), "all-MiniLM-L6-v2", PACKAGE)
    docs.execute(
        "UPDATE pyembed.model_artifacts SET data = '\\x00'::bytea "
        "WHERE version_id = %s AND path = 'config.json'",
        (v2.id,),
    )
    docs.execute("SELECT pyembed.begin_switch('docs', %s)", (v2.id,))
    loading._models.clear()  # same files as v1, which this process holds in memory by hash
    stats = run_worker(db_dsn)
    assert stats.failures == 20
    errors_seen = docs.execute(
        "SELECT DISTINCT last_error FROM pyembed.queue WHERE model_version_id = %s", (v2.id,)
    ).fetchall()
    assert len(errors_seen) == 1 and f"(id {v2.id})" in errors_seen[0][0]
    assert "tampered" in errors_seen[0][0]
    docs.execute("SELECT pyembed.abort_switch('docs', 'broken artifact')")
    assert versions(docs) == (1, None)
    assert docs.execute(f"SELECT to_regclass('pyembed_store.docs_v{v2.id}')").fetchone() == (None,)


def test_new_collections_start_from_the_pretrained_version(
    docs: psycopg.Connection, db_dsn: str
) -> None:
    tuned = registry.register(
        database.Database(db_dsn), "all-MiniLM-L6-v2", PACKAGE, parent_version_id=1
    )
    switches.promote(database.Database(db_dsn), "docs", tuned.id)
    docs.execute("CREATE TABLE other (id int PRIMARY KEY, body text)")
    other = docs.execute(
        "SELECT active_version_id FROM pyembed.create_collection('other', 'other', ARRAY['body'])"
    ).fetchone()
    assert other == (1,)  # not the version fine-tuned for `docs`


def test_a_rollback_after_a_storage_change_converts_the_kept_store(
    docs: psycopg.Connection, db_dsn: str
) -> None:
    v2 = registry.register(database.Database(db_dsn), "all-MiniLM-L6-v2", PACKAGE)
    switches.promote(database.Database(db_dsn), "docs", v2.id)
    docs.execute(
        "SELECT pyembed.alter_collection('docs', index_options => %s)", ('{"storage": "halfvec"}',)
    )
    kind = (
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = %s::regclass AND attname = 'embedding'"
    )
    assert docs.execute(kind, ("pyembed_store.docs_v1",)).fetchone() == ("vector(384)",)
    switches.rollback(database.Database(db_dsn), "docs")
    assert docs.execute(kind, ("pyembed_store.docs_v1",)).fetchone() == ("halfvec(384)",)
    rows = docs.execute(
        "SELECT pk FROM pyembed.search('docs', %s, 1)", (embed(docs, "harbours")[0],)
    ).fetchall()
    assert rows[0][0][0] % 4 == 1
