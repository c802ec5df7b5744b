"""Escalations end: an urgent issue closed, or `/nightshift resolve` on it, resolves the
escalation and lets the task it stopped go back to where it was."""

from __future__ import annotations

from collections.abc import Sequence

from app.core.actions import Action, Dispatch, ResolveEscalation
from app.core.config import Config
from app.core.envelope import Envelope
from app.core.labels import URGENT_LABEL
from app.core.router import Router
from app.core.state import Escalation, RepoState
from app.core.tasks import Event, State, Task, as_action, move

router = Router()


def concerns(env: Envelope) -> bool:
    """Whether the delivery is about an urgent issue (so the effects layer looks up its
    escalation before the rules decide)."""
    issue = env.payload.get("issue")
    labels = issue.get("labels") if isinstance(issue, dict) else None
    return isinstance(labels, list) and any(
        isinstance(label, dict) and label.get("name") == URGENT_LABEL for label in labels
    )


def resolve(repo: str, escalation: Escalation, by: str, cause: str) -> list[Action]:
    """Resolve it; the task it escalated returns where it was, and a pass looks again."""
    why = f"escalation: {escalation.category} resolved by @{by}"
    actions: list[Action] = [ResolveEscalation(repo=repo, key=escalation.key, by=by, reason=why)]
    # the task it stopped: escalated (a security concern), or blocked too long (the
    # escalation path's last level): it goes back to where it was
    returns = {State.ESCALATED.value: Event.DEESCALATE}
    if escalation.category == "blocked":
        returns[State.BLOCKED.value] = Event.UNBLOCK
    event = returns.get(escalation.task_state or "")
    if escalation.task is not None and event is not None:
        task = Task(
            repo,
            escalation.task,
            State(escalation.task_state or ""),
            tuple(State(s) for s in escalation.task_previous),
        )
        step = move(task, event)
        if step is not None:
            actions.append(as_action(repo, task.number, step, event, why))
    actions.append(Dispatch(repo=repo, cause=cause, reason=why))
    return actions


@router.on("issues", "closed")
def on_closed(env: Envelope, state: RepoState, config: Config) -> Sequence[Action]:
    if env.repository is None or state.escalation is None:
        return []
    return resolve(env.repository, state.escalation, env.sender or "someone", env.delivery_id)
