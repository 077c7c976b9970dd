"""The built wheel carries sql/ and migrations/ and can migrate a database on its own."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

from pyembed.db import migrate

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_contains_sql_and_migrations(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in (ROOT / "sql").rglob("*.sql"):
        assert f"pyembed/_resources/sql/{path.relative_to(ROOT / 'sql')}" in names
    for path in (ROOT / "migrations").rglob("*.py"):
        assert f"pyembed/_resources/migrations/{path.relative_to(ROOT / 'migrations')}" in names
    assert "pyembed/py.typed" in names
    assert "pyembed/demo/demo.sql" in names  # the demo's SQL travels with the demo


def test_installed_wheel_migrates_without_the_source_tree(
    wheel: Path, tmp_path: Path, make_empty_db: Callable[[], str]
) -> None:
    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    dsn = make_empty_db()
    script = (
        "import pyembed, pyembed.db.database as d, pyembed.db.migrate as m;"
        "import pyembed.db.sql_files as r;"
        f"print(pyembed.__file__); print(r.sql_dir()); print(m.upgrade(d.Database({dsn!r})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(unpacked)},
        capture_output=True,
        text=True,
        check=True,
    )
    package_file, sql_dir, revision = result.stdout.split()
    assert package_file.startswith(str(unpacked))
    assert sql_dir == str(unpacked / "pyembed" / "_resources" / "sql")
    assert revision == migrate.heads()[0]
