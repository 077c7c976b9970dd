"""CLI: database resolution order and clear, non-zero failures on bad connections."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable

import psycopg
import pytest
from click.testing import CliRunner

from pyembed import errors
from pyembed.cli.main import main
from pyembed.db import connection, migrate


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pyembed", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )


def test_dsn_resolution_order(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PYEMBED_DSN", "DATABASE_URL", "PGHOST", "PGPORT", "PGDATABASE", "PGSERVICE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("PGUSER", raising=False)
    monkeypatch.delenv("PGHOSTADDR", raising=False)
    assert connection.configured_dsn() is None
    monkeypatch.setenv("PGHOST", "db.example")
    assert connection.configured_dsn() == ""
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://u@h/d")
    assert connection.configured_dsn() == "postgresql://u@h/d"
    monkeypatch.setenv("PYEMBED_DSN", "postgresql://p@h/d")
    assert connection.configured_dsn() == "postgresql://p@h/d"
    assert connection.configured_dsn("host=x dbname=y") == "host=x dbname=y"


def test_describe_hides_the_password() -> None:
    assert connection.describe("postgresql://me:secret@h:6543/d") == "me@h:6543/d"


def test_migration_commands_round_trip(make_empty_db: Callable[[], str]) -> None:
    dsn = make_empty_db()
    runner = CliRunner()
    assert runner.invoke(main, ["db", "current", "--dsn", dsn]).output.strip() == "base"
    up = runner.invoke(main, ["db", "upgrade", "--dsn", dsn])
    assert up.exit_code == 0, up.output
    assert f"pyembed schema at {migrate.heads()[0]}" in up.output
    assert runner.invoke(main, ["db", "current", "--dsn", dsn]).output.strip() == migrate.heads()[0]
    status = runner.invoke(main, ["db", "status", "--dsn", dsn])
    assert status.exit_code == 0
    assert "0.8.6" in status.output
    history = runner.invoke(main, ["db", "history"])
    assert f"{migrate.heads()[0]} (head)" in history.output
    down = runner.invoke(main, ["db", "downgrade", "base", "--dsn", dsn])
    assert down.exit_code == 0, down.output
    assert runner.invoke(main, ["db", "current", "--dsn", dsn]).output.strip() == "base"


def test_env_dsn_is_used(db_dsn: str) -> None:
    result = run_cli("db", "current", env={"PYEMBED_DSN": db_dsn})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == migrate.heads()[0]


@pytest.mark.parametrize(
    ("dsn", "code", "words"),
    [
        ("postgresql://postgres@127.0.0.1:1/x", 3, "cannot connect to PostgreSQL"),
        ("not a dsn", 2, "the DSN is not valid"),
    ],
)
def test_bad_connection_gives_one_clear_message(dsn: str, code: int, words: str) -> None:
    result = run_cli("db", "upgrade", "--dsn", dsn)
    assert result.returncode == code
    assert words in result.stderr
    assert "fix:" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_database_names_the_fix(pg_port: int) -> None:
    result = run_cli("db", "status", "--dsn", f"postgresql://postgres@127.0.0.1:{pg_port}/nope")
    assert result.returncode == 3
    assert 'database "nope" does not exist' in result.stderr
    assert "createdb" in result.stderr


def test_sql_errors_are_translated_with_sqlstate(db_dsn: str) -> None:
    with (
        pytest.raises(errors.DatabaseError) as caught,
        connection.connect(db_dsn) as conn,
        errors.translated(),
    ):
        conn.execute("SELECT * FROM public.no_such_table")
    assert caught.value.sqlstate == "42P01"
    with (
        pytest.raises(errors.MigrationError) as missing,
        connection.connect(db_dsn) as conn,
        errors.translated(),
    ):
        conn.execute("SELECT * FROM pyembed.no_such_table")
    assert "pyembed db upgrade" in str(missing.value)


@pytest.mark.parametrize("command", [("models", "list"), ("index", "list"), ("failed", "list")])
def test_commands_on_an_unmigrated_database_say_to_upgrade(
    make_empty_db: Callable[[], str], command: tuple[str, ...]
) -> None:
    result = run_cli(*command, "--dsn", make_empty_db())
    assert result.returncode == errors.MigrationError.exit_code, result.stderr
    assert "pyembed db upgrade" in result.stderr
    assert "Traceback" not in result.stderr


def test_list_and_status_commands_print_json_for_scripts(
    db: psycopg.Connection, db_dsn: str
) -> None:
    db.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
    db.execute("SELECT pyembed.create_collection('docs', 'docs', ARRAY['body'])")
    runner = CliRunner()

    def as_json(*args: str) -> object:
        result = runner.invoke(main, [*args, "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    versions = as_json("models", "list", "--dsn", db_dsn)
    assert isinstance(versions, list)
    assert versions[0]["model"] == "all-MiniLM-L6-v2" and versions[0]["active_in"] == ["docs"]
    shown = as_json("models", "show", "1", "--dsn", db_dsn)
    assert isinstance(shown, dict) and shown["status"] == "ready" and shown["dimensions"] == 384
    assert as_json("index", "list", "--dsn", db_dsn) == []
    assert as_json("failed", "list", "--dsn", db_dsn) == []
    state = as_json("db", "status", "--dsn", db_dsn)
    assert isinstance(state, dict) and state["database"]["revision"] == migrate.heads()[0]
    assert as_json("db", "current", "--dsn", db_dsn) == {
        "revision": migrate.heads()[0],
        "head": migrate.heads()[0],
    }
    history = as_json("db", "history")
    assert isinstance(history, list) and history[-1]["head"] is True
