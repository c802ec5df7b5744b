"""The core performs no I/O and reads no clock: it imports nothing that could, and calls
no built-in that does."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import app.core

FORBIDDEN_MODULES = (
    "httpx",
    "githubkit",
    "pygit2",
    "starlette",
    "dbos",
    "sqlalchemy",
    "uvicorn",
    "requests",
    "socket",
    "subprocess",
    "os",
    "pathlib",
    "shutil",
    "tempfile",
    "io",
    "time",
    "random",
    "secrets",
    "uuid",
    "threading",
    "asyncio",
    "logging",
)
FORBIDDEN_CALLS = ("open", "input", "print", "exec", "eval")
FORBIDDEN_METHODS = ("now", "today", "utcnow", "fromtimestamp_now")
CORE = Path(app.core.__file__).parent


@pytest.mark.parametrize("path", sorted(CORE.rglob("*.py")), ids=lambda p: p.name)
def test_core_module_does_no_io(path: Path) -> None:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        found.update(
            name
            for name in names
            for bad in FORBIDDEN_MODULES
            if name == bad or name.startswith(bad + ".")
        )
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_CALLS:
                found.add(f"{node.func.id}()")
            if isinstance(node.func, ast.Attribute) and node.func.attr in FORBIDDEN_METHODS:
                found.add(f".{node.func.attr}()")
    assert not found, f"{path.name} uses {sorted(found)}"
