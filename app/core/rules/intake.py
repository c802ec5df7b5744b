"""Intake: an issue labelled for autonomous work is validated, then queued or rejected."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pathspec

from app.core.actions import (
    Action,
    AddLabels,
    Comment,
    Dispatch,
    RecordTask,
    RemoveLabel,
)
from app.core.config import Config
from app.core.dispatch import withdraw
from app.core.envelope import Envelope, IssueView, LabelView, view
from app.core.labels import NEEDS_APPROVAL_LABEL, QUEUED_LABEL, REJECTED_LABEL
from app.core.markdown import has_acceptance_criteria, words
from app.core.router import Router
from app.core.schedule import depends_on
from app.core.state import RepoState
from app.core.tasks import Event, as_action, move, path
from app.core.tasks import State as TaskState

router = Router()


REJECTED_COMMENT = (
    "Nightshift can't take this issue for autonomous work yet:\n\n{problems}\n\n"
    "Fix the above, then remove and add the `{label}` label again."
)
CLOSED = "The issue is closed. Reopen it first."
LOCKED = "The issue is locked. Unlock it first."
ASSIGNED_TO_HUMAN = (
    "The issue is already assigned to {logins}. Unassign them if an agent should take it."
)
NO_CRITERIA = (
    "The issue has no acceptance criteria. Add a checklist (`- [ ] ...`) "
    "or an `## Acceptance criteria` section saying when the work is done."
)
PROTECTED = (
    "The issue mentions protected paths ({paths}), which agents may not change. "
    "Make that change by hand, or take the paths out of the issue."
)
TOO_BIG = "The issue is labelled `{size}`, above the limit `{limit}`. Split it into smaller issues."
NEEDS_APPROVAL_COMMENT = (
    "This issue mentions a destructive operation ({found}). "
    "An agent will take it only after someone with write access comments "
    "`/nightshift approve` here."
)


def problems(issue: IssueView, config: Config) -> list[str]:
    """Every safety rule the issue fails, each with how to fix it."""
    found: list[str] = []
    if issue.state != "open":
        found.append(CLOSED)
    if issue.locked:
        found.append(LOCKED)
    humans = [user.login for user in issue.assignees if user.type != "Bot"]
    if humans:
        found.append(ASSIGNED_TO_HUMAN.format(logins=", ".join(f"@{h}" for h in humans)))
    if config.require_acceptance_criteria and not has_acceptance_criteria(issue.body):
        found.append(NO_CRITERIA)
    mentioned = protected_mentions(issue, config)
    if mentioned:
        found.append(PROTECTED.format(paths=", ".join(f"`{p}`" for p in mentioned)))
    size = oversize(issue, config)
    if size is not None:
        found.append(TOO_BIG.format(size=size, limit=config.max_size))
    return found


def protected_mentions(issue: IssueView, config: Config) -> list[str]:
    """Paths in the title or body that match a protected glob (gitignore syntax)."""
    spec = pathspec.PathSpec.from_lines("gitignore", config.protected_paths)
    candidates = words(issue.title) | words(issue.body)
    return sorted(w for w in candidates if spec.match_file(w.lstrip("/")))


def oversize(issue: IssueView, config: Config) -> str | None:
    """The issue's size label when it is above `max_size`."""
    if config.max_size is None:
        return None
    limit = config.size_labels.index(config.max_size)
    sizes = [config.size_labels.index(n) for n in issue.label_names if n in config.size_labels]
    return config.size_labels[max(sizes)] if sizes and max(sizes) > limit else None


def destructive(issue: IssueView, config: Config) -> list[str]:
    """The configured destructive phrases the issue uses."""
    text = f"{issue.title}\n{issue.body or ''}".lower()
    return [phrase for phrase in config.destructive_keywords if phrase.lower() in text]


