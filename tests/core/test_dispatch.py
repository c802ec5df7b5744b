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
from app.core.config import Config, EscalationLevels
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


# -- the escalation path of a task blocked too long (30 min peer, 2 h lead, 4 h immediate) ----

LEAD_BETA = Config(escalation_levels=EscalationLevels(lead="beta"))
LEAD_LOGIN = Config(escalation_levels=EscalationLevels(lead="octocat"))
SECURITY_ONLY = Config(escalation="security-only")


def stuck(
    number: int,
    minutes: float,
    *,
    agent: str | None = "alpha",
    level: int = 0,
    previous: State = State.IN_PROGRESS,
    why: str = "commands: alpha is blocked: the API key is missing",
) -> TaskFacts:
    """A task blocked `minutes` ago, at `level` of the path."""
    login = ROSTER.agent(agent).github if agent and ROSTER.agent(agent) else None  # type: ignore[union-attr]
    return TaskFacts(
        task=Task(REPO, number, State.BLOCKED, (previous,), login, agent, 1),
        title=f"Task {number}",
        body="- [ ] it works",
        labels=("python",),
        created_at=NOW - 50_000,
        state_since=NOW - minutes * 60,
        level=level,
        blocked_why=why,
    )


def path_of(actions: Sequence[Action]) -> list[str]:
    """The escalation path's actions, in order, as short words (timers with their level)."""
    shown: list[str] = []
    for action in actions:
        if isinstance(action, Dispatch) and action.cause.startswith("level:"):
            shown.append(f"timer:{action.cause.rsplit(':', 1)[1]}@{action.delay_seconds:.0f}")
        elif isinstance(action, Dispatch):
            shown.append("ack-timer")
        elif isinstance(action, Transition):
            shown.append(f"{action.event}:{action.agent_name}")
        elif isinstance(action, SendToAgent):
            shown.append(f"send:{action.agent}:{action.message['content']['type']}")
        elif isinstance(action, Comment):
            shown.append(f"comment:{action.key.split(':', 1)[0]}")
        elif isinstance(action, RecordEscalation):
            shown.append(f"escalation:{action.level}:{action.category}")
        elif isinstance(action, OpenIssue):
            shown.append("urgent-issue")
        else:
            shown.append(action.kind)
    return [s for s in shown if s not in ("record_waiting", "remove_label", "move_card")]


@pytest.mark.parametrize(
    ("case", "given", "config", "expected"),
    [
        ("10 minutes: a timer for level 1", facts(stuck(4, 10)), CONFIG, ["timer:1@1201"]),
        (
            "31 minutes: to alpha's backup beta",
            facts(stuck(4, 31)),
            CONFIG,
            [
                "send:alpha:task-withdrawn",
                "comment:level1",
                "hand_over:beta",
                "send:beta:task",
                "comment:assigned",
                "ack-timer",
            ],
        ),
        (
            "31 minutes, beta and gamma full: nobody, a timer for the lead",
            facts(stuck(4, 31), loads={"beta": 1, "gamma": 1}),
            CONFIG,
            ["record_level", "comment:level1", "timer:2@5341"],
        ),
        (
            "2 hours: the lead is a roster agent (maestro): told through its transport too",
            facts(stuck(4, 121, level=1)),
            LEAD_BETA,
            ["record_level", "comment:level2", "send:beta:help", "timer:3@7141"],
        ),
        (
            "2 hours: the lead is a GitHub login",
            facts(stuck(4, 121, level=1)),
            LEAD_LOGIN,
            ["record_level", "comment:level2", "timer:3@7141"],
        ),
        (
            "4 hours: an immediate escalation, no more timers",
            facts(stuck(4, 241, level=2)),
            CONFIG,
            ["record_level", "escalation:immediate:blocked", "urgent-issue"],
        ),
        (
            "4 hours under security-only: deferred, no issue",
            facts(stuck(4, 241, level=2)),
            SECURITY_ONLY,
            ["record_level", "escalation:deferred:blocked"],
        ),
        (
            "a late pass (after a restart) climbs every level passed",
            facts(stuck(4, 300), loads={"beta": 1, "gamma": 1}),
            CONFIG,
            [
                "record_level",
                "comment:level1",
                "record_level",
                "comment:level2",
                "record_level",
                "escalation:immediate:blocked",
                "urgent-issue",
            ],
        ),
        (
            "a dependency cycle held by nobody: level 1 passes quietly",
            facts(stuck(4, 31, agent=None, previous=State.QUEUED, why="dispatch: in a cycle")),
            CONFIG,
            ["record_level", "timer:2@5341"],
        ),
        ("level 3 reached: nothing more", facts(stuck(4, 500, level=3)), CONFIG, []),
    ],
)
def test_the_escalation_path(
    case: str, given: DispatchFacts, config: Config, expected: list[str]
) -> None:
    assert path_of(decide(given, config)) == expected, case


