"""Canaries on live traffic (team-draft interleaving, traffic split), online metrics, and the
watch that rolls a worse promotion back."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import psycopg
import pytest
from click.testing import CliRunner
from pgvector.psycopg import register_vector

from pyembed import errors
from pyembed.cli.main import main
from pyembed.db import database
from pyembed.evaluation import online
from pyembed.models import canaries, registry, switches
from pyembed.search import client
from pyembed.training import learner, policies
from tests.conftest import PACKAGE
from tests.helpers import embed

HARBOURS, APPLE_PIE = 1, 2  # a row's topic: its id % 4


def _candidate(db_dsn: str) -> int:
    return registry.register(database.Database(db_dsn), "all-MiniLM-L6-v2", PACKAGE).id


def _search(
    conn: psycopg.Connection, query: np.ndarray, candidate: np.ndarray | None, k: int = 6
) -> list[client.Hit]:
    return client.search(conn, "docs", query, k, candidate_query=candidate, query_text="q")


def _click_topic(conn: psycopg.Connection, hits: list[client.Hit], topic: int) -> None:
    """The simulated user wants a row of `topic` and clicks the first one shown."""
    for hit in hits:
        if hit.pk[0] % 4 == topic:
            conn.execute(
                "SELECT pyembed.record_feedback(%s, %s::jsonb)", (hit.query_id, str(hit.pk))
            )
            return


def history(db: psycopg.Connection) -> list[str]:
    return [row[0] for row in db.execute("SELECT action FROM pyembed.deployments ORDER BY id")]


def test_interleaving_drafts_from_both_rankings_and_a_losing_candidate_is_rejected(
    docs: psycopg.Connection, db_dsn: str
) -> None:
    db = database.Database(db_dsn)
    v2 = _candidate(db_dsn)
    canary_id, ready = canaries.start(db, "docs", v2, canaries.Settings(min_searches=12))
    assert ready.backfilled == 20 and client.canary_version(docs, "docs") == v2
    # The same weights, told apart by what each is asked: the candidate's query is wrong.
    harbours, apple_pie = embed(docs, "harbours", "apple pie")
    for _ in range(12):
        hits = _search(docs, harbours, apple_pie)
        assert len(hits) == 6 and len({h.pk[0] for h in hits}) == 6
        row = docs.execute(
            "SELECT canary_id, result_teams, model_version_id FROM pyembed.query_log WHERE id = %s",
            (hits[0].query_id,),
        ).fetchone()
        assert row is not None and row[0] == canary_id and row[2] == 1
        teams = row[1]
        # Team draft: each team placed half, and every row came from its team's ranking.
        assert sorted(teams) == [0, 0, 0, 1, 1, 1]
        topics = [h.pk[0] % 4 for h in hits]
        assert [t for t, team in zip(topics, teams, strict=True) if team == 0] == [HARBOURS] * 3
        assert [t for t, team in zip(topics, teams, strict=True) if team == 1] == [APPLE_PIE] * 3
        _click_topic(docs, hits, HARBOURS)
    (status,) = canaries.status(docs, "docs")
    assert (status.judged, status.candidate_wins, status.baseline_wins, status.ties) == (
        12,
        0,
        12,
        0,
    )
    assert status.p_value == pytest.approx(2 * 0.5**12) and status.verdict == "baseline"
    decided = canaries.decide(db, "docs")
    assert decided is not None and decided.decision == "rejected"
    assert history(docs)[-3:] == ["canary_started", "canary_ended", "switch_aborted"]
    assert docs.execute("SELECT to_regclass(%s)", (f"pyembed_store.docs_v{v2}",)).fetchone() == (
        None,
    )
    # The canary is over: the candidate's query is ignored, the active version answers alone.
    hits = _search(docs, harbours, apple_pie)
    assert {h.pk[0] % 4 for h in hits[:5]} == {HARBOURS}
    assert canaries.decide(db, "docs") is None and client.canary_version(docs, "docs") is None


def test_a_split_canary_that_wins_is_promoted_and_online_metrics_count_each_arm(
    docs: psycopg.Connection, db_dsn: str
) -> None:
    db = database.Database(db_dsn)
    v2 = _candidate(db_dsn)
    settings = canaries.Settings(mode="split", min_searches=30)
    canaries.start(db, "docs", v2, settings)
    harbours, apple_pie = embed(docs, "harbours", "apple pie")
    served = set()
    for _ in range(40):
        hits = _search(docs, apple_pie, harbours, k=5)  # now the baseline's query is wrong
        served.add(hits[0].pk[0] % 4)
        _click_topic(docs, hits, HARBOURS)
    assert served == {HARBOURS, APPLE_PIE}  # each search wholly by one version
    (status,) = canaries.status(docs, "docs")
    assert status.candidate_searches + status.baseline_searches == 40
    assert (status.candidate_mrr, status.baseline_mrr) == (1.0, 0.0)
    assert status.verdict == "candidate" and status.p_value == 0
    split = {m.model_version_id: m for m in online.metrics(docs, "docs")}
    assert split[v2].mrr == 1.0 and split[1].no_click_share == 1.0
    assert split[v2].searches == status.candidate_searches
    decided = canaries.decide(db, "docs")
    assert decided is not None and decided.decision == "promoted"
    assert docs.execute("SELECT active_version_id FROM pyembed.collections").fetchone() == (v2,)
    ended = docs.execute(
        "SELECT decision, metrics->>'candidate_mrr' FROM pyembed.canaries"
    ).fetchone()
    assert ended == ("promoted", "1.0")
    assert history(docs)[-2:] == ["canary_ended", "promote"]


def test_a_not_worse_canary_passes_an_even_score_and_still_rejects_a_loser(
    docs: psycopg.Connection, db_dsn: str
) -> None:
    db = database.Database(db_dsn)
    harbours, apple_pie = embed(docs, "harbours", "apple pie")
    settings = canaries.Settings(min_searches=12, require="not_worse")
    v2 = _candidate(db_dsn)
    canaries.start(db, "docs", v2, settings)
    # The same ranking from both: the draft's coin tosses decide which team placed the row
    # clicked, so wins and losses come out even but for noise (the session's seed fixes them).
    docs.execute("SELECT setseed(0.25)")
    for _ in range(11):
        _click_topic(docs, _search(docs, harbours, harbours), HARBOURS)
    assert canaries.status(docs, "docs")[0].verdict == "undecided"  # 11 judged of 12
    _click_topic(docs, _search(docs, harbours, harbours), HARBOURS)
    (even,) = canaries.status(docs, "docs")
    assert even.candidate_wins + even.baseline_wins == 12 and even.p_value is not None
    assert even.p_value >= 0.05 and (even.require, even.verdict) == ("not_worse", "candidate")
    decided = canaries.decide(db, "docs")
    assert decided is not None and decided.decision == "promoted"
    # Not worse is not a free pass: a candidate users avoid is still rejected.
    v3 = _candidate(db_dsn)
    canaries.start(db, "docs", v3, settings)
    for _ in range(12):
        _click_topic(docs, _search(docs, harbours, apple_pie), HARBOURS)
    assert canaries.status(docs, "docs")[0].verdict == "baseline"
    decided = canaries.decide(db, "docs")
    assert decided is not None and decided.decision == "rejected"
    with pytest.raises(errors.ConfigError, match="requires one of better, not_worse"):
        canaries.start(db, "docs", v3, canaries.Settings(require="maybe"))
    with pytest.raises(psycopg.Error, match="requires 'better' or 'not_worse'"):
        docs.execute("SELECT pyembed.start_canary('docs', 1, require => 'maybe')")


def test_canary_refusals_and_a_switch_ended_by_hand_ends_its_canary(
    docs: psycopg.Connection, db_dsn: str
) -> None:
    db = database.Database(db_dsn)
    v2 = _candidate(db_dsn)
    with pytest.raises(psycopg.Error, match="is not the pending version") as caught:
        docs.execute("SELECT pyembed.start_canary('docs', %s)", (v2,))
    assert "pyembed canary start docs" in (caught.value.diag.message_hint or "")
    with pytest.raises(errors.ConfigError, match="mode"):
        canaries.start(db, "docs", v2, canaries.Settings(mode="shadow"))
    with pytest.raises(psycopg.Error, match="runs no canary"):
        docs.execute("SELECT pyembed.end_canary('docs', 'promoted')")
    canaries.start(db, "docs", v2)
    with pytest.raises(errors.PyembedError, match="already runs a canary"):
        canaries.start(db, "docs", v2)
    with pytest.raises(psycopg.Error, match="ends promoted, rejected"):
        docs.execute("SELECT pyembed.end_canary('docs', 'maybe')")
    (harbours,) = embed(docs, "harbours")
    with pytest.raises(errors.PyembedError, match="candidate_query does not fit") as bad:
        _search(docs, harbours, np.zeros(4, dtype=np.float32))
    assert "canary_version" in (bad.value.hint or "")
    # Aborting the switch by hand ends the canary with it: none is left without its store.
    switches.abort(db, "docs", reason="changed my mind")
    assert docs.execute("SELECT decision FROM pyembed.canaries").fetchone() == ("aborted",)
    assert client.canary_version(docs, "docs") is None
    assert len(_search(docs, harbours, harbours)) == 6


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        # Checked against scipy.stats.binomtest and scipy.stats.norm.sf.
        ("pyembed._sign_test(12, 0)", 2 * 0.5**12),
        ("pyembed._sign_test(5, 5)", 1.0),
        ("pyembed._sign_test(0, 0)", 1.0),
        ("pyembed._sign_test(60, 40)", 0.05688793364098078),
        ("pyembed._normal_p(1.959963984540054)", 0.05),
        ("pyembed._normal_p(0)", 1.0),
    ],
)
def test_p_values_in_sql(db: psycopg.Connection, sql: str, expected: float) -> None:
    row = db.execute(f"SELECT {sql}").fetchone()
    assert row is not None and row[0] == pytest.approx(expected, abs=2e-7)


def test_team_draft_interleaving_shows_each_row_once_and_balances_the_teams(
    db: psycopg.Connection,
) -> None:
    for _ in range(20):
        row = db.execute(
            "SELECT positions, teams FROM pyembed._interleave("
            "ARRAY['[1]', '[2]', '[3]', '[4]']::jsonb[], ARRAY['[2]', '[5]', '[1]']::jsonb[], 5)"
        ).fetchone()
        assert row is not None
        positions, teams = row
        rankings = (["1", "2", "3", "4"], ["2", "5", "1"])
        shown = [rankings[team][pos - 1] for pos, team in zip(positions, teams, strict=True)]
        assert len(shown) == 5 == len(set(shown)) and set(shown) == {"1", "2", "3", "4", "5"}
        assert abs(teams[:4].count(0) - teams[:4].count(1)) == 0
    empty = db.execute("SELECT * FROM pyembed._interleave('{}', '{}', 3)").fetchone()
    assert empty == ([], [])


def test_a_promotion_whose_clicks_rank_worse_online_is_rolled_back(
    docs: psycopg.Connection, db_dsn: str
) -> None:
    db = database.Database(db_dsn)
    harbours, apple_pie = embed(docs, "harbours", "apple pie")
    for _ in range(25):  # version 1: users find their row first
        _click_topic(docs, _search(docs, harbours, None, k=5), HARBOURS)
    v2 = _candidate(db_dsn)
    switches.promote(db, "docs", v2)
    assert online.watch(db, "docs", searches=25) is None  # not served enough yet
    assert online.unjudged(docs, "docs")
    for _ in range(25):  # version 2 answers as if asked something else: no clicks
        _click_topic(docs, _search(docs, apple_pie, None, k=5), HARBOURS)
    check = online.watch(db, "docs", searches=25)
    assert check is not None and check.rolled_back, check
    assert (check.mrr, check.predecessor_mrr) == (0.0, 1.0) and check.test.p_value < 0.05
    assert docs.execute("SELECT active_version_id FROM pyembed.collections").fetchone() == (1,)
    assert history(docs)[-2:] == ["online_check", "rollback"]
    reason = docs.execute(
        "SELECT reason FROM pyembed.deployments WHERE action = 'rollback'"
    ).fetchone()
    assert reason is not None and reason[0].startswith("online metrics: rolled back: MRR")
    assert not online.unjudged(docs, "docs") and online.watch(db, "docs", searches=25) is None


def test_the_learner_decides_a_running_canary_and_waits_for_it_before_training(
    docs: psycopg.Connection, db_dsn: str
) -> None:
    db = database.Database(db_dsn)
    v2 = _candidate(db_dsn)
    with db.session() as conn:
        policy = policies.set_policy(
            conn,
            "docs",
            min_feedback=1,
            min_interval="0",
            after_training="canary",
            canary_mode="interleave",
            canary_min_searches=8,
            canary_max_searches=50,
            watch_searches=10,
        )
    assert (policy.after_training, policy.canary_min_searches, policy.watch_searches) == (
        "canary",
        8,
        10,
    )
    assert policy.canary() == canaries.Settings(
        min_searches=8, max_searches=50, require="not_worse"
    )
    canaries.start(db, "docs", v2, canaries.Settings(min_searches=8))
    harbours, apple_pie = embed(docs, "harbours", "apple pie")
    hits = _search(docs, apple_pie, harbours)
    _click_topic(docs, hits, HARBOURS)
    running = learner.Learner(db)
    (waiting,) = running.run_due()  # due (feedback came in), but the canary comes first
    assert waiting.skipped is not None and waiting.skipped.startswith("canary")
    for _ in range(8):
        _click_topic(docs, _search(docs, apple_pie, harbours), HARBOURS)
    (decided,) = running.run_due()
    assert decided.canary is not None and decided.canary.decision == "promoted"
    assert docs.execute("SELECT active_version_id FROM pyembed.collections").fetchone() == (v2,)
    # The promotion is watched next: no training until v2 has served 10 searches alone.
    (watching,) = running.run_due()
    assert watching.skipped == "the last promotion waits for its online check"
    with pytest.raises(psycopg.Error, match="canary_mode must be"):
        docs.execute("SELECT pyembed.set_learning_policy('docs', canary_mode => 'shadow')")


def test_the_canary_commands(docs: psycopg.Connection, db_dsn: str) -> None:
    v2 = _candidate(db_dsn)
    cli = CliRunner()
    started = cli.invoke(
        main, ["canary", "start", "docs", str(v2), "--dsn", db_dsn, "--min-searches", "3"]
    )
    assert started.exit_code == 0, started.output
    assert f"serves model version {v2}" in started.output
    harbours, apple_pie = embed(docs, "harbours", "apple pie")
    for _ in range(3):
        _click_topic(docs, _search(docs, apple_pie, harbours), HARBOURS)
    shown = cli.invoke(main, ["canary", "status", "docs", "--json", "--dsn", db_dsn])
    assert shown.exit_code == 0, shown.output
    (row,) = json.loads(shown.output)
    assert (row["candidate_wins"], row["verdict"]) == (3, "undecided")  # p = 0.25
    undecided = cli.invoke(main, ["canary", "decide", "docs", "--dsn", db_dsn])
    assert "no canary has a verdict yet" in undecided.output
    assert cli.invoke(main, ["canary", "end", "docs", "--dsn", db_dsn]).exit_code == 2
    ended = cli.invoke(main, ["canary", "end", "docs", "--promote", "--dsn", db_dsn])
    assert ended.exit_code == 0 and "promoted" in ended.output
    assert docs.execute("SELECT active_version_id FROM pyembed.collections").fetchone() == (v2,)
    metrics = cli.invoke(main, ["online-metrics", "docs", "--json", "--dsn", db_dsn])
    assert metrics.exit_code == 0 and json.loads(metrics.output) == []  # all were interleaved
    again = cli.invoke(main, ["canary", "end", "docs", "--abort", "--dsn", db_dsn])
    assert again.exit_code != 0 and "runs no canary" in again.output


def test_searches_never_fail_while_canaries_start_and_end(
    docs: psycopg.Connection, db_dsn: str
) -> None:
    db = database.Database(db_dsn)
    harbours, apple_pie = embed(docs, "harbours", "apple pie")
    failures: list[str] = []
    stop = threading.Event()
    counts = [0]

    def search_without_pause() -> None:
        with psycopg.connect(db_dsn, autocommit=True) as conn:
            register_vector(conn)
            while not stop.is_set():
                try:
                    hits = _search(conn, harbours, apple_pie)
                    if len(hits) != 6:
                        failures.append(f"{len(hits)} results")
                except Exception as exc:  # counted: the test is that there are none
                    failures.append(repr(exc))
                counts[0] += 1

    thread = threading.Thread(target=search_without_pause)
    thread.start()
    try:
        for decision in ("rejected", "promoted", "aborted"):
            canaries.start(db, "docs", _candidate(db_dsn))
            time.sleep(0.3)
            canaries.end(db, "docs", decision, "ended under load")
    finally:
        stop.set()
        thread.join()
    assert counts[0] > 20 and failures == []
