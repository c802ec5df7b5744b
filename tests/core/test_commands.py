"""`/nightshift` commands: who may use them, and what they do. Table-driven."""

from __future__ import annotations

from typing import Any

import pytest

from app.core.actions import (
    Action,
    AddLabels,
    Comment,
    Dispatch,
    OpenIssue,
    PauseRepository,
    PublishReport,
    RecordEscalation,
    RemoveLabel,
    SendToAgent,
    Transition,
)
from app.core.config import DEFAULT_CONFIG
from app.core.envelope import Envelope
from app.core.labels import NEEDS_APPROVAL_LABEL
from app.core.rules import commands, decide
from app.core.rules import escalation as escalation_rules
from app.core.state import Escalation, RepoState
from app.core.tasks import State as TaskState
from app.core.tasks import Task
from tests.helpers import command_comment, payload

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
    Dispatch(repo=REPO, cause="d1", reason="commands: approved by @octocat"),
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
                    commands.UNKNOWN.format(
                        login="octocat", known=", ".join(f"`{c}`" for c in commands.KNOWN)
                    ),
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


AGENT = "alpha-bot"


def _task(state: TaskState, previous: tuple[TaskState, ...] = ()) -> Task:
    return Task(REPO, 1, state, previous, AGENT, "alpha", 2)


@pytest.mark.parametrize(
    ("body", "login", "user_type", "permission", "task", "moves", "says"),
    [
        # maintainers' commands
        (
            "/nightshift pause",
            "octocat",
            "User",
            "write",
            _task(TaskState.IN_PROGRESS),
            [("in_progress", "paused")],
            "Paused by @octocat",
        ),
        (
            "/nightshift resume",
            "octocat",
            "User",
            "write",
            _task(TaskState.PAUSED, (TaskState.IN_PROGRESS,)),
            [("paused", "in_progress")],
            "Resumed by @octocat",
        ),
        (
            "/nightshift resume",
            "octocat",
            "User",
            "write",
            _task(TaskState.QUEUED),
            [],
            "does nothing while the task is `queued`",
        ),
        (
            "/nightshift retry",
            "octocat",
            "User",
            "admin",
            _task(TaskState.BLOCKED, (TaskState.IN_PROGRESS,)),
            [("blocked", "in_progress")],
            "Retried by @octocat",
        ),
        (
            "/nightshift retry",
            "octocat",
            "User",
            "admin",
            _task(TaskState.QUEUED),
            [],
            "Retried by @octocat",
        ),
        (
            "/nightshift release",
            "octocat",
            "User",
            "maintain",
            _task(TaskState.IN_PROGRESS),
            [("in_progress", "queued")],
            "taken from **alpha**",
        ),
        (
            "/nightshift release",
            "octocat",
            "User",
            "write",
            _task(TaskState.IN_REVIEW),
            [],
            "does nothing while the task is `in_review`",
        ),
        (
            "/nightshift status",
            "octocat",
            "User",
            "write",
            _task(TaskState.IN_PROGRESS),
            [],
            "Task status: `in_progress`, agent **alpha**.",
        ),
        (
            "/nightshift pause",
            "octocat",
            "User",
            "read",
            _task(TaskState.IN_PROGRESS),
            [],
            "only people with write access",
        ),
        ("/nightshift status", "octocat", "User", "write", None, [], "not a Nightshift task"),
        # the agent's commands
        (
            "/nightshift ack",
            AGENT,
            "Bot",
            "none",
            _task(TaskState.ASSIGNED),
            [("assigned", "in_progress")],
            "Acknowledged by **alpha**",
        ),
        (
            "/nightshift ack",
            "octocat",
            "User",
            "admin",
            _task(TaskState.ASSIGNED),
            [],
            "only the agent this task is assigned to",
        ),
        ("/nightshift ack", "someone-bot", "Bot", "none", _task(TaskState.ASSIGNED), [], None),
        (
            "/nightshift blocked the API key is missing",
            AGENT,
            "Bot",
            "none",
            _task(TaskState.IN_PROGRESS),
            [("in_progress", "blocked")],
            "Blocked, says **alpha**: `the API key is missing`",
        ),
        (
            "/nightshift escalate architecture REST or GraphQL?",
            AGENT,
            "User",
            "read",
            _task(TaskState.IN_PROGRESS),
            [],
            "Noted for the maintainers' review",
        ),
        (
            "/nightshift escalate security secrets in logs",
            AGENT,
            "User",
            "read",
            _task(TaskState.IN_PROGRESS),
            [("in_progress", "escalated")],
            "Escalated as a security matter by **alpha**",
        ),
        (
            "/nightshift escalate whatever",
            AGENT,
            "User",
            "read",
            _task(TaskState.IN_PROGRESS),
            [],
            "say `/nightshift escalate security <what>`",
        ),
        (
            "/nightshift done",
            AGENT,
            "User",
            "read",
            _task(TaskState.IN_REVIEW),
            [],
            "Nightshift finishes the task when its pull request is merged",
        ),
    ],
)
def test_task_commands(
    body: str,
    login: str,
    user_type: str,
    permission: str,
    task: Task | None,
    moves: list[tuple[str, str]],
    says: str | None,
) -> None:
    env = Envelope.parse(
        "d1", "issue_comment", command_comment(body, login=login, user_type=user_type)
    )
    decision = decide(env, RepoState(sender_permission=permission, task=task), DEFAULT_CONFIG)
    assert decision.failures == ()
    made = [(t.from_state, t.to_state) for t in decision.actions if isinstance(t, Transition)]
    assert made == moves
    replies = [c.body for c in decision.actions if isinstance(c, Comment)]
    if says is None:
        assert decision.actions == ()
    else:
        assert any(says in text for text in replies), replies


