"""Project cards: the column (the project's Status option) for each task state."""

from __future__ import annotations

from collections.abc import Sequence

from app.core.actions import Action, MoveCard, Transition
from app.core.config import Config
from app.core.tasks import State

NO_CARD = frozenset({State.PROPOSED.value, State.REJECTED.value})


def with_cards(actions: Sequence[Action], config: Config) -> list[Action]:
    """The decision with a project card move after each task move (when a project is
    configured): every rule's transitions move the card the same way."""
    if config.project.number is None:
        return list(actions)
    out: list[Action] = []
    for action in actions:
        out.append(action)
        if isinstance(action, Transition) and action.to_state not in NO_CARD:
            state = State(action.to_state)
            out.append(
                MoveCard(
                    repo=action.repo,
                    number=action.number,
                    column=column_for(state, config),
                    reason=action.reason,
                )
            )
    return out


def column_for(state: State, config: Config) -> str:
    """The project column (the Status option) for a task state."""
    columns = config.project.columns
    if state in (State.ASSIGNED, State.IN_PROGRESS, State.CHANGES_REQUESTED):
        return columns.in_progress
    if state is State.IN_REVIEW:
        return columns.in_review
    if state in (State.BLOCKED, State.ESCALATED, State.PAUSED):
        return columns.blocked
    if state in (State.MERGED, State.DONE):
        return columns.done
    return columns.todo
