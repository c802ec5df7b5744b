"""The task state machine, table-driven: (state, event) -> next state or refused."""

from __future__ import annotations

import pytest

from app.core.tasks import ACTIVE, TRANSITIONS, Event, Move, State, Task, move, path

S, E = State, Event


def task(state: State, *previous: State) -> Task:
    return Task("octo/repo", 1, state, previous)


@pytest.mark.parametrize(
    ("state", "event", "expected"),
    [
        pytest.param(None, E.PROPOSE, S.PROPOSED, id="new-task"),
        pytest.param(S.PROPOSED, E.ACCEPT, S.QUEUED, id="accepted"),
        pytest.param(S.PROPOSED, E.REJECT, S.REJECTED, id="rejected"),
        pytest.param(S.PROPOSED, E.NEED_APPROVAL, S.AWAITING_APPROVAL, id="needs-approval"),
        pytest.param(S.AWAITING_APPROVAL, E.APPROVE, S.QUEUED, id="approved"),
        pytest.param(S.QUEUED, E.ASSIGN, S.ASSIGNED, id="assigned"),
        pytest.param(S.ASSIGNED, E.ACKNOWLEDGE, S.IN_PROGRESS, id="acknowledged"),
        pytest.param(S.ASSIGNED, E.REQUEUE, S.QUEUED, id="no-ack-back-to-queue"),
        pytest.param(S.ASSIGNED, E.OPEN_PR, S.IN_REVIEW, id="pr-is-an-ack"),
        pytest.param(S.IN_REVIEW, E.REQUEST_CHANGES, S.CHANGES_REQUESTED, id="fix-round"),
        pytest.param(S.CHANGES_REQUESTED, E.PUSH_FIX, S.IN_REVIEW, id="fixed"),
        pytest.param(S.IN_REVIEW, E.MERGE, S.MERGED, id="merged"),
        pytest.param(S.MERGED, E.FINISH, S.DONE, id="done"),
        pytest.param(S.REJECTED, E.PROPOSE, S.PROPOSED, id="relabelled-after-fix"),
        pytest.param(S.QUEUED, E.MERGE, None, id="no-merge-without-review"),
        pytest.param(S.DONE, E.ASSIGN, None, id="done-is-final"),
        pytest.param(None, E.APPROVE, None, id="nothing-to-approve"),
        pytest.param(S.QUEUED, E.APPROVE, None, id="approve-only-when-waiting"),
        pytest.param(S.IN_PROGRESS, E.BLOCK, S.BLOCKED, id="blocked-from-anywhere-active"),
        pytest.param(S.IN_REVIEW, E.ESCALATE, S.ESCALATED, id="escalated"),
        pytest.param(S.QUEUED, E.PAUSE, S.PAUSED, id="paused"),
        pytest.param(S.BLOCKED, E.BLOCK, None, id="not-blocked-twice"),
        pytest.param(S.DONE, E.BLOCK, None, id="final-states-do-not-block"),
        pytest.param(S.IN_PROGRESS, E.CANCEL, S.CANCELLED, id="label-removed"),
        pytest.param(S.CANCELLED, E.CANCEL, None, id="cancelled-once"),
        pytest.param(None, E.CANCEL, None, id="no-task-to-cancel"),
    ],
)
def test_transitions(state: State | None, event: Event, expected: State | None) -> None:
    step = move(task(state) if state is not None else None, event)
    assert (step.to_state if step is not None else None) == expected


@pytest.mark.parametrize(
    ("detour", "back"),
    [(E.BLOCK, E.UNBLOCK), (E.ESCALATE, E.DEESCALATE), (E.PAUSE, E.RESUME)],
)
@pytest.mark.parametrize("start", [S.QUEUED, S.IN_PROGRESS, S.IN_REVIEW])
def test_detours_return_where_they_left(start: State, detour: Event, back: Event) -> None:
    away = move(task(start), detour)
    assert away is not None
    assert away.previous == (start,)
    returned = move(task(away.to_state, *away.previous), back)
    assert returned == Move(away.to_state, start, ())
    assert move(task(start), back) is None  # nothing to return from


def test_nested_detours_unwind_in_order() -> None:
    blocked = move(task(S.IN_REVIEW), E.BLOCK)
    assert blocked == Move(S.IN_REVIEW, S.BLOCKED, (S.IN_REVIEW,))
    escalated = move(task(S.BLOCKED, *blocked.previous), E.ESCALATE)
    assert escalated == Move(S.BLOCKED, S.ESCALATED, (S.IN_REVIEW, S.BLOCKED))
    paused = move(task(S.ESCALATED, *escalated.previous), E.PAUSE)
    assert paused == Move(S.ESCALATED, S.PAUSED, (S.IN_REVIEW, S.BLOCKED, S.ESCALATED))
    assert move(task(S.PAUSED, *paused.previous), E.BLOCK) is None  # already blocked below
    resumed = move(task(S.PAUSED, *paused.previous), E.RESUME)
    assert resumed == Move(S.PAUSED, S.ESCALATED, (S.IN_REVIEW, S.BLOCKED))
    back = move(task(S.ESCALATED, *resumed.previous), E.DEESCALATE)
    assert back == Move(S.ESCALATED, S.BLOCKED, (S.IN_REVIEW,))
    assert move(task(S.BLOCKED, *back.previous), E.UNBLOCK) == Move(S.BLOCKED, S.IN_REVIEW, ())


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        pytest.param(task(S.BLOCKED, S.IN_PROGRESS), Move(S.BLOCKED, S.ASSIGNED), id="working"),
        pytest.param(task(S.BLOCKED, S.IN_REVIEW), Move(S.BLOCKED, S.ASSIGNED), id="reviewed"),
        pytest.param(
            task(S.BLOCKED, S.PAUSED, S.CHANGES_REQUESTED),
            Move(S.BLOCKED, S.ASSIGNED, (S.PAUSED,)),
            id="keeps-the-rest-of-the-stack",
        ),
        pytest.param(task(S.BLOCKED, S.QUEUED), None, id="nobody-held-it"),
        pytest.param(task(S.IN_PROGRESS), None, id="only-a-block"),
    ],
)
def test_a_block_is_handed_over_only_from_work_an_agent_held(
    given: Task, expected: Move | None
) -> None:
    assert move(given, E.HAND_OVER) == expected


def test_the_return_stack_round_trips_through_the_store_format() -> None:
    from app.core.tasks import as_action, parse_previous

    step = Move(S.ESCALATED, S.PAUSED, (S.IN_REVIEW, S.BLOCKED, S.ESCALATED))
    action = as_action("octo/repo", 1, step, E.PAUSE, "test")
    assert action.previous == "in_review,blocked,escalated"
    assert parse_previous(action.previous) == step.previous
    assert parse_previous(None) == ()


def test_path_is_the_overall_move() -> None:
    assert path(None, E.PROPOSE, E.ACCEPT) == Move(None, S.QUEUED, ())
    assert path(task(S.REJECTED), E.PROPOSE, E.REJECT) == Move(S.REJECTED, S.REJECTED, ())
    assert path(task(S.QUEUED), E.PROPOSE, E.ACCEPT) is None


def test_the_table_only_names_real_states() -> None:
    for (state, _), target in TRANSITIONS.items():
        assert state is None or state in State
        assert target in State
    assert S.DONE not in ACTIVE and S.PROPOSED not in ACTIVE and S.IN_REVIEW in ACTIVE
