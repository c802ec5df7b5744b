"""The core performs no I/O: it imports no client, database, git or web library."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import app.core

FORBIDDEN = (
    "httpx",
    "githubkit",
    "pygit2",
    "starlette",
    "dbos",
    "sqlalchemy",
    "socket",
    "subprocess",
    "requests",
    "uvicorn",
    "random",
    "time",
    "datetime.datetime.now",
)
CORE = Path(app.core.__file__).parent


@pytest.mark.parametrize("path", sorted(CORE.rglob("*.py")), ids=lambda p: p.name)
def test_core_module_imports_nothing_that_does_io(path: Path) -> None:
    tree = ast.parse(path.read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    bad = {name for name in imported for f in FORBIDDEN if name == f or name.startswith(f + ".")}
    assert not bad, f"{path.name} imports {sorted(bad)}"
