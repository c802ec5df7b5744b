"""The dispatch pass: acknowledgements, failovers, cycles, assignments, waiting, all offline."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest

from app.core import roster as core_roster
from app.core.actions import (
    Action,
    Comment,
    Dispatch,
    MarkAgent,
    MoveCard,
    OpenIssue,
    RecordEscalation,
    RecordWaiting,
    SendToAgent,
    Transition,
)
from app.core.cards import column_for, with_cards
from app.core.config import Config
from app.core.dispatch import UNREACHABLE_COOLDOWN_SECONDS, DispatchFacts, decide, online
from app.core.state import AgentStatus, TaskFacts
from app.core.tasks import State, Task

REPO = "octo/repo"
NOW = 1_800_000_000.0
CONFIG = Config()

ROSTER = core_roster.parse(
    """
| Agent | GitHub | Capabilities | Transport | Endpoint | Max tasks | Backup |
|---|---|---|---|---|---|---|
| alpha | alpha-bot | python | webhook | https://alpha.example/hook | 2 | beta |
| beta | beta-bot | python | maestro | http://maestro.local:23000 | 1 | - |
| gamma | Copilot | docs | github | assign | 1 | - |
"""
)


def queued(number: int, *, depends: Sequence[int] = (), **extra: Any) -> TaskFacts:
    return TaskFacts(
        task=Task(REPO, number, State.QUEUED),
        title=f"Task {number}",
        body="- [ ] it works",
        labels=tuple(extra.pop("labels", ())),
        depends_on=frozenset(depends),
        created_at=NOW - 1000 + number,
        **extra,
    )


def held(
    number: int,
    agent: str,
    state: State = State.ASSIGNED,
    *,
    assigned_at: float = NOW - 60,
    assignment: int = 1,
) -> TaskFacts:
    login = ROSTER.agent(agent).github if ROSTER.agent(agent) else agent  # type: ignore[union-attr]
    return TaskFacts(
        task=Task(REPO, number, state, (), login, agent, assignment),
        title=f"Task {number}",
        body="- [ ] it works",
        created_at=NOW - 5000,
        assigned_at=assigned_at,
    )


def facts(*tasks: TaskFacts, **extra: Any) -> DispatchFacts:
    return DispatchFacts(
        repo=REPO,
        now=NOW,
        roster=extra.pop("roster", ROSTER),
        tasks=tasks,
        **extra,
    )


def of(actions: Sequence[Action], kind: type[Any]) -> list[Any]:
    return [a for a in actions if isinstance(a, kind)]


def moves(actions: Sequence[Action]) -> list[tuple[int, str | None, str, str | None]]:
    return [(t.number, t.from_state, t.to_state, t.agent_name) for t in of(actions, Transition)]


@pytest.mark.parametrize(
    ("case", "given", "expected_moves"),
    [
        (
            "least loaded python agent",
            facts(queued(1, labels=())),
            [(1, "queued", "assigned", "alpha")],
        ),
        (
            "alpha is full: beta",
            facts(queued(1), loads={"alpha": 2, "gamma": 1}),
            [(1, "queued", "assigned", "beta")],
        ),
        (
            "two tasks, priority then age",
            facts(queued(2), queued(3), loads={"alpha": 1, "gamma": 1}),
            [(2, "queued", "assigned", "beta"), (3, "queued", "assigned", "alpha")],
        ),
        ("waits for its dependency", facts(queued(2, depends=[1])), []),
        (
            "dependency finished",
            facts(queued(2, depends=[1]), finished=frozenset({1})),
            [(2, "queued", "assigned", "alpha")],
        ),
        (
            "excluded agent is skipped",
            facts(queued(1, excluded=frozenset({"alpha"}))),
            [(1, "queued", "assigned", "beta")],
        ),
        (
            "heartbeat names the task: acknowledged",
            facts(
                held(5, "alpha"),
                statuses={"alpha": AgentStatus("alpha", NOW - 5, task=f"{REPO}#5")},
            ),
            [(5, "assigned", "in_progress", None)],
        ),
        (
            "heartbeat before the assignment does not acknowledge",
            facts(
                held(5, "alpha", assigned_at=NOW - 4),
                statuses={"alpha": AgentStatus("alpha", NOW - 5, task=f"{REPO}#5")},
            ),
            [],
        ),
        (
            "no acknowledgement in time: to the backup",
            facts(held(5, "alpha", assigned_at=NOW - 601)),
            [(5, "assigned", "assigned", "beta")],
        ),
        (
            "no acknowledgement, no backup, nobody else: back to the queue",
            facts(held(6, "beta", assigned_at=NOW - 601), loads={"alpha": 2, "gamma": 1}),
            [(6, "assigned", "queued", None)],
        ),
        (
            "no acknowledgement, no backup: another agent",
            facts(held(6, "beta", assigned_at=NOW - 601)),
            [(6, "assigned", "assigned", "alpha")],
        ),
        (
            "heartbeats stopped while in progress: to the backup",
            facts(
                held(7, "alpha", State.IN_PROGRESS),
                statuses={"alpha": AgentStatus("alpha", NOW - 181)},
            ),
            [(7, "in_progress", "assigned", "beta")],
        ),
        (
            "heartbeats late but within the threshold: kept",
            facts(
                held(7, "alpha", State.IN_PROGRESS),
                statuses={"alpha": AgentStatus("alpha", NOW - 179)},
            ),
            [],
        ),
        (
            "transport failed: to the backup",
            facts(
                held(8, "alpha", assigned_at=NOW - 30),
                statuses={"alpha": AgentStatus("alpha", unreachable_since=NOW - 10)},
            ),
            [(8, "assigned", "assigned", "beta")],
        ),
        (
            "the agent left the roster",
            facts(held(9, "delta")),
            [(9, "assigned", "assigned", "alpha")],
        ),
        (
            "a cycle blocks both",
            facts(queued(1, depends=[2]), queued(2, depends=[1])),
            [
                (1, "queued", "blocked", None),
                (2, "queued", "blocked", None),
            ],
        ),
        (
            "paused tasks are left alone",
            facts(TaskFacts(Task(REPO, 4, State.PAUSED, (State.QUEUED,)))),
            [],
        ),
    ],
)
def test_moves(case: str, given: DispatchFacts, expected_moves: list[Any]) -> None:
    assert moves(decide(given, CONFIG)) == expected_moves, case


def test_an_assignment_sends_the_message_comments_and_sets_the_deadline() -> None:
    actions = decide(facts(queued(1)), CONFIG)
    transition = of(actions, Transition)[0]
    assert (transition.agent, transition.agent_name, transition.expect_assignment) == (
        "alpha-bot",
        "alpha",
        0,
    )
    [send] = of(actions, SendToAgent)
    assert send.agent == "alpha" and send.key == f"assign:{REPO}#1:1"
    assert send.message["content"]["task_id"] == f"{REPO}#1"
    [comment] = of(actions, Comment)
    assert "Assigned to **alpha** (`webhook`)" in comment.body
    assert "10 minutes" in comment.body and "its backup **beta**" in comment.body
    [timer] = of(actions, Dispatch)
    assert timer.delay_seconds == 600 and timer.cause == "ack:1:1"
    assert not of(actions, MoveCard)  # no project configured


def test_the_github_transport_puts_the_assignment_on_the_issue_itself() -> None:
    actions = decide(
        facts(queued(1, labels=("documentation",))),
        Config(capabilities={"documentation": ["docs"]}),
    )
    [send] = of(actions, SendToAgent)
    assert send.agent == "gamma"
    assert not of(actions, Comment)


def test_failover_tells_the_first_agent_and_the_issue() -> None:
    actions = decide(facts(held(5, "alpha", assigned_at=NOW - 601)), CONFIG)
    sends = of(actions, SendToAgent)
    assert [(s.agent, s.message["content"]["type"]) for s in sends] == [
        ("alpha", "task-withdrawn"),
        ("beta", "task"),
    ]
    [transition] = of(actions, Transition)
    assert transition.exclude == "alpha" and transition.expect_assignment == 1
    comments = [c.body for c in of(actions, Comment)]
    assert any(
        "Taken from **alpha**: did not acknowledge within 10 minutes" in b
        and "**beta**, its backup" in b
        for b in comments
    )


def test_an_unreachable_agent_is_not_told() -> None:
    actions = decide(
        facts(
            held(8, "alpha", assigned_at=NOW - 30),
            statuses={"alpha": AgentStatus("alpha", unreachable_since=NOW - 10)},
        ),
        CONFIG,
    )
    assert [s.agent for s in of(actions, SendToAgent)] == ["beta"]


def test_waiting_is_said_once_per_reason() -> None:
    first = decide(facts(queued(2, depends=[1])), CONFIG)
    [record] = of(first, RecordWaiting)
    assert record.waiting == "waiting for #1 to be done"
    [comment] = of(first, Comment)
    assert comment.body == "Queued, not assigned yet: waiting for #1 to be done."
    again = decide(facts(queued(2, depends=[1], waiting=record.waiting)), CONFIG)
    assert again == []


def test_no_roster_says_so() -> None:
    actions = decide(facts(queued(1), roster=None), CONFIG)
    [comment] = of(actions, Comment)
    assert "there is no `AGENT_ROSTER.md` on the default branch" in comment.body


def test_a_cycle_is_named_and_unblocked_when_gone() -> None:
    actions = decide(facts(queued(1, depends=[2]), queued(2, depends=[1])), CONFIG)
    bodies = [c.body for c in of(actions, Comment)]
    assert all("part of the dependency cycle #1 -> #2 -> #1" in b for b in bodies)
    assert len(bodies) == 2
    why = of(actions, RecordWaiting)[0].waiting
    blocked = TaskFacts(
        Task(REPO, 1, State.BLOCKED, (State.QUEUED,)), depends_on=frozenset(), waiting=why
    )
    after = decide(facts(blocked), CONFIG)
    assert moves(after)[0] == (1, "blocked", "queued", None)
    assert moves(after)[1] == (1, "queued", "assigned", "alpha")


def test_every_agent_offline_raises_one_urgent_issue() -> None:
    stale = {
        name: AgentStatus(name, NOW - 1000, offline_since=NOW - 500)
        for name in ("alpha", "beta", "gamma")
    }
    actions = decide(facts(queued(1), statuses=stale), Config(maintainers=["octocat"]))
    [issue] = of(actions, OpenIssue)
    assert issue.labels == ("nightshift:urgent",) and issue.key == f"all-offline:{REPO}:1"
    assert "@octocat" in issue.body and "#1" in issue.body
    [escalation] = of(actions, RecordEscalation)
    assert escalation.level == "immediate" and escalation.category == "infrastructure"
    assert "every agent with the capabilities {} is offline" in of(actions, Comment)[0].body
    again = decide(facts(queued(1), statuses=stale, all_offline_open=True), CONFIG)
    assert not of(again, OpenIssue)


def test_agents_are_marked_offline_and_back() -> None:
    actions = decide(facts(statuses={"alpha": AgentStatus("alpha", NOW - 500)}), CONFIG)
    assert [(m.agent, m.offline) for m in of(actions, MarkAgent)] == [("alpha", True)]
    back = decide(
        facts(statuses={"alpha": AgentStatus("alpha", NOW - 5, offline_since=NOW - 100)}), CONFIG
    )
    assert [(m.agent, m.offline) for m in of(back, MarkAgent)] == [("alpha", False)]


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (None, True),
        (AgentStatus("a"), True),
        (AgentStatus("a", NOW - 100), True),
        (AgentStatus("a", NOW - 181), False),
        (AgentStatus("a", unreachable_since=NOW - 10), False),
        (AgentStatus("a", unreachable_since=NOW - UNREACHABLE_COOLDOWN_SECONDS - 1), True),
        (AgentStatus("a", NOW - 5, unreachable_since=NOW - 10), True),
    ],
)
def test_online(status: AgentStatus | None, expected: bool) -> None:
    assert online(status, CONFIG, NOW) is expected


def test_cards_follow_every_move_when_a_project_is_configured() -> None:
    config = Config.model_validate({"project": {"number": 3}})
    actions = decide(facts(queued(1)), config)
    [card] = of(actions, MoveCard)
    assert card.column == "In Progress"
    assert with_cards(actions, CONFIG) == actions  # no project: nothing added


@pytest.mark.parametrize(
    ("state", "column"),
    [
        (State.QUEUED, "Todo"),
        (State.AWAITING_APPROVAL, "Todo"),
        (State.ASSIGNED, "In Progress"),
        (State.CHANGES_REQUESTED, "In Progress"),
        (State.IN_REVIEW, "In Review"),
        (State.BLOCKED, "Blocked"),
        (State.ESCALATED, "Blocked"),
        (State.DONE, "Done"),
        (State.CANCELLED, "Todo"),
    ],
)
def test_columns(state: State, column: str) -> None:
    assert column_for(state, CONFIG) == column


def test_plan_mode_posts_the_plan_once() -> None:
    config = Config(approval="plan")
    waiting = TaskFacts(
        Task(REPO, 3, State.AWAITING_APPROVAL),
        title="Task 3",
        depends_on=frozenset({1}),
        created_at=NOW - 50,
    )
    actions = decide(facts(waiting), config)
    [comment] = of(actions, Comment)
    assert "**Plan** for this task" in comment.body
    assert "depends on: #1" in comment.body and "**alpha** (`webhook`)" in comment.body
    assert "estimate: no history yet" in comment.body.lower()
    assert not of(actions, Transition)  # nothing moves before the approval
    [record] = of(actions, RecordWaiting)
    posted = replace(waiting, waiting=record.waiting)
    assert decide(facts(posted), config) == []


def test_security_only_defers_every_agent_offline() -> None:
    stale = {
        name: AgentStatus(name, NOW - 1000, offline_since=NOW - 500)
        for name in ("alpha", "beta", "gamma")
    }
    actions = decide(facts(queued(1), statuses=stale), Config(escalation="security-only"))
    assert not of(actions, OpenIssue)
    [escalation] = of(actions, RecordEscalation)
    assert escalation.level == "deferred"


def test_a_holder_with_heartbeats_gets_a_timer_for_when_it_would_be_offline() -> None:
    actions = decide(
        facts(
            held(7, "alpha", State.IN_PROGRESS),
            statuses={"alpha": AgentStatus("alpha", NOW - 100)},
        ),
        CONFIG,
    )
    [timer] = of(actions, Dispatch)
    # 60 s interval x 3 missed = 180 s after the last heartbeat, 100 s of which are gone
    assert timer.cause == f"heartbeat:alpha:{NOW - 100:.0f}" and timer.delay_seconds == 81
    lost = decide(
        facts(
            held(7, "alpha", State.IN_PROGRESS), statuses={"alpha": AgentStatus("alpha", NOW - 181)}
        ),
        CONFIG,
    )
    assert not [d for d in of(lost, Dispatch) if d.cause.startswith("heartbeat:")]
