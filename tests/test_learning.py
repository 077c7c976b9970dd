"""Learning policies: set from SQL, due on new feedback, run one at a time, every decision a row."""

from __future__ import annotations

import json
import threading
import time

import psycopg
import pytest
from click.testing import CliRunner

from pyembed import errors
from pyembed.cli.main import main
from pyembed.db import database
from pyembed.evaluation import eval_sets
from pyembed.ingest import worker
from pyembed.training import learner, policies, run_rows, runs

FAST = {"batch_size": 8, "epochs": 1}


def _set(conn: psycopg.Connection, *args: object, **kwargs: object) -> None:
    names = ", ".join(f"{k} => %s" for k in kwargs)
    values = [*args, *(json.dumps(v) if isinstance(v, dict) else v for v in kwargs.values())]
    conn.execute(
        f"SELECT pyembed.set_learning_policy({', '.join(['%s'] * len(args))}"
        f"{', ' if kwargs else ''}{names})",
        values,
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_feedback": 0}, "min_feedback must be at least 1"),
        ({"min_interval": "-1 hour"}, "min_interval must not be negative"),
        ({"after_training": "shadow"}, "after_training must be 'nothing', 'promote' or 'canary'"),
        ({"canary_mode": "shadow"}, "canary_mode must be 'interleave' or 'split'"),
        ({"watch_searches": -1}, "watch_searches at least 0"),
        ({"train_options": {"lr": 1}}, 'unknown training option "lr"'),
        ({"train_options": {"loss": "tsdae"}}, "not a loss that learns from the log"),
        ({"train_options": {"epochs": 0}}, "epochs = 0 is out of range"),
        ({"train_options": {"batch_size": 8.5}}, "batch_size = 8.5 is out of range"),
        ({"train_options": {"negatives": "yes"}}, "not true or false"),
        ({"train_options": {"held_out": 0}}, "held_out = 0 is out of range"),
        ({"eval_sets": ["nope"]}, "has no eval set 'nope'"),
    ],
)
def test_a_bad_policy_is_refused_and_names_the_fix(
    logged: psycopg.Connection, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises((psycopg.errors.InvalidParameterValue, psycopg.errors.UndefinedObject)) as e:
        _set(logged, "docs", **kwargs)
    assert message in str(e.value)
    assert logged.execute("SELECT count(*) FROM pyembed.learning_policies").fetchone() == (0,)


def test_policies_are_set_changed_and_dropped_from_sql(logged: psycopg.Connection) -> None:
    with pytest.raises(psycopg.Error, match="nope"):
        _set(logged, "nope")
    _set(logged, "docs")
    row = logged.execute(
        "SELECT enabled, min_feedback, min_interval::text, train_options, eval_sets, "
        "after_training, updated_by FROM pyembed.learning_policies"
    ).fetchone()
    assert row == (True, 200, "01:00:00", {}, [], "promote", "postgres")
    # NULL keeps a value; the rest changes.
    _set(logged, "docs", min_feedback=40, train_options=FAST)
    _set(logged, "docs", after_training="nothing")
    row = logged.execute(
        "SELECT min_feedback, train_options, after_training FROM pyembed.learning_policies"
    ).fetchone()
    assert row == (40, FAST, "nothing")
    assert logged.execute("SELECT pyembed.drop_learning_policy('docs')").fetchone() == (True,)
    assert logged.execute("SELECT pyembed.drop_learning_policy('docs')").fetchone() == (False,)


def test_a_due_policy_trains_gates_and_records_every_decision(
    logged: psycopg.Connection, db_dsn: str
) -> None:
    db = database.Database(db_dsn)
    running = learner.Learner(db)
    with db.session() as conn:
        policy = policies.set_policy(conn, "docs", min_feedback=41, train_options=FAST)
    assert (policy.new_feedback, policy.due) == (40, False)
    assert running.run_due() == []
    with db.session() as conn:
        policies.set_policy(conn, "docs", min_feedback=40, min_interval="1 hour")
    done = running.run_due()
    assert len(done) == 1 and done[0].result is not None, done
    result = done[0].result
    run = logged.execute(
        "SELECT status, triggered_by, outcome, outcome_reason, params->>'batch_size', "
        "params->>'loss', params->>'use_negatives' FROM pyembed.training_runs WHERE id = %s",
        (result.run_id,),
    ).fetchone()
    assert run is not None and run[:2] == ("done", "policy") and run[4] == "8"
    assert run[5:] == ("cached_mnrl", "true")  # the policy defaults under its own options
    assert run[2] == result.outcome and run[3] == result.outcome_reason
    active = logged.execute("SELECT active_version_id FROM pyembed.collections").fetchone()
    promoted = logged.execute(
        "SELECT to_version_id, reason FROM pyembed.deployments WHERE action = 'promote'"
    ).fetchall()
    if result.outcome == "promoted":
        assert active == (result.version_id,) and "p = " in (run[3] or "")
        assert promoted == [(result.version_id, f"training run {result.run_id}")]
    else:
        assert run[2] == "refused" and "does not beat" in (run[3] or "")
        assert active == (1,) and promoted == []
    # The feedback it trained on is spent; more comes in, but the interval has not passed.
    status = policies.status(logged, ["docs"])[0]
    assert (status.new_feedback, status.due, status.last_run_id) == (0, False, result.run_id)
    query_id = logged.execute("SELECT max(id) FROM pyembed.query_log").fetchone()
    logged.execute("SELECT pyembed.record_feedback(%s, '[3]')", query_id)
    with db.session() as conn:
        policies.set_policy(conn, "docs", min_feedback=1)
    status = policies.status(logged, ["docs"])[0]
    assert (status.new_feedback, status.due) == (1, False)
    assert status.next_run_not_before is not None
    assert running.run_due() == []
    with db.session() as conn:
        policies.set_policy(conn, "docs", enabled=False, min_interval="0")
    assert running.run_due() == []


def test_a_policy_option_overrides_one_default_and_keeps_the_others(
    logged: psycopg.Connection,
) -> None:
    policy = policies.set_policy(logged, "docs", train_options={"negatives": False, "epochs": 2})
    opts, mining = policies.training_setup(policy)
    assert (opts.loss, opts.mini_batch_size, opts.epochs) == ("cached_mnrl", 16, 2)
    assert not opts.use_negatives and mining["negatives_per_pair"] == 0
    opts, mining = policies.training_setup(policies.set_policy(logged, "docs", train_options={}))
    assert (opts.loss, opts.use_negatives, mining["negatives_per_pair"]) == ("cached_mnrl", True, 1)


def test_one_training_run_per_collection_at_a_time(logged: psycopg.Connection, db_dsn: str) -> None:
    db = database.Database(db_dsn)
    # A run left 'running' by a killed process is marked interrupted once the lock is taken.
    logged.execute(
        "INSERT INTO pyembed.training_runs (collection_id, base_version_id, loss) "
        "SELECT id, 1, 'mnrl' FROM pyembed.collections"
    )
    with db.session() as conn:
        policies.set_policy(conn, "docs", min_feedback=1, min_interval="0", train_options=FAST)
    with run_rows.training_lock(db, "docs"):
        stale = logged.execute("SELECT status, error FROM pyembed.training_runs").fetchone()
        assert stale is not None and stale[0] == "interrupted" and "--resume" in stale[1]
        assert learner.Learner(db).run_due()[0].skipped == (
            "another process is training a model of collection 'docs'"
        )
        with pytest.raises(errors.TrainingBusy, match="another process is training"):
            runs.train(db, "docs")
    assert logged.execute("SELECT count(*) FROM pyembed.training_runs").fetchone() == (1,)


def test_too_little_feedback_to_train_waits_for_more(db: psycopg.Connection, db_dsn: str) -> None:
    db.execute("CREATE TABLE few (id int PRIMARY KEY, body text)")
    db.execute("INSERT INTO few VALUES (1, 'one'), (2, 'two')")
    db.execute("SELECT pyembed.create_collection('few', 'few', ARRAY['body'])")
    vector = "[" + ",".join(["0.1"] * 384) + "]"
    for _ in range(3):
        query = db.execute(
            "SELECT pyembed.log_search('few', %s::vector, '[[1]]', 'a query')", (vector,)
        ).fetchone()
        db.execute("SELECT pyembed.record_feedback(%s, '[1]')", query)
    _set(db, "few", min_feedback=1, min_interval="0")
    running = learner.Learner(database.Database(db_dsn))
    first = running.run_due()
    assert first[0].skipped is not None and "searches with enough feedback" in first[0].skipped
    assert running.run_due()[0].skipped == "waiting for more feedback"
    assert db.execute("SELECT count(*) FROM pyembed.training_runs").fetchone() == (0,)


def test_a_policy_gates_on_its_own_eval_sets_and_a_worker_runs_it(
    logged: psycopg.Connection, db_dsn: str
) -> None:
    judged = [("about stone walls", {(0,): 2.0}), ("about apple pie", {(2,): 2.0})]
    eval_sets.create_set(logged, "docs", "judged", "jsonl", judged)
    _set(
        logged,
        "docs",
        min_feedback=40,
        min_interval="0",
        train_options=FAST,
        eval_sets=["judged"],
        after_training="nothing",
    )
    runner = worker.Worker(database.Database(db_dsn), worker.WorkerOptions(heartbeat_seconds=1.0))
    thread = threading.Thread(target=runner.run)
    with learner.beside(runner, poll_seconds=0.2):
        thread.start()
        try:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                row = logged.execute(
                    "SELECT id, outcome, outcome_reason FROM pyembed.training_runs"
                ).fetchone()
                if row is not None and row[1] is not None:
                    break
                time.sleep(0.5)
        finally:
            runner.stop()
            thread.join()
    assert row is not None and row[1:3] == ("kept", "not offered for promotion")
    # Both versions were measured on the policy's set as well as on the run's held-out queries.
    measured = logged.execute(
        "SELECT s.source, count(DISTINCT r.model_version_id) FROM pyembed.eval_runs r "
        "JOIN pyembed.eval_sets s ON s.id = r.eval_set_id GROUP BY s.source ORDER BY 1"
    ).fetchall()
    assert measured == [("held_out", 2), ("jsonl", 2)]
    assert logged.execute("SELECT active_version_id FROM pyembed.collections").fetchone() == (1,)


def test_the_cli_sets_shows_runs_and_drops_a_policy(
    logged: psycopg.Connection, db_dsn: str
) -> None:
    runner = CliRunner()

    def cli(*args: str) -> str:
        result = runner.invoke(main, [*args, "--dsn", db_dsn])
        assert result.exit_code == 0, result.output
        return result.output

    shown = json.loads(
        cli(
            "learning-policy",
            "docs",
            "--min-feedback",
            "1000",
            "--every",
            "30 minutes",
            "--options",
            '{"epochs": 1}',
            "--after",
            "nothing",
            "--json",
        )
    )
    assert shown[0]["min_interval"] == 1800.0 and shown[0]["new_feedback"] == 40
    assert shown[0]["train_options"] == {"epochs": 1} and shown[0]["due"] is False
    assert "no learning policy is due" in cli("learn")
    assert "docs" in cli("learn", "--status")
    bad = runner.invoke(main, ["learning-policy", "docs", "--options", "{epochs", "--dsn", db_dsn])
    assert bad.exit_code == errors.ConfigError.exit_code and "--options is not JSON" in bad.output
    bad = runner.invoke(main, ["learning-policy", "docs", "--options", '{"x": 1}', "--dsn", db_dsn])
    assert bad.exit_code != 0 and 'unknown training option "x"' in bad.output
    assert "policy dropped" in cli("learning-policy", "docs", "--drop")
