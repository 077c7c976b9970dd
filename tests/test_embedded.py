"""The embedded server: outlives the CLI, and refuses bad data directories and taken ports."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pyembed import errors
from pyembed.db import embedded, migrate


@pytest.fixture
def home() -> Iterator[Path]:
    # /tmp, not pytest's tmp_path: the server user must be able to traverse the parents.
    path = Path(tempfile.mkdtemp(prefix="pyembed-home-"))
    yield path
    server = embedded.EmbeddedServer(path)
    if (path / "pgdata" / "PG_VERSION").exists():
        with contextlib.suppress(errors.PyembedError):
            server.stop()
    shutil.rmtree(path, ignore_errors=True)


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYEMBED_HOME": str(home)}
    for name in ("PYEMBED_DSN", "DATABASE_URL", "PGHOST", "PGPORT", "PGDATABASE"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "pyembed", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_server_outlives_the_cli_and_stops(home: Path) -> None:
    started = _cli(home, "db", "start")
    assert started.returncode == 0, started.stderr
    dsn = _cli(home, "db", "dsn").stdout.strip()
    assert dsn.startswith("postgresql://postgres@127.0.0.1:")
    # A new process finds the server the first one started.
    with psycopg.connect(dsn) as conn:
        assert conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'plpgsql'"
        ).fetchone()
    state = _cli(home, "db", "status")
    assert state.returncode == 0, state.stderr
    assert "running" in state.stdout
    # Starting again is a no-op on the same port.
    assert _cli(home, "db", "start").returncode == 0
    assert _cli(home, "db", "dsn").stdout.strip() == dsn
    assert _cli(home, "db", "stop").returncode == 0
    stopped = _cli(home, "db", "status")
    assert stopped.returncode == 3
    assert "stopped" in stopped.stdout
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(dsn, connect_timeout=2)


def test_upgrade_starts_the_embedded_server_on_demand(home: Path) -> None:
    result = _cli(home, "db", "upgrade")
    assert result.returncode == 0, result.stderr
    assert f"pyembed schema at {migrate.heads()[0]}" in result.stdout
    assert _cli(home, "db", "current").stdout.strip() == migrate.heads()[0]


def test_taken_port_is_reported_and_nothing_is_created(home: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        with pytest.raises(
            errors.EmbeddedServerError, match=f"port {port} .* already taken"
        ) as err:
            embedded.EmbeddedServer(home, port=port).start()
        assert "PYEMBED_PORT" in str(err.value)
        result = _cli(home, "db", "start", "--port", str(port))
    assert result.returncode == 1
    assert "already taken" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (home / "pgdata").exists()


def test_data_directory_of_another_version_is_refused(home: Path) -> None:
    pgdata = home / "pgdata"
    pgdata.mkdir()
    (pgdata / "PG_VERSION").write_text("15\n")
    (pgdata / "base").mkdir()
    with pytest.raises(errors.EmbeddedServerError, match="belongs to PostgreSQL 15"):
        embedded.EmbeddedServer(home).start()
    result = _cli(home, "db", "status")
    assert result.returncode == 1
    assert "pg_dump" in result.stderr
    assert sorted(p.name for p in pgdata.iterdir()) == ["PG_VERSION", "base"]


def test_directory_that_is_not_a_cluster_is_refused_untouched(home: Path) -> None:
    pgdata = home / "pgdata"
    pgdata.mkdir()
    (pgdata / "notes.txt").write_text("mine")
    result = _cli(home, "db", "start")
    assert result.returncode == 1
    assert "not a PostgreSQL data directory" in result.stderr
    assert [p.name for p in pgdata.iterdir()] == ["notes.txt"]
    assert (pgdata / "notes.txt").read_text() == "mine"


def test_home_that_is_a_file_is_refused(home: Path) -> None:
    target = home / "file"
    target.write_text("x")
    with pytest.raises(errors.EmbeddedServerError, match="is a file"):
        embedded.EmbeddedServer(target).status()


def test_dsn_before_first_start_tells_what_to_do(home: Path) -> None:
    result = _cli(home, "db", "dsn")
    assert result.returncode == 1
    assert "pyembed db start" in result.stderr
