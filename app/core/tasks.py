"""The task state machine: one labelled issue's life, as one table of allowed transitions.

Every transition is decided here, carried out by the executor with a compare-and-set on the
state it starts from, and audited. Any active state may go to `blocked`, `escalated` or
`paused`, and back to where it was when the cause is cleared.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from app.core.actions import Transition


class State(StrEnum):
    PROPOSED = "proposed"  # labelled, being validated
    REJECTED = "rejected"
    AWAITING_APPROVAL = "awaiting_approval"
    QUEUED = "queued"  # waiting for dependencies or a free agent
    ASSIGNED = "assigned"  # sent, waiting for the agent's acknowledgement
    IN_PROGRESS = "in_progress"
    IN_REVIEW = "in_review"
    CHANGES_REQUESTED = "changes_requested"
    MERGED = "merged"
    DONE = "done"
    BLOCKED = "blocked"
    ESCALATED = "escalated"
    PAUSED = "paused"
    CANCELLED = "cancelled"  # the trigger label was removed


class Event(StrEnum):
    PROPOSE = "propose"
    REJECT = "reject"
    NEED_APPROVAL = "need_approval"
    APPROVE = "approve"
    ACCEPT = "accept"
    ASSIGN = "assign"
    ACKNOWLEDGE = "acknowledge"
    OPEN_PR = "open_pr"
    REQUEST_CHANGES = "request_changes"
    PUSH_FIX = "push_fix"
    MERGE = "merge"
    FINISH = "finish"
    REQUEUE = "requeue"  # the agent was lost: back to the queue for another
    BLOCK = "block"
    UNBLOCK = "unblock"
    ESCALATE = "escalate"
    DEESCALATE = "deescalate"
    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"
    HAND_OVER = "hand_over"  # blocked too long: to a peer or the backup (escalation level 1)


S, E = State, Event

TRANSITIONS: dict[tuple[State | None, Event], State] = {
    (None, E.PROPOSE): S.PROPOSED,
    (S.REJECTED, E.PROPOSE): S.PROPOSED,  # labelled again after a fix
    (S.CANCELLED, E.PROPOSE): S.PROPOSED,
    (S.PROPOSED, E.REJECT): S.REJECTED,
    (S.PROPOSED, E.NEED_APPROVAL): S.AWAITING_APPROVAL,
    (S.PROPOSED, E.ACCEPT): S.QUEUED,
    (S.AWAITING_APPROVAL, E.APPROVE): S.QUEUED,
    (S.QUEUED, E.ASSIGN): S.ASSIGNED,
    (S.ASSIGNED, E.ACKNOWLEDGE): S.IN_PROGRESS,
    (S.ASSIGNED, E.REQUEUE): S.QUEUED,
    (S.IN_PROGRESS, E.REQUEUE): S.QUEUED,
    (S.ASSIGNED, E.OPEN_PR): S.IN_REVIEW,  # a PR is an acknowledgement too
    (S.IN_PROGRESS, E.OPEN_PR): S.IN_REVIEW,
    (S.IN_REVIEW, E.REQUEST_CHANGES): S.CHANGES_REQUESTED,
    (S.CHANGES_REQUESTED, E.PUSH_FIX): S.IN_REVIEW,
    (S.IN_REVIEW, E.MERGE): S.MERGED,
    (S.MERGED, E.FINISH): S.DONE,
}

# from any active state, remembering where to come back to
DETOURS: dict[Event, State] = {E.BLOCK: S.BLOCKED, E.ESCALATE: S.ESCALATED, E.PAUSE: S.PAUSED}
RETURNS: dict[Event, State] = {E.UNBLOCK: S.BLOCKED, E.DEESCALATE: S.ESCALATED, E.RESUME: S.PAUSED}
FINAL = frozenset({S.REJECTED, S.DONE, S.CANCELLED})
ACTIVE = frozenset(State) - FINAL - {S.PROPOSED}
# the states in which an agent holds the task (a block of one can be handed over)
HELD = frozenset({S.ASSIGNED, S.IN_PROGRESS, S.IN_REVIEW, S.CHANGES_REQUESTED})


@dataclass(frozen=True)
class Task:
    """What the store knows of one task, as the core sees it."""

    repo: str
    number: int
    state: State
    previous: tuple[State, ...] = ()  # where detours return to, the latest last
    agent: str | None = None  # the GitHub login of the agent working on it
    agent_name: str | None = None  # that agent's name in the roster
    assignment: int = 0  # how many times it was assigned: a timer of an older one finds out


@dataclass(frozen=True)
class Move:
    """An allowed transition: from (None: no task yet), to, and the detours' return stack."""

    from_state: State | None
    to_state: State
    previous: tuple[State, ...] = ()


def move(task: Task | None, event: Event) -> Move | None:
    """The transition `event` causes, or None when it is not allowed from here."""
    current = task.state if task is not None else None
    stack = task.previous if task is not None else ()
    if event is E.CANCEL:
        if current is None or current in FINAL:
            return None
        return Move(current, S.CANCELLED)
    if event is E.HAND_OVER:
        # a block's escalation: the task leaves the detour for a new agent, as if assigned
        # from the queue (only a block of work an agent held)
        if task is None or current is not S.BLOCKED or not stack or stack[-1] not in HELD:
            return None
        return Move(current, S.ASSIGNED, stack[:-1])
    if event in DETOURS:
        detour = DETOURS[event]
        if current is None or current not in ACTIVE or current is detour or detour in stack:
            return None
        return Move(current, detour, (*stack, current))
    if event in RETURNS:
        if task is None or current is not RETURNS[event] or not stack:
            return None
        return Move(current, stack[-1], stack[:-1])
    following = TRANSITIONS.get((current, event))
    return Move(current, following, stack) if following is not None else None


def path(task: Task | None, *events: Event) -> Move | None:
    """Several transitions in one decision (propose, then accept): the overall move."""
    start = task.state if task is not None else None
    current = task
    last: Move | None = None
    for event in events:
        last = move(current, event)
        if last is None:
            return None
        repo, number = (task.repo, task.number) if task is not None else ("", 0)
        current = Task(repo, number, last.to_state, last.previous)
    return Move(start, last.to_state, last.previous) if last is not None else None


def as_action(
    repo: str,
    number: int,
    step: Move,
    event: Event,
    reason: str,
    **assignment: str | int | None,
) -> Transition:
    """The store action that makes `step` (a compare-and-set on its starting state).

    `assignment`: Transition's agent fields (agent, agent_name, expect_assignment, exclude)
    for moves that give the task to an agent or take it away.
    """
    return Transition(
        repo=repo,
        number=number,
        event=event.value,
        from_state=step.from_state.value if step.from_state is not None else None,
        to_state=step.to_state.value,
        previous=",".join(state.value for state in step.previous) or None,
        reason=reason,
        **assignment,
    )


def parse_previous(value: str | None) -> tuple[State, ...]:
    """The stored return stack (`in_review,blocked`) as states."""
    return tuple(State(part) for part in value.split(",") if part) if value else ()
