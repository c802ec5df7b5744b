"""GitHub's own example answers, from its published REST description, for the fake to dress.

The description (`components.examples` of api.github.com.json, from the pinned
@octokit/openapi package that tests/contract checks against) carries a complete example of
every answer: a handler starts from one and overrides what the fake knows,

    example("pull-request") | {"number": 7, "title": "Fix the parser", ...}

so each answer has every field GitHub documents, and the contract check holds the rest.
The description is read once per process, on first use; every call returns a deep copy.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

import orjson

from tests.contract.contract import OPENAPI, locate

_lock = threading.Lock()
_examples: dict[str, Any] | None = None


def _load() -> dict[str, Any]:
    global _examples
    with _lock:
        if _examples is None:
            file = locate() / OPENAPI / "generated" / "api.github.com.json"
            described = orjson.loads(file.read_bytes())["components"]["examples"]
            examples = {name: ex["value"] for name, ex in described.items() if "value" in ex}
            _fix(examples)
            _examples = examples
        return _examples


def _fix(examples: dict[str, Any]) -> None:
    """Where an example disagrees with its own description's schema."""
    # `pull-request`: its requested team lacks `type`, which `team-simple` requires
    # ("enterprise" or "organization"); GET /repos/{owner}/{repo}/pulls/{n} fails without it
    for team in examples["pull-request"]["requested_teams"]:
        team.setdefault("type", "organization")


def example(name: str) -> dict[str, Any]:
    """A deep copy of the example object `name` (e.g. "pull-request", "check-run")."""
    value = _load()[name]
    if not isinstance(value, dict):
        raise TypeError(f"the example {name!r} is a {type(value).__name__}, use examples()")
    return copy.deepcopy(value)


def examples(name: str) -> list[dict[str, Any]]:
    """A deep copy of the example list `name` (e.g. "issue-items")."""
    value = _load()[name]
    if not isinstance(value, list):
        raise TypeError(f"the example {name!r} is a {type(value).__name__}, use example()")
    return copy.deepcopy(value)


def names() -> list[str]:
    """Every example the description has."""
    return sorted(_load())
