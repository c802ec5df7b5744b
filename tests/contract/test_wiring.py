"""Every fake GitHub in the suite has the contract: a test cannot opt out by forgetting it."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_every_fake_github_is_given_the_contract() -> None:
    unchecked = []
    for file in sorted(TESTS.rglob("*.py")):
        for node in ast.walk(ast.parse(file.read_text(), str(file))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "FakeGitHub"
                and "contract" not in {k.arg for k in node.keywords}
            ):
                unchecked.append(f"{file.relative_to(TESTS.parent)}:{node.lineno}")
    assert unchecked == [], "FakeGitHub(...) without contract=github_contract"
