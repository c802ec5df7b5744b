"""Repository configuration: defaults, validation messages, `_extends` and merging."""

from __future__ import annotations

from typing import Any

import pytest

from app.core import config
from app.core.config import DEFAULT_CONFIG, ConfigError, Extends


def test_defaults_are_the_documented_ones() -> None:
    assert DEFAULT_CONFIG.trigger_label == "autonomous"
    assert DEFAULT_CONFIG.limits.model_dump() == {
        "heartbeat_missed_threshold": 3,
        "ci_poll_attempts": 5,
        "max_concurrent_tasks": 3,
        "max_retry_attempts": 3,
        "max_fix_rounds": 5,
    }
    assert DEFAULT_CONFIG.ack_timeout_minutes == 10
    assert DEFAULT_CONFIG.approval == "none"
    assert ".github/workflows/**" in DEFAULT_CONFIG.protected_paths
    assert DEFAULT_CONFIG.project.columns.in_review == "In Review"
    assert config.parse("") == DEFAULT_CONFIG


def test_a_full_file() -> None:
    parsed = config.parse(
        "trigger_label: night\n"
        "approval: plan\n"
        "limits:\n  max_fix_rounds: 2\n"
        "capabilities:\n  frontend: [javascript, css]\n"
        "project:\n  number: 4\n  columns:\n    done: Shipped\n"
    )
    assert parsed.trigger_label == "night"
    assert parsed.approval == "plan"
    assert parsed.limits.max_fix_rounds == 2
    assert parsed.limits.max_retry_attempts == 3
    assert parsed.capabilities == {"frontend": ["javascript", "css"]}
    assert (parsed.project.number, parsed.project.columns.done) == (4, "Shipped")
    assert parsed.project.columns.todo == "Todo"


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        pytest.param(
            "limits:\n  max_fix_rounds: 0\n",
            "limits.max_fix_rounds",
            "Input should be greater than or equal to 1",
            id="too-small",
        ),
        pytest.param(
            "approval: sometimes\n", "approval", "Input should be 'none' or 'plan'", id="bad-choice"
        ),
        pytest.param("trigger_lable: x\n", "trigger_lable", "unknown setting", id="typo"),
        pytest.param("- a\n- b\n", "(top level)", "must be a mapping of settings", id="a-list"),
        pytest.param(
            "a: [\n",
            "line 2, column 1",
            "not valid YAML: expected the node content, but found '<stream end>'",
            id="broken-yaml",
        ),
        pytest.param(
            "max_size: size:XXL\n", "max_size", "must be one of size_labels", id="unknown-size"
        ),
        pytest.param(
            "project:\n  number: -1\n",
            "project.number",
            "Input should be greater than or equal to 1",
            id="nested",
        ),
    ],
)
def test_invalid_files_name_the_file_the_key_and_the_problem(
    text: str, key: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        config.parse(text, ".github/nightshift.yml")
    assert raised.value.file == ".github/nightshift.yml"
    assert raised.value.key == key
    assert raised.value.problem.startswith(problem)
    assert str(raised.value).startswith(f".github/nightshift.yml: {key}: ")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(".github", Extends("acme/.github"), id="org-dot-github"),
        pytest.param("settings", Extends("acme/settings"), id="same-owner"),
        pytest.param("other/repo", Extends("other/repo"), id="other-owner"),
        pytest.param(
            "other/repo:ci/nightshift.yml",
            Extends("other/repo", "ci/nightshift.yml"),
            id="with-path",
        ),
    ],
)
def test_extends(value: str, expected: Extends) -> None:
    assert config.extends_of({"_extends": value}, owner="acme") == expected


def test_extends_absent_or_broken() -> None:
    assert config.extends_of({}, owner="acme") is None
    with pytest.raises(ConfigError) as raised:
        config.extends_of({"_extends": 3}, owner="acme")
    assert raised.value.key == "_extends"


def test_repository_settings_override_inherited_ones() -> None:
    org: dict[str, Any] = {
        "maintainers": ["lead"],
        "limits": {"max_fix_rounds": 2, "max_retry_attempts": 1},
        "protected_paths": ["secrets/**"],
    }
    repo: dict[str, Any] = {
        "_extends": ".github",
        "limits": {"max_fix_rounds": 4},
        "protected_paths": ["infra/**"],
    }
    merged = config.validate(config.merge(org, repo))
    assert merged.limits.max_fix_rounds == 4  # mappings merge key by key
    assert merged.limits.max_retry_attempts == 1
    assert merged.protected_paths == ["infra/**"]  # lists replace
    assert merged.maintainers == ["lead"]
