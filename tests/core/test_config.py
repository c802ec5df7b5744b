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
        pytest.param(
            "review:\n  colour: red\n", "review.colour", "unknown setting", id="review-typo"
        ),
        pytest.param(
            "review:\n  max_changed_files: 0\n",
            "review.max_changed_files",
            "Input should be greater than or equal to 1",
            id="review-max-files",
        ),
        pytest.param(
            "review:\n  commands:\n    - {name: t, run: pytest, timeout_seconds: 3601}\n",
            "review.commands.0.timeout_seconds",
            "Input should be less than or equal to 3600",
            id="command-timeout-too-long",
        ),
        pytest.param(
            "review:\n  commands:\n    - {name: t, run: pytest, timeout_seconds: 0}\n",
            "review.commands.0.timeout_seconds",
            "Input should be greater than 0",
            id="command-timeout-zero",
        ),
        pytest.param(
            "review:\n  commands:\n    - {name: t}\n",
            "review.commands.0.run",
            "Field required",
            id="command-without-run",
        ),
        pytest.param(
            "review:\n  commands:\n    - {name: t, run: x, env: [HOME, NPM-TOKEN]}\n",
            "review.commands.0.env.1",
            "'NPM-TOKEN' is not an environment variable name",
            id="env-name",
        ),
        pytest.param(
            "review:\n  commands:\n    - {name: t, run: x, env: [nightshift_webhook_secrets]}\n",
            "review.commands.0.env.0",
            "'nightshift_webhook_secrets': Nightshift's own settings are never passed to PR code",
            id="env-own-settings",
        ),
        pytest.param(
            "review:\n  commands:\n    - {name: t, run: x}\n    - {name: t, run: y}\n",
            "review.commands",
            "command names must be unique; repeated: t",
            id="command-names-repeated",
        ),
        pytest.param(
            "review:\n  coverage: {report: coverage.xml, minimum: 101}\n",
            "review.coverage.minimum",
            "Input should be less than or equal to 100",
            id="coverage-above-100",
        ),
        pytest.param(
            "review:\n  coverage: {minimum: 80}\n",
            "review.coverage.report",
            "must name the report when a minimum is set",
            id="coverage-minimum-without-report",
        ),
        pytest.param(
            "review:\n  coverage: {report: ../../etc/passwd}\n",
            "review.coverage.report",
            "'../../etc/passwd' must be a path inside the repository",
            id="coverage-report-outside",
        ),
        pytest.param(
            "review:\n  tests_report: reports/../../junit.xml\n",
            "review.tests_report",
            "'reports/../../junit.xml' must be a path inside the repository",
            id="tests-report-outside",
        ),
        pytest.param(
            "review:\n  tests_report: /tmp/junit.xml\n",
            "review.tests_report",
            "'/tmp/junit.xml' must be a path inside the repository",
            id="tests-report-absolute",
        ),
        pytest.param(
            "review:\n  scope: ['app/**', '!']\n",
            "review.scope.1",
            "'!' is not a gitignore-style glob",
            id="scope-glob",
        ),
        pytest.param(
            "review:\n  merge_method: fast-forward\n",
            "review.merge_method",
            "Input should be 'merge', 'squash' or 'rebase'",
            id="merge-method",
        ),
        pytest.param(
            "review:\n  judge: {timeout_seconds: 10}\n",
            "review.judge.command",
            "Field required",
            id="judge-without-command",
        ),
        pytest.param(
            "review:\n  mergeable_poll_attempts: 0\n",
            "review.mergeable_poll_attempts",
            "Input should be greater than or equal to 1",
            id="mergeable-polls",
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


def test_review_defaults() -> None:
    review = DEFAULT_CONFIG.review
    assert review.scope == []
    assert (review.max_changed_files, review.max_changed_lines) == (50, 2000)
    assert review.required_checks == []
    assert review.commands == []
    assert (review.coverage.report, review.coverage.minimum) == (None, None)
    assert review.tests_report is None
    assert review.require_tests is True
    assert list(review.test_paths) == list(config.DEFAULT_TEST_PATHS)
    assert "*_test.go" in review.test_paths
    assert list(review.code_paths) == list(config.DEFAULT_CODE_PATHS)
    assert review.judge is None
    assert review.merge_method == "squash"
    assert review.revert_on_red is True
    assert review.mergeable_poll_attempts == 5


def test_a_review_section() -> None:
    review = config.parse(
        "review:\n"
        "  scope: ['app/**', tests/]\n"
        "  required_checks: [ci / test]\n"
        "  commands:\n"
        "    - name: tests\n"
        "      run: pytest --cov --cov-report=xml\n"
        "      env: [PIP_INDEX_URL]\n"
        "    - {name: lint, run: ruff check ., timeout_seconds: 60}\n"
        "  coverage: {report: coverage.xml, minimum: 80}\n"
        "  tests_report: build/junit.xml\n"
        "  require_tests: false\n"
        "  judge: {command: ./judge.sh}\n"
        "  merge_method: rebase\n"
    ).review
    assert review.scope == ["app/**", "tests/"]
    assert review.required_checks == ["ci / test"]
    assert [(c.name, c.timeout_seconds, c.env) for c in review.commands] == [
        ("tests", 600, ["PIP_INDEX_URL"]),
        ("lint", 60, []),
    ]
    assert (review.coverage.report, review.coverage.minimum) == ("coverage.xml", 80)
    assert review.tests_report == "build/junit.xml"
    assert review.require_tests is False
    assert review.judge is not None
    assert (review.judge.command, review.judge.timeout_seconds) == ("./judge.sh", 300)
    assert review.merge_method == "rebase"
    assert review.max_changed_files == 50  # the rest keeps its defaults
