"""An invalid configuration: told once on the triggering issue, nothing else happens."""

from __future__ import annotations

from typing import Any

import pytest

from app.core.actions import (
    Action,
    AddLabels,
    Comment,
    ForgetConfigError,
    RememberConfigError,
    Transition,
)
from app.core.config import DEFAULT_CONFIG
from app.core.envelope import Envelope
from app.core.rules import configuration, decide
from app.core.state import RepoState
from tests.helpers import labeled_issue

PROBLEM = ".github/nightshift.yml: limits.max_fix_rounds: Input should be a valid integer"
REPO = "octo/repo"


def env(data: dict[str, Any], event: str = "issues") -> Envelope:
    return Envelope.parse("d1", event, data)


TOLD = [
    Comment(
        repo=REPO,
        number=1,
        body=configuration.INVALID_CONFIG_COMMENT.format(problem=PROBLEM),
        key="config-error:d1",
        reason="configuration: the file is invalid",
    ),
    RememberConfigError(
        repo=REPO, problem=PROBLEM, reason="configuration: tell the maintainers once"
    ),
]
UNLABELED = {**labeled_issue(), "action": "unlabeled"}


@pytest.mark.parametrize(
    ("data", "state", "expected"),
    [
        pytest.param(labeled_issue(), RepoState(config_error=PROBLEM), TOLD, id="first-trigger"),
        pytest.param(
            labeled_issue(),
            RepoState(config_error=PROBLEM, reported_config_error=PROBLEM),
            [],
            id="already-told",
        ),
        pytest.param(
            labeled_issue(),
            RepoState(config_error=PROBLEM, reported_config_error="older problem"),
            TOLD,
            id="a-new-problem-is-told",
        ),
        pytest.param(
            labeled_issue(label="bug"), RepoState(config_error=PROBLEM), [], id="not-a-trigger"
        ),
        pytest.param(UNLABELED, RepoState(config_error=PROBLEM), [], id="nothing-else-happens"),
    ],
)
def test_invalid_configuration(
    data: dict[str, Any], state: RepoState, expected: list[Action]
) -> None:
    decision = decide(env(data), state, DEFAULT_CONFIG)
    assert list(decision.actions) == expected
    assert decision.rules == ("invalid-config",)


def test_fixed_configuration_is_forgotten_and_work_resumes() -> None:
    decision = decide(
        env(labeled_issue()), RepoState(reported_config_error=PROBLEM), DEFAULT_CONFIG
    )
    kinds = [a.kind for a in decision.actions]
    assert kinds == ["forget_config_error", "transition", "record_task", "add_labels", "dispatch"]
    assert [a for a in decision.actions if a.kind not in ("record_task", "dispatch")] == [
        ForgetConfigError(repo=REPO, reason="configuration: the file is valid"),
        Transition(
            repo=REPO,
            number=1,
            event="accept",
            from_state=None,
            to_state="queued",
            reason="intake: accepted for autonomous work",
        ),
        AddLabels(
            repo=REPO,
            number=1,
            labels=("nightshift:queued",),
            reason="intake: accepted for autonomous work",
        ),
    ]