def test_security_escalation_opens_one_urgent_issue_mentioning_maintainers() -> None:
    env = Envelope.parse(
        "d1",
        "issue_comment",
        command_comment("/nightshift escalate security @evil token in logs", login=AGENT),
    )
    config = DEFAULT_CONFIG.model_copy(update={"maintainers": ["octocat"]})
    decision = decide(env, RepoState(task=_task(TaskState.IN_PROGRESS)), config)
    [issue] = [a for a in decision.actions if isinstance(a, OpenIssue)]
    assert issue.labels == ("nightshift:urgent",)
    assert "@octocat" in issue.body
    assert "`@evil token in logs`" in issue.body  # the agent's words cannot mention anyone
    [record] = [a for a in decision.actions if isinstance(a, RecordEscalation)]
    assert (record.level, record.category) == ("immediate", "security")


def test_release_tells_the_agent_and_requeues() -> None:
    env = Envelope.parse("d1", "issue_comment", command_comment("/nightshift release"))
    decision = decide(
        env, RepoState(sender_permission="write", task=_task(TaskState.ASSIGNED)), DEFAULT_CONFIG
    )
    [transition] = [a for a in decision.actions if isinstance(a, Transition)]
    assert (transition.exclude, transition.expect_assignment) == ("alpha", 2)
    [send] = [a for a in decision.actions if isinstance(a, SendToAgent)]
    assert send.agent == "alpha" and send.message["content"]["type"] == "task-withdrawn"
    assert any(isinstance(a, Dispatch) for a in decision.actions)


def test_pause_and_resume_on_the_report_issue_act_on_the_repository() -> None:
    labels = ("nightshift:report",)
    pause = Envelope.parse(
        "d1", "issue_comment", command_comment("/nightshift pause", labels=labels)
    )
    decision = decide(pause, RepoState(sender_permission="admin"), DEFAULT_CONFIG)
    [paused] = [a for a in decision.actions if isinstance(a, PauseRepository)]
    assert not paused.resume and paused.by == "octocat"
    resume = Envelope.parse(
        "d2", "issue_comment", command_comment("/nightshift resume", labels=labels)
    )
    # a paused repository still hears `resume` on the report issue, and nothing else
    decision = decide(resume, RepoState(paused=True, sender_permission="admin"), DEFAULT_CONFIG)
    assert [a.resume for a in decision.actions if isinstance(a, PauseRepository)] == [True]
    other = Envelope.parse("d3", "issue_comment", command_comment("/nightshift resume"))
    assert (
        decide(other, RepoState(paused=True, sender_permission="admin"), DEFAULT_CONFIG).actions
        == ()
    )


