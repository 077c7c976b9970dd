"""Similarity, clustering, bias and efficiency evaluations: the math, and stored runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import psycopg
import pytest

from pyembed import errors
from pyembed.db import database
from pyembed.evaluation import intrinsic, intrinsic_runs
from tests.helpers import run_worker


def test_correlations_on_hand_computed_cases() -> None:
    assert intrinsic.spearman(np.array([1, 2, 3, 4.0]), np.array([1, 3, 2, 4.0])) == pytest.approx(
        0.8
    )
    # Ties share the mean rank: ranks (1.5, 1.5, 3) against (1, 2, 3) -> r = sqrt(3)/2.
    assert intrinsic.spearman(np.array([1, 1, 2.0]), np.array([1, 2, 3.0])) == pytest.approx(
        3**0.5 / 2
    )
    assert intrinsic.pearson(np.array([1, 2, 3.0]), np.array([2, 4, 6.0])) == pytest.approx(1.0)
    assert intrinsic.pearson(np.array([1, 2, 3.0]), np.array([3, 2, 1.0])) == pytest.approx(-1.0)


def test_clustering_finds_clear_clusters_and_not_made_up_ones() -> None:
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(3, 8)) * 5
    vectors = np.concatenate([c + rng.normal(size=(20, 8)) for c in centres])
    truth = [f"group {i // 20}" for i in range(60)]
    clear = intrinsic.clustering(vectors, truth, seed=1)
    assert clear["adjusted_rand_index"] == pytest.approx(1.0)
    assert clear["silhouette"] > 0.5 and clear["clusters"] == 3.0
    random_labels = list(rng.permutation(truth))
    assert abs(intrinsic.clustering(vectors, random_labels)["adjusted_rand_index"]) < 0.1
    with pytest.raises(errors.ConfigError, match="at least two labels"):
        intrinsic.clustering(vectors, ["one"] * 60)


def test_weat_reports_the_direction_and_size_of_an_association() -> None:
    sets = intrinsic.WeatSets(
        "toy", ["x1", "x2", "x3"], ["y1", "y2", "y3"], ["a1", "a2"], ["b1", "b2"]
    )
    rng = np.random.default_rng(0)
    a_dir, b_dir = rng.normal(size=16), rng.normal(size=16)

    def encode(words: list[str]) -> np.ndarray:
        # x words lean to the A direction, y words to B, with a little noise.
        lean = {"x": a_dir, "a": a_dir, "y": b_dir, "b": b_dir}
        return np.stack([lean[w[0]] + 0.3 * rng.normal(size=16) for w in words])

    result = intrinsic.weat(encode, sets, permutations=500)
    assert result["effect_size"] > 1.0 and result["p_value"] < 0.1
    swapped = intrinsic.WeatSets(
        "swapped", sets.targets_y, sets.targets_x, sets.attributes_a, sets.attributes_b
    )
    assert intrinsic.weat(encode, swapped, permutations=500)["effect_size"] < -1.0


def test_bad_inputs(tmp_path: Path) -> None:
    bad = tmp_path / "sts.tsv"
    bad.write_text("s1\ts2\tscore\na\tb\t1\nc\td\tnot-a-number\n")
    with pytest.raises(errors.ConfigError, match=r"sts\.tsv, line 3"):
        intrinsic.load_sts(bad)
    weat = tmp_path / "weat.json"
    weat.write_text(json.dumps({"name": "x", "targets_x": ["a"]}))
    with pytest.raises(errors.ConfigError, match="a WEAT file needs"):
        intrinsic.WeatSets.load(weat)
    with pytest.raises(errors.PyembedError, match="undefined values for spearman"):
        intrinsic.finite({"spearman": float("nan"), "pearson": 0.5})


@pytest.fixture
def labelled(db: psycopg.Connection, db_dsn: str, clean_cache: Path) -> psycopg.Connection:
    db.execute("CREATE TABLE docs (id int PRIMARY KEY, body text, topic text)")
    topics = {
        "food": ["apple pie", "bread and butter", "a bowl of soup", "roast chicken"],
        "sea": ["ships in the harbour", "waves on the shore", "a sailing boat", "the tide"],
        "music": ["a violin concert", "piano lessons", "a rock band", "singing a song"],
    }
    rows = [
        (i, text, topic)
        for i, (topic, text) in enumerate((t, x) for t, texts in topics.items() for x in texts)
    ]
    with db.cursor() as cur:
        cur.executemany("INSERT INTO docs VALUES (%s, %s, %s)", rows)
    db.execute("SELECT pyembed.create_collection('docs', 'docs', ARRAY['body'])")
    run_worker(db_dsn)
    return db


def test_every_kind_is_stored_as_an_evaluation_run(
    labelled: psycopg.Connection, db_dsn: str, tmp_path: Path
) -> None:
    sts = tmp_path / "sts.tsv"
    sts.write_text(
        "sentence1\tsentence2\tscore\n"
        "a cat sits\ta cat is sitting\t5\n"
        "a man cooks\tsomeone prepares food\t3.8\n"
        "the stock market fell\ta child plays football\t0.2\n"
        "a dog barks\tthe weather is sunny\t0.5\n"
    )
    _, similarity = intrinsic_runs.run(
        database.Database(db_dsn), "docs", "similarity", sts_file=sts
    )
    assert similarity["spearman"] > 0.5
    _, clustering = intrinsic_runs.run(
        database.Database(db_dsn), "docs", "clustering", label_column="topic"
    )
    assert clustering["adjusted_rand_index"] > 0.2 and clustering["clusters"] == 3  # above chance
    _, bias = intrinsic_runs.run(database.Database(db_dsn), "docs", "bias")
    assert bias["effect_size"] > 0  # flowers are more pleasant than insects, as in every model
    _, speed = intrinsic_runs.run(
        database.Database(db_dsn), "docs", "efficiency", batch_sizes=(1, 8)
    )
    assert set(speed) == {
        "texts_per_second@1",
        "texts_per_second@8",
        "peak_memory_mib@1",
        "peak_memory_mib@8",
    }
    kinds = labelled.execute(
        "SELECT kind, count(*) FROM pyembed.eval_results GROUP BY kind ORDER BY kind"
    ).fetchall()
    assert kinds == [("bias", 2), ("clustering", 3), ("efficiency", 4), ("similarity", 2)]
    with pytest.raises(errors.PyembedError, match='column "colour" does not exist'):
        intrinsic_runs.run(database.Database(db_dsn), "docs", "clustering", label_column="colour")