def test_a_hand_over_tells_everyone_what_happened() -> None:
    actions = decide(facts(stuck(4, 45, previous=State.IN_REVIEW)), CONFIG)
    [move] = of(actions, Transition)
    assert (move.event, move.from_state, move.to_state) == ("hand_over", "blocked", "assigned")
    assert (move.agent, move.agent_name, move.exclude) == ("beta-bot", "beta", "alpha")
    assert move.previous is None and move.expect_assignment == 1
    [note] = [c for c in of(actions, Comment) if c.key.startswith("level1:")]
    assert note.body == (
        "Blocked for 45m with **alpha** (alpha is blocked: the API key is missing). "
        "Escalation level 1: the task goes to **beta**, the backup of alpha, on the branch "
        "`nightshift/issue-4-task-4-take-2`. A pull request alpha opened stays as it is: "
        "Nightshift reviews and merges only pull requests of the task's agent."
    )
    withdrawn, assigned = of(actions, SendToAgent)
    assert withdrawn.message["content"]["reason"] == (
        "the task was blocked for 45m; it goes to beta"
    )
    content = assigned.message["content"]
    assert content["branch"] == "nightshift/issue-4-task-4-take-2"
    assert content["taken_over"] == (
        "alpha was blocked on this task for 45m (alpha is blocked: the API key is missing). "
        "Start from the issue; work on the branch nightshift/issue-4-task-4-take-2, not on "
        "alpha's."
    )


def test_the_lead_is_asked_in_words_a_person_can_act_on() -> None:
    actions = decide(facts(stuck(4, 125, level=1)), LEAD_LOGIN)
    [note] = of(actions, Comment)
    assert note.body == (
        "Blocked for 2h 5m (alpha is blocked: the API key is missing). Escalation level 2: "
        "@octocat, please decide how this task goes on. After 4h of being blocked it becomes "
        "an urgent issue for the maintainers."
    )
    unset = decide(facts(stuck(4, 125, level=1)), CONFIG)
    assert "no lead is configured (`escalation_levels.lead`)" in of(unset, Comment)[0].body
    [help_] = of(decide(facts(stuck(4, 125, level=1)), LEAD_BETA), SendToAgent)
    assert help_.key == f"help:{REPO}#4:{NOW - 125 * 60:.0f}"
    assert "After 1h 55m more an urgent issue" in help_.message["content"]["instructions"]


def test_the_urgent_issue_says_risk_action_and_what_it_blocks() -> None:
    dependent = queued(9, depends=[4])
    config = Config(maintainers=["alice"], escalation_levels=EscalationLevels(lead="octocat"))
    actions = decide(facts(stuck(4, 241, level=2), dependent), config)
    [issue] = of(actions, OpenIssue)
    [escalation] = of(actions, RecordEscalation)
    assert issue.key == escalation.key == f"blocked:{REPO}#4:{NOW - 241 * 60:.0f}"
    assert issue.title == "Nightshift: #4 blocked for 4h 1m"
    assert issue.labels == ("nightshift:urgent",)
    assert issue.body == (
        "**Risk**: task #4 (Task 4) has been blocked for 4h 1m and nobody unblocked it: "
        "alpha is blocked: the API key is missing.\n"
        "**Blocking**: yes: #4 makes no progress, nor do the tasks waiting for it (#9).\n"
        "**Action required**: unblock it (answer the agent, resolve the conflict, change the "
        "issue) or cancel it (remove the `autonomous` label). Closing this issue, or "
        "`/nightshift resolve` on it, says the matter is handled and lets #4 go back to where "
        "it was.\n"
        "Asked before: a peer or backup agent (level 1), then the lead `octocat` (level 2).\n"
        "@alice\n"
    )


def test_security_only_records_what_was_done_meanwhile() -> None:
    [deferred] = of(decide(facts(stuck(4, 241, level=2)), SECURITY_ONLY), RecordEscalation)
    assert deferred.reversible is True
    assert deferred.meanwhile == (
        "#4 stays blocked (since 2027-01-15 03:59 UTC); its agent went on with other work; "
        "nothing was merged for it"
    )


def test_an_agents_words_in_the_reason_are_inert() -> None:
    why = "commands: alpha is blocked: ping @everyone <b>now</b> `x`"
    [note] = of(decide(facts(stuck(4, 125, level=1, why=why)), LEAD_LOGIN), Comment)
    assert "@\u200deveryone" in note.body and "&lt;b&gt;" in note.body and "`x`" not in note.body