ESCALATED = Escalation(
    key="security:octo/repo#1:d0",
    level="immediate",
    category="security",
    task=1,
    task_state="escalated",
    task_previous=("in_progress",),
)


def test_resolve_on_an_urgent_issue_resolves_and_lets_the_task_go_on() -> None:
    env = Envelope.parse(
        "d1", "issue_comment", command_comment("/nightshift resolve", labels=("nightshift:urgent",))
    )
    decision = decide(
        env, RepoState(sender_permission="admin", escalation=ESCALATED), DEFAULT_CONFIG
    )
    kinds = [a.kind for a in decision.actions]
    assert kinds == ["resolve_escalation", "transition", "dispatch", "comment"]
    [move] = [a for a in decision.actions if isinstance(a, Transition)]
    assert (move.from_state, move.to_state) == ("escalated", "in_progress")
    nothing = decide(env, RepoState(sender_permission="admin"), DEFAULT_CONFIG)
    assert [a.kind for a in nothing.actions] == ["comment"]
    refused = decide(env, RepoState(sender_permission="read", escalation=ESCALATED), DEFAULT_CONFIG)
    assert [a.kind for a in refused.actions] == ["comment"]


@pytest.mark.parametrize(
    ("category", "state", "expected"),
    [
        ("blocked", "blocked", ("blocked", "in_review")),  # the path's last level: unblocked
        ("security", "escalated", ("escalated", "in_review")),
        ("ci", "blocked", None),  # a blocked PR's own escalation waits for a new push
        ("blocked", "in_review", None),  # handed over or unblocked meanwhile
    ],
)
def test_resolving_lets_the_task_it_stopped_go_back(
    category: str, state: str, expected: tuple[str, str] | None
) -> None:
    escalation = Escalation(
        key="k",
        level="immediate",
        category=category,
        task=7,
        task_state=state,
        task_previous=("in_review",),
    )
    moves = [
        (a.from_state, a.to_state)
        for a in escalation_rules.resolve("octo/repo", escalation, "alice", "d1")
        if isinstance(a, Transition)
    ]
    assert moves == ([expected] if expected else [])


def test_closing_an_urgent_issue_resolves_its_escalation() -> None:
    data = {**payload("issues.opened"), "action": "closed"}
    data["issue"] = {**data["issue"], "labels": [{"name": "nightshift:urgent"}]}
    env = Envelope.parse("d2", "issues", data)
    assert escalation_rules.concerns(env)
    decision = decide(env, RepoState(escalation=ESCALATED), DEFAULT_CONFIG)
    assert "resolve_escalation" in [a.kind for a in decision.actions]
    alone = decide(env, RepoState(), DEFAULT_CONFIG).actions  # no escalation: a pass only
    assert [a.kind for a in alone] == ["dispatch"]


def test_report_asks_the_report_engine_for_this_comment_once() -> None:
    env = Envelope.parse("d9", "issue_comment", command_comment("/nightshift report"))
    decision = decide(env, RepoState(sender_permission="write"), DEFAULT_CONFIG)
    [report] = [a for a in decision.actions if isinstance(a, PublishReport)]
    assert report.run_key == "command:d9"
    assert any(
        "the report is on its way" in a.body for a in decision.actions if isinstance(a, Comment)
    )
    refused = decide(env, RepoState(sender_permission="triage"), DEFAULT_CONFIG)
    assert not any(isinstance(a, PublishReport) for a in refused.actions)
