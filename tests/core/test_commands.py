"""`/nightshift` commands: who may use them, and what they do. Table-driven."""

from __future__ import annotations

from typing import Any

import pytest

from app.core.actions import Action, AddLabels, Comment, RemoveLabel, Transition
from app.core.config import DEFAULT_CONFIG
from app.core.envelope import Envelope
from app.core.rules import commands, decide
from app.core.rules.intake import NEEDS_APPROVAL_LABEL
from app.core.state import RepoState
from app.core.tasks import State as TaskState
from app.core.tasks import Task
from tests.helpers import command_comment

REPO = "octo/repo"
WAITING = ("autonomous", NEEDS_APPROVAL_LABEL)


def reply(text: str, reason: str) -> Comment:
    return Comment(repo=REPO, number=1, body=text, key="command:d1", reason=reason)


APPROVED = [
    Transition(
        repo=REPO,
        number=1,
        event="approve",
        from_state="awaiting_approval",
        to_state="queued",
        reason="commands: approved by @octocat",
    ),
    RemoveLabel(
        repo=REPO, number=1, label=NEEDS_APPROVAL_LABEL, reason="commands: approved by @octocat"
    ),
    AddLabels(
        repo=REPO, number=1, labels=("nightshift:queued",), reason="commands: approved by @octocat"
    ),
    reply(commands.APPROVED.format(login="octocat"), "commands: confirm the approval"),
]


@pytest.mark.parametrize(
    ("data", "permission", "expected"),
    [
        pytest.param(
            command_comment("/nightshift approve", labels=WAITING),
            "write",
            APPROVED,
            id="writer-approves",
        ),
        pytest.param(
            command_comment("/nightshift approve", labels=WAITING),
            "admin",
            APPROVED,
            id="admin-approves",
        ),
        pytest.param(
            command_comment("/NightShift APPROVE please", labels=WAITING),
            "maintain",
            APPROVED,
            id="case-and-trailing-words",
        ),
        pytest.param(
            command_comment("/nightshift approve", labels=WAITING),
            "read",
            [
                reply(
                    commands.REFUSED.format(login="octocat"),
                    "commands: @octocat has read permission",
                )
            ],
            id="reader-is-refused",
        ),
        pytest.param(
            command_comment("/nightshift approve", labels=WAITING),
            "triage",
            [
                reply(
                    commands.REFUSED.format(login="octocat"),
                    "commands: @octocat has triage permission",
                )
            ],
            id="triage-is-refused",
        ),
        pytest.param(
            command_comment("/nightshift approve", labels=WAITING),
            None,
            [
                reply(
                    commands.REFUSED.format(login="octocat"),
                    "commands: @octocat has no permission",
                )
            ],
            id="unknown-permission-is-refused",
        ),
        pytest.param(
            command_comment("/nightshift approve"),
            "write",
            [
                reply(
                    commands.NOTHING_TO_APPROVE.format(login="octocat"),
                    "commands: nothing to approve",
                )
            ],
            id="nothing-to-approve",
        ),
        pytest.param(
            command_comment("/nightshift frobnicate"),
            "write",
            [
                reply(
                    commands.UNKNOWN.format(login="octocat", known="`approve`, `ok-to-test`"),
                    "commands: unknown command",
                )
            ],
            id="unknown-command",
        ),
        pytest.param(
            command_comment("/nightshift x`@octo-org/security`x", login="drive-by"),
            None,
            [
                reply(
                    commands.REFUSED.format(login="drive-by"),
                    "commands: @drive-by has no permission",
                )
            ],
            id="no-echo-no-mention-for-strangers",
        ),
        pytest.param(
            command_comment("Looks good.\n/nightshift approve", labels=WAITING),
            "write",
            [],
            id="command-only-on-the-first-line",
        ),
        pytest.param(
            command_comment("/nightshift approve", user_type="Bot", labels=WAITING),
            "write",
            [],
            id="bots-are-ignored",
        ),
        pytest.param(
            command_comment("/nightshiftapprove", labels=WAITING), "write", [], id="not-a-command"
        ),
    ],
)
def test_commands(data: dict[str, Any], permission: str | None, expected: list[Action]) -> None:
    env = Envelope.parse("d1", "issue_comment", data)
    waiting = NEEDS_APPROVAL_LABEL in {label["name"] for label in data["issue"]["labels"]}
    task = Task(REPO, 1, TaskState.AWAITING_APPROVAL) if waiting else None
    decision = decide(env, RepoState(sender_permission=permission, task=task), DEFAULT_CONFIG)
    assert decision.failures == ()
    assert list(decision.actions) == expected


def test_the_permission_is_looked_up_only_for_commands() -> None:
    asking = Envelope.parse("d1", "issue_comment", command_comment("/nightshift approve"))
    chatting = Envelope.parse("d2", "issue_comment", command_comment("thanks!"))
    assert commands.needs_permission(asking) == "octocat"
    assert commands.needs_permission(chatting) is None