def _intake(env: Envelope, state: RepoState, config: Config) -> list[Action]:
    assert env.repository is not None
    issue = view(IssueView, env.payload, "issue")
    task = state.task
    if task is not None and task.state not in (TaskState.REJECTED, TaskState.CANCELLED):
        return []  # already taken in: a repeated or re-sent event changes nothing
    repo, number = env.repository, issue.number
    failed = problems(issue, config)
    if failed:
        step = path(task, Event.PROPOSE, Event.REJECT)
        assert step is not None
        reason = f"intake: {len(failed)} validation rule(s) failed"
        actions: list[Action] = [as_action(repo, number, step, Event.REJECT, reason)]
        if QUEUED_LABEL in issue.label_names:
            actions.append(RemoveLabel(repo=repo, number=number, label=QUEUED_LABEL, reason=reason))
        body = REJECTED_COMMENT.format(
            problems="\n".join(f"- {problem}" for problem in failed), label=config.trigger_label
        )
        return [
            *actions,
            AddLabels(repo=repo, number=number, labels=(REJECTED_LABEL,), reason=reason),
            Comment(
                repo=repo,
                number=number,
                body=body,
                # one comment per list of problems: the `opened` and `labeled` deliveries of
                # a new issue, or a relabel with nothing fixed, do not repeat it
                key=f"intake-rejected:{repo}#{number}:{digest(failed)}",
                reason="intake: tell the maintainer what to fix",
            ),
        ]
    risky = destructive(issue, config)
    planned = config.approval == "plan"
    event = Event.NEED_APPROVAL if risky or planned else Event.ACCEPT
    step = path(task, Event.PROPOSE, event)
    assert step is not None
    if risky:
        reason = f"intake: destructive operation ({', '.join(risky)}) needs approval"
    elif planned:
        reason = "intake: approval mode `plan`: the plan waits for `/nightshift approve`"
    else:
        reason = "intake: accepted for autonomous work"
    actions = [as_action(repo, number, step, event, reason), task_facts(env, state, issue)]
    if REJECTED_LABEL in issue.label_names:
        actions.append(
            RemoveLabel(
                repo=repo,
                number=number,
                label=REJECTED_LABEL,
                reason="intake: the issue now passes validation",
            )
        )
    if not risky and not planned:
        return [
            *actions,
            queue(repo, number, reason),
            Dispatch(repo=repo, cause=env.delivery_id, reason=f"{reason}: find it an agent"),
        ]
    # the dispatch pass posts the plan (dependencies, the agent it would choose, estimate)
    plan = Dispatch(repo=repo, cause=env.delivery_id, reason=f"{reason}: post the plan")
    if not risky:
        labels = AddLabels(repo=repo, number=number, labels=(NEEDS_APPROVAL_LABEL,), reason=reason)
        return [*actions, labels, plan]
    found = ", ".join(f"`{phrase}`" for phrase in risky)
    return [
        *actions,
        AddLabels(repo=repo, number=number, labels=(NEEDS_APPROVAL_LABEL,), reason=reason),
        Comment(
            repo=repo,
            number=number,
            body=NEEDS_APPROVAL_COMMENT.format(found=found),
            key=f"intake-approval:{repo}#{number}:{digest(risky)}",
            reason="intake: ask for approval",
        ),
        *([plan] if planned else []),
    ]


def wants_dependencies(env: Envelope, state: RepoState, config: Config) -> bool:
    """Whether the effects layer should read the issue's native dependencies before the
    rules decide: when the issue is taken in, or a task's issue is edited."""
    if env.event != "issues" or env.repository is None:
        return False
    if env.action == "edited":
        return state.task is not None and state.task.state not in FINISHED
    if env.action == "labeled":
        label = env.payload.get("label")
        return isinstance(label, dict) and label.get("name") == config.trigger_label
    if env.action == "opened":
        issue = env.payload.get("issue")
        labels = issue.get("labels") if isinstance(issue, dict) else None
        return isinstance(labels, list) and any(
            isinstance(x, dict) and x.get("name") == config.trigger_label for x in labels
        )
    return False


