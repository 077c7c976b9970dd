"""The shape of the package: modules by concern, none too long, no import cycle, a light core."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "pyembed"
MAX_LINES = 300


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every pyembed module `name` imports, at any depth of its code (lazy imports count)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and target != "pyembed":
                out.add(target)
    return out


def test_no_module_is_longer_than_300_lines() -> None:
    long = {
        name: n
        for name, path in _modules().items()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"split these modules by what they hold: {long}"


def test_no_import_cycle() -> None:
    modules = _modules()
    graph = {name: _imports(name, path, set(modules)) for name, path in modules.items()}
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            cycle = [*trail[trail.index(name) :], name]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if name in done:
            return
        for target in sorted(graph[name]):
            visit(target, [*trail, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


def test_subpackage_inits_only_document() -> None:
    for name, path in _modules().items():
        if path.name == "__init__.py" and name.count(".") == 1:
            tree = ast.parse(path.read_text(encoding="utf-8"))
            assert ast.get_docstring(tree), f"{name} says what it holds"
            assert len(tree.body) == 1, f"{name}: importing pyembed.X must not load its modules"


@pytest.mark.parametrize(
    "module",
    [
        "pyembed",
        "pyembed.db.migrate",
        "pyembed.search.client",
        "pyembed.cli.main",
        "pyembed.models.in_backend",  # what a PostgreSQL backend imports for pyembed.embed
    ],
)
def test_core_modules_load_no_torch(module: str) -> None:
    heavy = ["torch", "sentence_transformers", "transformers", "fastapi", "matplotlib"]
    if module in ("pyembed", "pyembed.models.in_backend", "pyembed.search.client"):
        heavy += ["sqlalchemy", "alembic"]
    script = f"import sys, {module}; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]", f"import {module} loaded {result.stdout.strip()}"
