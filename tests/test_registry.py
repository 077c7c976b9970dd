"""The model registry: files in the database, verified by hash, cached by hash, exported."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import psycopg
import pytest
from click.testing import CliRunner

from pyembed import errors
from pyembed.cli.main import main
from pyembed.db import database
from pyembed.models import artifacts, folders, loading, registry
from tests.conftest import PACKAGE

TEXTS = ["a stone wall", "the harbour at night", "apple pie"]


def test_round_trip_register_load_on_a_clean_cache_same_embeddings(
    db: psycopg.Connection, db_dsn: str, clean_cache: Path
) -> None:
    done = registry.register(database.Database(db_dsn), "minilm", PACKAGE)
    assert (done.model, done.version) == ("minilm", 1)
    folder = folders.resolve_source(PACKAGE)
    assert done.sha256 == artifacts.manifest_sha256(artifacts.manifest(folder))
    row = db.execute(
        "SELECT m.dimensions, m.max_seq_length, m.pooling, m.normalize, v.status, v.kind, "
        "v.artifact_source FROM pyembed.model_versions v "
        "JOIN pyembed.models m ON m.id = v.model_id WHERE v.id = %s",
        (done.id,),
    ).fetchone()
    assert row == (384, 256, "mean", True, "ready", "pretrained", "database")
    stored = loading.load(db, done.id).model.encode(TEXTS)
    packaged = loading.load(db, 1).model.encode(TEXTS)
    np.testing.assert_allclose(stored, packaged, atol=1e-6)
    assert (clean_cache / done.sha256).is_dir()
    # A second load needs nothing from the database: the cache by hash serves it.
    db.execute("DELETE FROM pyembed.model_artifacts WHERE version_id = %s", (done.id,))
    loading._models.clear()
    again = loading.load(db, done.id).model.encode(TEXTS)
    np.testing.assert_allclose(again, packaged, atol=1e-6)


@pytest.mark.parametrize(
    "damage",
    [
        "UPDATE pyembed.model_artifacts SET data = overlay(data placing '\\x00'::bytea from 100) "
        "WHERE version_id = %s AND path = 'model.safetensors' AND part = 0",
        "DELETE FROM pyembed.model_artifacts WHERE version_id = %s AND path = 'model.safetensors' "
        "AND part = (SELECT max(part) FROM pyembed.model_artifacts WHERE version_id = %s "
        "AND path = 'model.safetensors')",
    ],
    ids=["tampered", "truncated"],
)
def test_a_damaged_artifact_is_refused_naming_the_version(
    db: psycopg.Connection, db_dsn: str, clean_cache: Path, damage: str
) -> None:
    done = registry.register(database.Database(db_dsn), "minilm", PACKAGE)
    db.execute(damage, (done.id,) * damage.count("%s"))
    with pytest.raises(
        errors.ModelError, match=rf"minilm v1 \(id {done.id}\).*truncated, tampered"
    ):
        loading.load(db, done.id)
    assert not (clean_cache / done.sha256).exists()  # nothing unverified is cached


def test_versions_of_one_model_and_their_names(
    db: psycopg.Connection, db_dsn: str, small_model: Path
) -> None:
    first = registry.register(database.Database(db_dsn), "minilm", PACKAGE)
    second = registry.register(
        database.Database(db_dsn), "minilm", PACKAGE, parent_version_id=first.id
    )
    assert second.version == 2
    assert db.execute(
        "SELECT kind, parent_version_id FROM pyembed.model_versions WHERE id = %s", (second.id,)
    ).fetchone() == ("fine_tuned", first.id)
    assert registry.resolve_version(db, "minilm@1") == first.id
    assert registry.resolve_version(db, "minilm") == second.id
    assert registry.resolve_version(db, str(first.id)) == first.id
    with pytest.raises(errors.ModelError, match="no model version 'minilm@7'"):
        registry.resolve_version(db, "minilm@7")
    with pytest.raises(errors.ModelError, match=r"is 384-dimensional, but .* 32 dimensions"):
        registry.register(database.Database(db_dsn), "minilm", str(small_model))
    listed = {(r["model"], r["version"]) for r in registry.list_versions(db)}
    assert {("minilm", 1), ("minilm", 2), ("all-MiniLM-L6-v2", 1)} <= listed
    # What embeds for a name (pyembed.embed, the text search, `pyembed serve`): one SQL rule.
    db.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
    db.execute("SELECT pyembed.create_collection('docs', 'docs', ARRAY['body'])")
    for name, expected in [
        ("docs", 1),  # a collection: its active version
        ("minilm", second.id),  # a model: its newest ready version
        ("minilm@1", first.id),
        (str(second.id), second.id),
        ("minilm@7", None),
        ("nothing", None),
        ("9" * 30, None),  # digits beyond bigint: no version, not an error
    ]:
        found = db.execute("SELECT pyembed.embedding_version(%s)", (name,)).fetchone()
        assert found == (expected,), name


def test_folders_that_are_not_models_are_refused(db_dsn: str, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(errors.ModelError, match="is not a model folder"):
        registry.register(database.Database(db_dsn), "junk", str(tmp_path))
    (tmp_path / "modules.json").write_text('[{"idx": 0, "name": "0", "path": "", "type": "x.Y"}]')
    with pytest.raises(errors.ModelError, match="does not load as a sentence-transformers model"):
        registry.register(database.Database(db_dsn), "junk", str(tmp_path))
    with pytest.raises(errors.ModelError, match="not a folder, an installed model package, or in"):
        registry.register(database.Database(db_dsn), "junk", "no-such-package-or-folder")
    with pytest.raises(errors.ModelError, match="neither a model folder nor an installed"):
        registry.register(database.Database(db_dsn), "junk", "./no/such folder")


def test_a_hub_id_comes_from_the_local_hugging_face_cache_only(
    db: psycopg.Connection, db_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    revision = "a" * 40
    repo = tmp_path / "hub" / "models--acme--minilm"
    shutil.copytree(folders.resolve_source(PACKAGE), repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    done = registry.register(database.Database(db_dsn), "acme-minilm", "acme/minilm")
    again = registry.register(database.Database(db_dsn), "acme-minilm", f"acme/minilm@{revision}")
    assert done.sha256 == again.sha256
    row = db.execute(
        "SELECT m.base_model, m.dimensions, v.produced_by->>'source' FROM pyembed.models m "
        "JOIN pyembed.model_versions v ON v.model_id = m.id WHERE v.id = %s",
        (done.id,),
    ).fetchone()
    assert row == ("acme/minilm", 384, "acme/minilm")
    # Nothing is downloaded: a hub id missing from the cache is an error that says what to do.
    with pytest.raises(errors.ModelError, match=r"'acme/other' is not a folder") as caught:
        registry.register(database.Database(db_dsn), "other", "acme/other")
    assert "hf download acme/other" in (caught.value.hint or "")
    assert str(tmp_path / "hub") in caught.value.message


def test_export_writes_the_verified_files(
    db: psycopg.Connection, db_dsn: str, clean_cache: Path, tmp_path: Path
) -> None:
    done = registry.register(database.Database(db_dsn), "minilm", PACKAGE)
    out = registry.export(database.Database(db_dsn), done.id, tmp_path / "out")
    assert artifacts.manifest_sha256(artifacts.manifest(out)) == done.sha256
    with pytest.raises(errors.ModelError, match="is not empty"):
        registry.export(database.Database(db_dsn), done.id, out)


def test_cli_register_list_show(db_dsn: str, clean_cache: Path) -> None:
    runner = CliRunner()
    made = runner.invoke(main, ["models", "register", "minilm", "--from", PACKAGE, "--dsn", db_dsn])
    assert made.exit_code == 0, made.output
    assert "registered minilm v1" in made.output
    listed = runner.invoke(main, ["models", "list", "--dsn", db_dsn])
    assert "minilm" in listed.output and "all-MiniLM-L6-v2" in listed.output
    shown = runner.invoke(main, ["models", "show", "minilm@1", "--dsn", db_dsn])
    assert shown.exit_code == 0, shown.output
    assert "model.safetensors" in shown.output
    missing = runner.invoke(main, ["models", "show", "nope@3", "--dsn", db_dsn])
    assert missing.exit_code == 1 and "no model version" in missing.output


def test_processes_caching_one_version_at_once_share_the_winners_copy(tmp_path: Path) -> None:
    source = tmp_path / "model"
    (source / "sub").mkdir(parents=True)
    (source / "config.json").write_text("{}")
    (source / "sub" / "weights.bin").write_bytes(b"weights" * 1000)
    sha = artifacts.manifest_sha256(artifacts.manifest(source))
    cache = tmp_path / "cache"

    def write_while_another_process_wins(staging: Path) -> None:
        shutil.copytree(source, cache / sha)  # the other process renamed its copy first
        shutil.copytree(source, staging, dirs_exist_ok=True)

    folder = artifacts.local_folder(
        "folder", sha, "minilm v1", cache, write_while_another_process_wins
    )
    assert folder == cache / sha
    assert [p.name for p in cache.iterdir()] == [sha]  # the loser's staging copy is gone
    with pytest.raises(errors.ModelError, match="hash to"):
        artifacts.local_folder(
            "folder",
            "0" * 64,
            "bad v1",
            cache,
            lambda d: shutil.copytree(source, d, dirs_exist_ok=True),
        )
    assert [p.name for p in cache.iterdir()] == [sha]  # nothing half-written stays behind
