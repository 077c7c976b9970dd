"""Index management: concurrent builds recorded with measured recall, replace, tune, drop."""

from __future__ import annotations

import psycopg
import pytest
from click.testing import CliRunner
from pgvector.psycopg import register_vector

from pyembed import errors
from pyembed.cli.main import main
from pyembed.db import database
from pyembed.search import indexes, recall, stores
from tests.helpers import random_vector_collection, run_worker

ROWS = 2000


@pytest.fixture
def vectors(db: psycopg.Connection) -> psycopg.Connection:
    """A collection whose store holds ROWS random unit vectors (no model needed)."""
    random_vector_collection(db, ROWS)
    return db


def index_scans(dsn: str, name: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = %s", (name,)
        ).fetchone()
    return int(row[0]) if row else -1


def test_hnsw_build_is_recorded_with_recall_and_used_by_search(
    vectors: psycopg.Connection, db_dsn: str
) -> None:
    phases: list[str] = []
    result = indexes.create(
        database.Database(db_dsn),
        "docs",
        recall_queries=50,
        progress=lambda r: phases.append(r["phase"]),
    )
    assert result.index == "docs_v1_hnsw" and result.rows == ROWS
    assert result.recall_at_10 is not None and 0.8 <= result.recall_at_10 <= 1.0
    build = vectors.execute(
        "SELECT method, params, status, size_bytes > 0, duration_ms > 0, recall_at_10, "
        "recall_queries FROM pyembed.index_builds"
    ).fetchone()
    assert build == (
        "hnsw",
        {"m": 16, "ef_construction": 64},
        "ready",
        True,
        True,
        result.recall_at_10,
        50,
    )
    before = index_scans(db_dsn, "docs_v1_hnsw")
    with psycopg.connect(db_dsn) as app:  # searches from another session, then it closes
        register_vector(app)
        query = vectors.execute(
            "SELECT embedding FROM pyembed_store.docs_v1 WHERE id = 5"
        ).fetchone()
        rows = app.execute("SELECT pk FROM pyembed.search('docs', %s::vector, 5)", query).fetchall()
    assert rows[0] == ([5],)
    assert index_scans(db_dsn, "docs_v1_hnsw") > before  # the ANN index answered


def test_replacing_an_index_keeps_one_and_records_both(
    vectors: psycopg.Connection, db_dsn: str
) -> None:
    indexes.create(database.Database(db_dsn), "docs", recall_queries=10)
    indexes.create(database.Database(db_dsn), "docs", m=8, ef_construction=32, recall_queries=10)
    listed = stores.list_indexes(vectors)
    assert [(i["index_name"], i["valid"], i["params"]["m"]) for i in listed] == [
        ("docs_v1_hnsw", True, 8)
    ]
    assert vectors.execute("SELECT status FROM pyembed.index_builds ORDER BY id").fetchall() == [
        ("dropped",),
        ("ready",),
    ]


def test_ivfflat_lists_tuning_and_drop(vectors: psycopg.Connection, db_dsn: str) -> None:
    result = indexes.create(database.Database(db_dsn), "docs", method="ivfflat", recall_queries=20)
    assert result.params == {"lists": indexes.default_lists(ROWS)} == {"lists": 2}
    curve = recall.tune(database.Database(db_dsn), "docs", queries_n=20)
    assert [point["probes"] for point in curve] == list(recall.IVFFLAT_PROBES)
    assert curve[-1]["recall_at_10"] >= curve[0]["recall_at_10"]
    assert curve[-1]["recall_at_10"] == pytest.approx(1.0)  # probing every list is exact
    stored = vectors.execute(
        "SELECT tuning FROM pyembed.index_builds WHERE status = 'ready'"
    ).fetchone()
    assert stored is not None and len(stored[0]) == len(curve)
    assert indexes.drop(database.Database(db_dsn), "docs") == ["docs_v1_ivfflat"]
    assert stores.list_indexes(vectors) == []
    # Without an index, search still answers (exact scan).
    query = vectors.execute("SELECT embedding FROM pyembed_store.docs_v1 WHERE id = 9").fetchone()
    assert vectors.execute(
        "SELECT pk FROM pyembed.search('docs', %s::vector, 1)", query
    ).fetchone() == ([9],)


def test_default_lists_follow_the_row_count() -> None:
    assert [indexes.default_lists(n) for n in (0, 999, 12_000, 1_000_000, 4_000_000)] == [
        1,
        1,
        12,
        1000,
        2000,
    ]


def test_bad_requests(vectors: psycopg.Connection, db_dsn: str) -> None:
    with pytest.raises(errors.CollectionError, match="does not exist"):
        indexes.create(database.Database(db_dsn), "nope")
    with pytest.raises(errors.ConfigError, match="unknown index method"):
        indexes.create(database.Database(db_dsn), "docs", method="btree")
    with pytest.raises(errors.CollectionError, match="no ANN index to tune"):
        recall.tune(database.Database(db_dsn), "docs")