def task_facts(env: Envelope, state: RepoState, issue: IssueView) -> RecordTask:
    """What scheduling and the assignment need from the issue: its text, labels, and
    dependencies (`Depends on #N` lines, GitHub's blocked-by links and sub-issues)."""
    assert env.repository is not None
    native = state.native_dependencies or frozenset()
    found = (depends_on(issue.body) | native) - {issue.number}
    return RecordTask(
        repo=env.repository,
        number=issue.number,
        title=issue.title,
        body=issue.body,
        labels=tuple(sorted(issue.label_names)),
        depends_on=tuple(sorted(found)),
        created_at=issue.created_at.timestamp() if issue.created_at else 0.0,
        reason="intake: remember the issue's text, labels and dependencies",
    )


def digest(parts: Sequence[str]) -> str:
    """A short fingerprint of what a comment says, for its idempotency key."""
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def queue(repo: str, number: int, reason: str) -> AddLabels:
    return AddLabels(repo=repo, number=number, labels=(QUEUED_LABEL,), reason=reason)


@router.on("issues", "labeled")
def on_labeled(env: Envelope, state: RepoState, config: Config) -> Sequence[Action]:
    label = view(LabelView, env.payload, "label")
    if label.name != config.trigger_label or env.repository is None:
        return []
    return _intake(env, state, config)


@router.on("issues", "opened")
def on_opened(env: Envelope, state: RepoState, config: Config) -> Sequence[Action]:
    issue = view(IssueView, env.payload, "issue")
    if config.trigger_label not in issue.label_names or env.repository is None:
        return []
    return _intake(env, state, config)


HELD = frozenset(
    {
        TaskState.ASSIGNED,
        TaskState.IN_PROGRESS,
        TaskState.IN_REVIEW,
        TaskState.CHANGES_REQUESTED,
        TaskState.BLOCKED,
        TaskState.ESCALATED,
        TaskState.PAUSED,
    }
)


@router.on("issues", "edited")
def on_edited(env: Envelope, state: RepoState, config: Config) -> Sequence[Action]:
    """A task's issue changed: its dependencies, labels or text may have (a new
    `Depends on` line, a cycle broken); the next pass sees the change."""
    task = state.task
    if env.repository is None or task is None or task.state in FINISHED:
        return []
    issue = view(IssueView, env.payload, "issue")
    return [
        task_facts(env, state, issue),
        Dispatch(repo=env.repository, cause=env.delivery_id, reason="intake: the issue changed"),
    ]


@router.on("issues", "closed")
def on_closed(env: Envelope, state: RepoState, config: Config) -> Sequence[Action]:
    """A closed issue may be what queued tasks wait for."""
    if env.repository is None:
        return []
    return [
        Dispatch(
            repo=env.repository,
            cause=env.delivery_id,
            reason="intake: an issue closed; tasks that depend on it may be ready",
        )
    ]


FINISHED = frozenset({TaskState.REJECTED, TaskState.DONE, TaskState.CANCELLED})


@router.on("issues", "unlabeled")
def on_unlabeled(env: Envelope, state: RepoState, config: Config) -> Sequence[Action]:
    label = view(LabelView, env.payload, "label")
    if label.name != config.trigger_label or env.repository is None:
        return []
    issue = view(IssueView, env.payload, "issue")
    reason = f"intake: the `{config.trigger_label}` label was removed"
    actions: list[Action] = []
    task = state.task
    step = move(task, Event.CANCEL)
    if step is not None:
        actions.append(as_action(env.repository, issue.number, step, Event.CANCEL, reason))
        if task is not None and task.agent_name and task.state in HELD:
            actions.append(withdraw(env.repository, task, "the task was cancelled", reason))
        actions.append(Dispatch(repo=env.repository, cause=env.delivery_id, reason=reason))
    return actions + [
        RemoveLabel(repo=env.repository, number=issue.number, label=name, reason=reason)
        for name in (QUEUED_LABEL, REJECTED_LABEL, NEEDS_APPROVAL_LABEL)
        if name in issue.label_names
    ]
