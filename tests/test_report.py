"""`pyembed report`: the page renders in a real headless browser, with every chart decoded."""

from __future__ import annotations

import tempfile
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from pyembed.cli.main import main
from pyembed.db import database
from pyembed.evaluation import eval_sets, retrieval
from pyembed.search import indexes, recall
from tests.helpers import chromium_dom, run_worker


@pytest.fixture
def history(db: psycopg.Connection, db_dsn: str, clean_cache: Path) -> psycopg.Connection:
    """A collection with an evaluation, an index tuning curve and a training loss curve."""
    db.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
    db.execute("INSERT INTO docs SELECT g, 'note <b>' || g FROM generate_series(1, 60) g")
    db.execute("SELECT pyembed.create_collection('docs', 'docs', ARRAY['body'])")
    run_worker(db_dsn)
    eval_sets.create_set(db, "docs", "<notes>", "manual", [("note 7", {(7,): 1.0})])
    retrieval.evaluate(database.Database(db_dsn), "docs", ks=(1, 10))
    indexes.create(database.Database(db_dsn), "docs", recall_queries=5)
    recall.tune(database.Database(db_dsn), "docs", queries_n=5)
    run = db.execute(
        "INSERT INTO pyembed.training_runs (collection_id, base_version_id, loss, status) "
        "SELECT id, 1, 'mnrl', 'done' FROM pyembed.collections RETURNING id"
    ).fetchone()
    assert run is not None
    db.execute(
        "INSERT INTO pyembed.training_metrics (run_id, step, loss) "
        "SELECT %s, g, 1.0 / g FROM generate_series(1, 10) g",
        run,
    )
    return db


def test_report_renders_in_headless_chromium(history: psycopg.Connection, db_dsn: str) -> None:
    out = Path(tempfile.mkdtemp(prefix="pyembed-report-")) / "report.html"
    result = CliRunner().invoke(main, ["report", "docs", "--out", str(out), "--dsn", db_dsn])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert page.count('<img alt="chart" src="data:image/png;base64,') == 3
    assert "&lt;notes&gt;" in page and "<notes>" not in page  # names are escaped
    dom = chromium_dom(out.as_uri())
    assert 'data-images-loaded="true"' in dom
    assert "Retrieval metrics by version" in dom and dom.count("<img") == 3


def test_report_of_an_unknown_collection(db_dsn: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["report", "nope", "--out", str(tmp_path / "r.html"), "--dsn", db_dsn]
    )
    assert result.exit_code == 1 and "'nope' does not exist" in result.output
