"""`pyembed dashboard`: its state as each role sees it, and the live page in headless chromium."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg.types.json import Jsonb

from pyembed.db import database
from pyembed.evaluation import eval_sets, retrieval
from pyembed.serve import dashboard
from tests.helpers import chromium_dom, run_worker, serving


@pytest.fixture
def story(db: psycopg.Connection, db_dsn: str, clean_cache: Path) -> psycopg.Connection:
    """A collection with an evaluated version, a promotion, a policy and two training runs."""
    db.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
    db.execute("INSERT INTO docs SELECT g, 'note ' || g FROM generate_series(1, 30) g")
    db.execute("SELECT pyembed.create_collection('docs', 'docs', ARRAY['body'])")
    run_worker(db_dsn)
    eval_sets.create_set(db, "docs", "<notes>", "manual", [("note 7", {(7,): 1.0})])
    retrieval.evaluate(database.Database(db_dsn), "docs", ks=(1, 10))
    db.execute("SELECT pyembed.set_learning_policy('docs', 50)")
    db.execute(
        "INSERT INTO pyembed.training_runs (collection_id, base_version_id, loss, status, "
        "triggered_by, outcome, outcome_reason, data_summary) "
        "SELECT id, 1, 'mnrl', 'done', 'policy', 'refused', 'does not beat <the> active one', "
        "'{\"pairs\": 12}' FROM pyembed.collections"
    )
    db.execute(
        "INSERT INTO pyembed.deployments (collection_id, action, to_version_id, reason, metrics) "
        "SELECT id, 'promote', 1, 'first', %s FROM pyembed.collections",
        (Jsonb({"metric": "ndcg@10", "candidate": 0.61, "active": 0.55, "p_value": 0.003}),),
    )
    # A running canary whose candidate won one interleaved search, and a plain search of the
    # active version clicked at rank 2.
    canary = db.execute(
        "INSERT INTO pyembed.canaries (collection_id, candidate_version_id, baseline_version_id) "
        "SELECT id, 1, 1 FROM pyembed.collections RETURNING id"
    ).fetchone()
    for canary_id, teams, clicked in ((canary[0], [1, 0], [1]), (None, None, [2])):
        db.execute(
            "WITH q AS (INSERT INTO pyembed.query_log (collection_id, model_version_id, k, "
            "result_count, latency_ms, result_pks, result_chunk_seqs, result_distances, "
            "canary_id, result_teams) SELECT id, 1, 2, 2, 1, ARRAY['[1]', '[2]']::jsonb[], "
            "'{0,0}', '{0.1,0.2}', %s, %s FROM pyembed.collections RETURNING id) "
            "INSERT INTO pyembed.feedback (query_id, pk) SELECT id, %s FROM q",
            (canary_id, teams, Jsonb(clicked)),
        )
    return db


def test_the_state_has_every_section_and_a_reader_is_told_what_it_may_not_see(
    story: psycopg.Connection, db_dsn: str
) -> None:
    found = dashboard.state(database.Database(db_dsn))
    assert [c["collection"] for c in found["collections"]] == ["docs"]
    (version,) = found["versions"]
    assert version["active"] and version["eval_set"] == "<notes>"
    assert version["metrics"]["ndcg@10"] == pytest.approx(1.0)
    assert found["deployments"][0]["p_value"] == pytest.approx(0.003)
    assert found["training"][0]["outcome"] == "refused" and found["training"][0]["pairs"] == 12
    assert found["learning"][0]["min_feedback"] == 50 and found["denied"] == {}
    (canary,) = found["canaries"]
    assert (canary["candidate_wins"], canary["baseline_wins"], canary["verdict"]) == (
        1,
        0,
        "undecided",
    )
    (served,) = found["online"]  # the interleaved search counts for the canary only
    assert (served["model_version_id"], served["searches"], served["mrr"]) == (1, 1, 0.5)
    # It follows the database: a new run shows on the next look.
    story.execute(
        "INSERT INTO pyembed.training_runs (collection_id, base_version_id, loss) "
        "SELECT id, 1, 'cached_mnrl' FROM pyembed.collections"
    )
    assert dashboard.state(database.Database(db_dsn))["training"][0]["loss"] == "cached_mnrl"
    reader = f"t_{uuid.uuid4().hex[:8]}"
    story.execute(f'CREATE ROLE "{reader}" LOGIN IN ROLE pyembed_reader')
    try:
        story.execute(f'GRANT SELECT ON docs TO "{reader}"')
        seen = dashboard.state(database.Database(db_dsn.replace("postgres@", f"{reader}@")))
        assert [c["collection"] for c in seen["collections"]] == ["docs"]
        assert seen["learning"] is None and "permission denied" in seen["denied"]["learning"]
        assert seen["canaries"] is None and seen["online"] is None  # clicks of every tenant
    finally:
        story.execute(f'DROP OWNED BY "{reader}"')
        story.execute(f'DROP ROLE "{reader}"')


def test_the_page_renders_and_keeps_updating_in_headless_chromium(
    story: psycopg.Connection, db_dsn: str
) -> None:
    app = dashboard.create_app(database.Database(db_dsn), refresh_seconds=1.0)
    with serving(app) as url:
        response = httpx.get(f"{url}/api/state")
        assert (
            response.status_code == 200
            and "default-src 'none'" in response.headers["content-security-policy"]
        )
        assert json.loads(response.text)["collections"][0]["collection"] == "docs"
        dom = chromium_dom(f"{url}/", budget_ms=4000)
    polls = int(dom.split('data-polls="', 1)[1].split('"', 1)[0])
    assert polls >= 2, "the page polls for new state"
    assert 'data-collection="docs"' in dom
    assert "all-MiniLM-L6-v2 v1 (serving)" in dom
    assert "&lt;notes&gt;" in dom and "<notes>" not in dom  # database text stays text
    assert "does not beat &lt;the&gt; active one" in dom
    assert "ndcg@10 0.610 vs 0.550, p = 0.0030" in dom
    assert dom.count('class="version"') == 1 and 'class="deployment"' in dom
    assert "new feedback" in dom and '<div id="error" style="display: none;"></div>' in dom
    assert "wins · losses · ties" in dom and "<b>1 · 0 · 0</b>" in dom and 'class="score"' in dom
    assert "<td>0.5000</td>" in dom  # the serving version's online MRR
