"""The worker: exact embeddings, nothing lost or duplicated under races, kills and failures."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import numpy as np
import psycopg
import pytest

from pyembed import errors
from pyembed.db import database, migrate
from pyembed.ingest import leases, work_items, worker
from pyembed.models import encoder, loading
from tests.helpers import run_worker


@pytest.fixture
def docs(db: psycopg.Connection) -> psycopg.Connection:
    db.execute("CREATE TABLE docs (id bigint PRIMARY KEY, body text)")
    db.execute("SELECT pyembed.create_collection('docs', 'docs', ARRAY['body'])")
    return db


def model(db: psycopg.Connection) -> encoder.Encoder:
    return encoder.Encoder(loading.load(db, 1))


def stored(db: psycopg.Connection, key: int) -> list[tuple[int, str, np.ndarray | None]]:
    return db.execute(
        "SELECT chunk_seq, chunk, embedding FROM pyembed_store.docs_v1 WHERE id = %s "
        "ORDER BY chunk_seq",
        (key,),
    ).fetchall()


def insert(db: psycopg.Connection, n: int, start: int = 1) -> None:
    db.execute(
        "INSERT INTO docs SELECT g, 'document number ' || g || ' about topic ' || (g %% 37) "
        "FROM generate_series(%s::bigint, %s::bigint) AS g",
        (start, start + n - 1),
    )


def test_embeddings_equal_the_models_own(docs: psycopg.Connection, db_dsn: str) -> None:
    docs.execute("INSERT INTO docs VALUES (1, 'a stone block'), (2, 'a city block')")
    stats = run_worker(db_dsn)
    assert (stats.rows, stats.chunks, stats.failures) == (2, 2, 0)
    expected = model(docs).encode(["a stone block", "a city block"])
    for key, vector in zip((1, 2), expected, strict=True):
        [(_, _, embedding)] = stored(docs, key)
        assert np.allclose(embedding.to_numpy(), vector, atol=1e-5)
    assert docs.execute("SELECT count(*) FROM pyembed.queue").fetchone() == (0,)


def test_null_and_empty_text_are_skipped_once(docs: psycopg.Connection, db_dsn: str) -> None:
    docs.execute("INSERT INTO docs VALUES (1, NULL), (2, ''), (3, '   ')")
    stats = run_worker(db_dsn)
    assert (stats.rows, stats.skipped_empty, stats.failures) == (3, 3, 0)
    for key in (1, 2, 3):
        assert [(seq, emb) for seq, _, emb in stored(docs, key)] == [(0, None)]
    assert run_worker(db_dsn).rows == 0  # no error loop
    docs.execute("UPDATE docs SET body = 'now it has text' WHERE id = 1")
    run_worker(db_dsn)
    assert stored(docs, 1)[0][2] is not None


def test_a_huge_text_is_chunked_and_every_chunk_embedded(
    docs: psycopg.Connection, db_dsn: str
) -> None:
    # 300 kB: hundreds of windows prove what a megabyte would, in a third of the time.
    sentence = "The quick brown fox jumps over the lazy dog near the riverbank at dawn. "
    body = sentence * (300_000 // len(sentence))
    docs.execute("INSERT INTO docs VALUES (1, %s)", (body,))
    stats = run_worker(db_dsn)
    assert stats.failures == 0
    rows = stored(docs, 1)
    enc = model(docs)
    assert len(rows) == stats.chunks > 270  # ~66k word pieces in windows of 254, overlap 32
    assert all(emb is not None for _, _, emb in rows)
    assert [seq for seq, _, _ in rows] == list(range(len(rows)))
    lengths = [len(enc._tokens(chunk)) for _, chunk, _ in rows[:200]]
    assert max(lengths) <= enc.max_window  # nothing silently truncated by the model
    # Overlapping chunks cover the text from its first word to its last.
    assert body.startswith(rows[0][1]) and body.rstrip().endswith(rows[-1][1].rstrip())


def test_unchanged_text_is_not_reembedded(docs: psycopg.Connection, db_dsn: str) -> None:
    insert(docs, 50)
    run_worker(db_dsn)
    before = docs.execute("SELECT max(embedded_at) FROM pyembed_store.docs_v1").fetchone()
    docs.execute("SELECT pyembed.enqueue_all('docs')")
    stats = run_worker(db_dsn)
    assert (stats.rows, stats.unchanged, stats.chunks) == (50, 50, 0)
    assert docs.execute("SELECT max(embedded_at) FROM pyembed_store.docs_v1").fetchone() == before


def _claim_and_encode(
    dsn: str, db: psycopg.Connection
) -> tuple[worker.Worker, list[leases.Item], list[work_items.Task], work_items.Outcome]:
    runner = worker.Worker(
        database.Database(dsn), worker.WorkerOptions(once=True, heartbeat_seconds=1.0)
    )
    items = leases.claim(db, runner.lease, 100, None)
    outcome = work_items.Outcome(claimed=len(items))
    tasks = runner.processor.plan(db, items, outcome)
    runner.processor.encode(db, tasks, outcome)
    return runner, items, tasks, outcome


def test_row_updated_while_embedding_ends_with_the_final_text(
    docs: psycopg.Connection, db_dsn: str
) -> None:
    docs.execute("INSERT INTO docs VALUES (1, 'old text'), (2, 'other')")
    runner, items, tasks, outcome = _claim_and_encode(db_dsn, docs)
    with psycopg.connect(db_dsn, autocommit=True) as app:  # the app writes mid-batch
        app.execute("UPDATE docs SET body = 'new text' WHERE id = 1")
    runner.processor.write(docs, runner.lease, items, tasks, outcome)
    assert outcome.released == 1
    assert stored(docs, 1) == []  # the stale embedding was not written
    assert stored(docs, 2) != []
    run_worker(db_dsn)
    [(_, chunk, embedding)] = stored(docs, 1)
    assert chunk == "new text"
    assert np.allclose(embedding.to_numpy(), model(docs).encode(["new text"])[0], atol=1e-5)


def test_the_heartbeat_skips_rows_the_write_holds_and_never_waits(
    docs: psycopg.Connection, db_dsn: str
) -> None:
    docs.execute("INSERT INTO docs SELECT i, 'row ' || i FROM generate_series(1, 6) AS i")
    runner, items, _, _ = _claim_and_encode(db_dsn, docs)
    ids = sorted(item.id for item in items)
    before = dict(docs.execute("SELECT id, lease_expires_at FROM pyembed.queue").fetchall())
    with psycopg.connect(db_dsn) as writer, psycopg.connect(db_dsn, autocommit=True) as beat:
        held = leases.lock_revisions(writer, runner.lease, ids[3:])  # the write, mid-transaction
        assert sorted(held) == ids[3:]
        beat.execute("SET lock_timeout = '2s'")  # waiting would fail here, not hang
        leases.extend(beat, runner.lease)
        writer.rollback()
    after = dict(docs.execute("SELECT id, lease_expires_at FROM pyembed.queue").fetchall())
    assert all(after[i] > before[i] for i in ids[:3])  # extended
    assert all(after[i] == before[i] for i in ids[3:])  # skipped, not waited for


def test_a_write_rolled_back_by_a_deadlock_is_written_again(
    docs: psycopg.Connection, db_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs.execute("INSERT INTO docs SELECT i, 'row ' || i FROM generate_series(1, 5) AS i")
    real, calls = leases.lock_revisions, []

    def once_deadlocked(*args: Any) -> dict[int, int]:
        calls.append(1)
        if len(calls) == 1:
            raise psycopg.errors.DeadlockDetected("deadlock detected (injected)")
        return real(*args)

    monkeypatch.setattr(leases, "lock_revisions", once_deadlocked)
    stats = run_worker(db_dsn)
    assert (stats.rows, stats.failures, len(calls)) == (5, 0, 2)
    assert docs.execute("SELECT count(*) FROM pyembed_store.docs_v1").fetchone() == (5,)
    assert docs.execute("SELECT count(*) FROM pyembed.queue").fetchone() == (0,)


def test_row_deleted_while_embedding_leaves_no_orphan(
    docs: psycopg.Connection, db_dsn: str
) -> None:
    docs.execute("INSERT INTO docs VALUES (1, 'doomed'), (2, 'kept')")
    runner, items, tasks, outcome = _claim_and_encode(db_dsn, docs)
    with psycopg.connect(db_dsn, autocommit=True) as app:
        app.execute("DELETE FROM docs WHERE id = 1")
    runner.processor.write(docs, runner.lease, items, tasks, outcome)
    run_worker(db_dsn)
    assert docs.execute("SELECT array_agg(DISTINCT id) FROM pyembed_store.docs_v1").fetchone() == (
        [2],
    )
    assert docs.execute("SELECT count(*) FROM pyembed.queue").fetchone() == (0,)


def _worker_process(dsn: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pyembed", "--log-level", "warning", "worker", "--dsn", dsn, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


def _wait_for(db: psycopg.Connection, sql: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not db.execute(sql).fetchone()[0]:  # type: ignore[index]
        assert time.monotonic() < deadline, f"timed out waiting for: {sql}"
        time.sleep(0.05)


def _assert_exactly_once(db: psycopg.Connection, n: int) -> None:
    assert db.execute(
        "SELECT count(DISTINCT id), count(*) FILTER (WHERE chunk_seq = 0), "
        "count(*) FILTER (WHERE embedding IS NULL) FROM pyembed_store.docs_v1"
    ).fetchone() == (n, n, 0)
    assert db.execute("SELECT count(*) FROM pyembed.queue").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM pyembed.failed_items").fetchone() == (0,)


def test_sigkilled_worker_loses_and_duplicates_nothing(
    docs: psycopg.Connection, db_dsn: str
) -> None:
    insert(docs, 1500)
    victim = _worker_process(db_dsn, "--batch-size", "1500", "--lease-seconds", "5")
    _wait_for(docs, "SELECT count(*) > 0 FROM pyembed.queue WHERE lease_owner IS NOT NULL")
    time.sleep(0.5)  # into the encode
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert docs.execute("SELECT count(*) FROM pyembed_store.docs_v1").fetchone() == (0,)
    # The dead worker's leases lapse (5 s); the next worker takes its rows.
    _wait_for(docs, "SELECT bool_and(lease_expires_at < now()) FROM pyembed.queue", timeout=30)
    stats = run_worker(db_dsn)
    assert stats.rows == 1500
    _assert_exactly_once(docs, 1500)


def test_two_workers_race_on_the_same_rows(docs: psycopg.Connection, db_dsn: str) -> None:
    insert(docs, 1600)
    workers = [_worker_process(db_dsn, "--once", "--batch-size", "100") for _ in range(2)]
    for proc in workers:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    _assert_exactly_once(docs, 1600)
    totals = docs.execute("SELECT sum(rows_embedded), count(*) FROM pyembed.workers").fetchone()
    assert totals == (1600, 2)
    # Both took part: rows were shared, not embedded twice.
    assert docs.execute("SELECT min(rows_embedded) FROM pyembed.workers").fetchone()[0] > 0  # type: ignore[index]


def test_sigterm_finishes_the_batch_and_exits(docs: psycopg.Connection, db_dsn: str) -> None:
    insert(docs, 600)
    proc = _worker_process(db_dsn, "--batch-size", "300")
    _wait_for(docs, "SELECT count(*) > 0 FROM pyembed.queue WHERE lease_owner IS NOT NULL")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert docs.execute(
        "SELECT count(*) FROM pyembed.queue WHERE lease_owner IS NOT NULL"
    ).fetchone() == (0,)
    done = docs.execute("SELECT count(DISTINCT id) FROM pyembed_store.docs_v1").fetchone()[0]  # type: ignore[index]
    assert done % 300 == 0 and done > 0
    assert docs.execute("SELECT state, stopped_at IS NOT NULL FROM pyembed.workers").fetchone() == (
        "stopped",
        True,
    )


def test_a_failing_row_is_isolated_retried_and_dead_lettered(
    docs: psycopg.Connection, db_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = encoder.Encoder.encode

    def encode(self: encoder.Encoder, texts: list[str]) -> np.ndarray:
        if any("POISON" in t for t in texts):
            raise RuntimeError("cannot encode this")
        return original(self, texts)

    monkeypatch.setattr(encoder.Encoder, "encode", encode)
    insert(docs, 20)
    docs.execute("INSERT INTO docs VALUES (999, 'POISON pill')")
    stats = run_worker(db_dsn, max_attempts=2, backoff_seconds=60.0)
    assert stats.rows == 20  # the other rows of the batch were written
    item = docs.execute(
        "SELECT attempts, last_error, next_attempt_at > now() + interval '50 s' FROM pyembed.queue"
    ).fetchone()
    assert item is not None and item[0] == 1 and "cannot encode this" in item[1] and item[2]
    docs.execute("UPDATE pyembed.queue SET next_attempt_at = now()")
    run_worker(db_dsn, max_attempts=2, backoff_seconds=60.0)
    assert docs.execute("SELECT count(*) FROM pyembed.queue").fetchone() == (0,)
    dead = docs.execute("SELECT pk, attempts, last_error FROM pyembed.failed_items").fetchall()
    assert dead == [([999], 2, dead[0][2])] and "cannot encode this" in dead[0][2]
    monkeypatch.setattr(encoder.Encoder, "encode", original)
    from pyembed.ingest import dead_letters

    assert dead_letters.retry_failed(database.Database(db_dsn), "docs") == 1
    assert run_worker(db_dsn).rows == 1
    assert docs.execute("SELECT count(*) FROM pyembed.failed_items").fetchone() == (0,)


def test_model_dimension_mismatch_fails_clearly(docs: psycopg.Connection, db_dsn: str) -> None:
    docs.execute("UPDATE pyembed.models SET dimensions = 768")
    docs.execute("INSERT INTO docs VALUES (1, 'text')")
    stats = run_worker(db_dsn, backoff_seconds=60.0)
    assert stats.rows == 0 and stats.failures == 1
    [(error,)] = docs.execute("SELECT last_error FROM pyembed.queue").fetchall()
    assert "produces 384-d embeddings, but it is registered with 768" in error


def test_idle_worker_wakes_on_notify(docs: psycopg.Connection, db_dsn: str) -> None:
    runner = worker.Worker(
        database.Database(db_dsn), worker.WorkerOptions(poll_seconds=60.0, heartbeat_seconds=1.0)
    )
    thread = threading.Thread(target=runner.run)
    thread.start()
    try:
        _wait_for(docs, "SELECT count(*) > 0 FROM pyembed.workers")
        time.sleep(1.0)  # let it fall idle on LISTEN
        start = time.monotonic()
        docs.execute("INSERT INTO docs VALUES (1, 'wake up')")
        _wait_for(docs, "SELECT count(*) > 0 FROM pyembed_store.docs_v1", timeout=20)
        lag = time.monotonic() - start
    finally:
        runner.stop()
        thread.join(timeout=30)
    assert lag < 5.0  # far below the 60 s poll: the NOTIFY woke it
    beat = docs.execute("SELECT state, rows_embedded FROM pyembed.worker_status").fetchone()
    assert beat == ("stopped", 1)


def test_worker_reconnects_when_its_connections_are_killed(
    docs: psycopg.Connection, db_dsn: str
) -> None:
    insert(docs, 5)
    options = worker.WorkerOptions(heartbeat_seconds=0.5, lease_seconds=30, poll_seconds=0.5)
    running = worker.Worker(database.Database(db_dsn), options)
    thread = threading.Thread(target=running.run)
    thread.start()
    try:
        _wait_for(docs, "SELECT count(*) = 5 FROM pyembed_store.docs_v1")
        # What a server restart looks like to a client: every connection ends with 57P01.
        docs.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        insert(docs, 5, start=6)
        _wait_for(docs, "SELECT count(*) = 10 FROM pyembed_store.docs_v1")
        assert thread.is_alive()
        state = "SELECT state FROM pyembed.worker_status WHERE id = %s"
        assert docs.execute(state, (running.id,)).fetchone() == ("running",)
    finally:
        running.stop()
        thread.join(timeout=60)
    assert not thread.is_alive()
    assert docs.execute(state, (running.id,)).fetchone() == ("stopped",)


def test_a_worker_whose_heartbeat_lapsed_shows_as_lost(docs: psycopg.Connection) -> None:
    docs.execute(
        "INSERT INTO pyembed.workers (id, hostname, pid, heartbeat_at, details) VALUES "
        "('killed', 'h', 1, now() - interval '10 minutes', '{\"lease_seconds\": 60}'), "
        "('fine', 'h', 2, now(), '{\"lease_seconds\": 60}')"
    )
    rows = docs.execute(
        "SELECT id, state, alive FROM pyembed.worker_status "
        "WHERE id IN ('fine', 'killed') ORDER BY id"
    ).fetchall()
    assert rows == [("fine", "running", True), ("killed", "lost", False)]


def test_a_worker_that_never_reached_the_database_fails_at_once() -> None:
    unreachable = "postgresql://postgres@127.0.0.1:1/nowhere"
    started = time.monotonic()
    with pytest.raises(errors.ConnectionFailed, match="cannot connect"):
        worker.Worker(database.Database(unreachable), worker.WorkerOptions(once=True)).run()
    assert time.monotonic() - started < 10


def test_a_worker_refuses_a_database_at_another_schema_revision(
    docs: psycopg.Connection, db_dsn: str
) -> None:
    docs.execute("INSERT INTO docs VALUES (900, 'a row written before the worker starts')")
    db = database.Database(db_dsn)
    migrate.downgrade(db, "0011")
    with pytest.raises(errors.SchemaOutdated, match=r"(?s)revision 0011.*pyembed db upgrade"):
        run_worker(db_dsn)
    assert docs.execute("SELECT count(*) FROM pyembed.failed_items").fetchone() == (0,)
    migrate.upgrade(db)
    assert run_worker(db_dsn).rows == 1  # nothing was claimed or lost meanwhile