def test_cli_create_list_tune(vectors: psycopg.Connection, db_dsn: str) -> None:
    runner = CliRunner()
    created = runner.invoke(main, ["index", "create", "docs", "--dsn", db_dsn, "--m", "8"])
    assert created.exit_code == 0, created.output
    assert "recall@10" in created.output
    listed = runner.invoke(main, ["index", "list", "--dsn", db_dsn])
    assert "docs_v1_hnsw" in listed.output
    tuned = runner.invoke(main, ["index", "tune", "docs", "--dsn", db_dsn, "--queries", "10"])
    assert tuned.exit_code == 0, tuned.output
    assert "ef_search" in tuned.output
    missing = runner.invoke(main, ["index", "tune", "nope", "--dsn", db_dsn])
    assert missing.exit_code == 1


def test_tune_with_a_target_sets_the_default_that_search_uses(
    vectors: psycopg.Connection, db_dsn: str
) -> None:
    indexes.create(database.Database(db_dsn), "docs", method="ivfflat", recall_queries=10)
    curve = recall.tune(database.Database(db_dsn), "docs", queries_n=20, target_recall=0.99)
    chosen = recall.choose(curve, 0.99)
    assert chosen is not None
    assert chosen == next(p for p in curve if p["recall_at_10_low"] >= 0.99)
    assert all(p["recall_at_10_low"] <= p["recall_at_10"] for p in curve)
    options = vectors.execute(
        "SELECT index_options FROM pyembed.collections WHERE name = 'docs'"
    ).fetchone()
    assert options == ({"probes": chosen["probes"]},)
    query = vectors.execute("SELECT embedding FROM pyembed_store.docs_v1 WHERE id = 3").fetchone()
    with vectors.transaction():
        vectors.execute("SELECT * FROM pyembed.search('docs', %s::vector, 1)", query)
        used = vectors.execute("SELECT current_setting('ivfflat.probes')").fetchone()
    assert used == (str(chosen["probes"]),)
    with pytest.raises(errors.CollectionError, match=r"reaches recall@10 1.5"):
        recall.tune(database.Database(db_dsn), "docs", queries_n=5, target_recall=1.5)


def test_worker_builds_the_index_once_the_collection_is_big_enough(
    db: psycopg.Connection, db_dsn: str
) -> None:
    db.execute("CREATE TABLE notes (id int PRIMARY KEY, body text)")
    db.execute(
        "SELECT pyembed.create_collection('notes', 'notes', ARRAY['body'], "
        "auto_index_min_rows => 30)"
    )
    db.execute("SELECT pyembed.alter_collection('notes', index_options => '{\"m\": 8}')")
    db.execute("INSERT INTO notes SELECT g, 'note number ' || g FROM generate_series(1, 10) g")
    run_worker(db_dsn)
    assert stores.list_indexes(db) == []  # 10 rows: not yet
    db.execute("INSERT INTO notes SELECT g, 'note number ' || g FROM generate_series(11, 40) g")
    run_worker(db_dsn)
    built = stores.list_indexes(db)
    assert [(i["index_name"], i["valid"], i["params"]) for i in built] == [
        ("notes_v1_hnsw", True, {"m": 8, "ef_construction": 64})
    ]
    db.execute("INSERT INTO notes VALUES (41, 'one more')")
    run_worker(db_dsn)  # already indexed: nothing more is built
    assert db.execute("SELECT count(*) FROM pyembed.index_builds").fetchone() == (1,)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ("index_options => '{\"m\": 0}'", "index_options not understood: m = 0"),
        ("index_options => '{\"colour\": 3}'", "index_options not understood: colour = 3"),
        ("index_options => '[1]'", "must be a JSON object"),
        ("auto_index_min_rows => -5", "must not be negative"),
        ("index_method => 'btree'", 'unknown index method "btree"'),
    ],
)
def test_bad_index_settings_are_refused(
    vectors: psycopg.Connection, arguments: str, message: str
) -> None:
    with pytest.raises(psycopg.Error, match=message):
        vectors.execute(f"SELECT pyembed.alter_collection('docs', {arguments})")


def test_tuning_chooses_by_the_lower_confidence_bound_not_the_sample_mean() -> None:
    assert recall.lower_bound([1.0] * 20) == 1.0  # no spread: the mean is the bound
    mixed = [1.0, 0.9] * 50  # mean 0.95 over 100 queries
    assert recall.lower_bound(mixed) == pytest.approx(0.95 - 1.645 * 0.05025 / 10, abs=1e-4)
    curve = [
        {"ef_search": 40, "recall_at_10": 0.957, "recall_at_10_low": 0.946},  # mean passes
        {"ef_search": 80, "recall_at_10": 0.978, "recall_at_10_low": 0.969},
    ]
    assert recall.choose(curve, 0.95) == curve[1]  # the first whose bound clears the target
    assert recall.choose(curve, 0.99) is None
    assert recall.choose([{"probes": 8, "recall_at_10": 0.96}], 0.95) == {  # stored before bounds
        "probes": 8,
        "recall_at_10": 0.96,
    }
