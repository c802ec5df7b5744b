"""Intake: an issue labelled for autonomous work is validated, then queued or rejected."""

from __future__ import annotations

from collections.abc import Sequence

from app.core.actions import Action, AddLabels, Comment, RemoveLabel
from app.core.config import Config
from app.core.envelope import Envelope, IssueView, LabelView, view
from app.core.markdown import has_acceptance_criteria
from app.core.router import Router
from app.core.state import RepoState

router = Router()

QUEUED_LABEL = "nightshift:queued"
REJECTED_LABEL = "nightshift:rejected"

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
    return found


def _intake(env: Envelope, config: Config) -> list[Action]:
    assert env.repository is not None
    issue = view(IssueView, env.payload, "issue")
    failed = problems(issue, config)
    repo, number = env.repository, issue.number
    if failed:
        actions: list[Action] = []
        if QUEUED_LABEL in issue.label_names:
            actions.append(
                RemoveLabel(
                    repo=repo, number=number, label=QUEUED_LABEL, reason="intake: validation failed"
                )
            )
        body = REJECTED_COMMENT.format(
            problems="\n".join(f"- {problem}" for problem in failed), label=config.trigger_label
        )
        actions += [
            AddLabels(
                repo=repo,
                number=number,
                labels=(REJECTED_LABEL,),
                reason=f"intake: {len(failed)} validation rule(s) failed",
            ),
            Comment(
                repo=repo,
                number=number,
                body=body,
                key=f"intake-rejected:{env.delivery_id}",
                reason="intake: tell the maintainer what to fix",
            ),
        ]
        return actions
    actions = []
    if REJECTED_LABEL in issue.label_names:
        actions.append(
            RemoveLabel(
                repo=repo,
                number=number,
                label=REJECTED_LABEL,
                reason="intake: the issue now passes validation",
            )
        )
    actions.append(
        AddLabels(
            repo=repo,
            number=number,
            labels=(QUEUED_LABEL,),
            reason="intake: accepted for autonomous work",
        )
    )
    return actions


@router.on("issues", "labeled")
def on_labeled(env: Envelope, state: RepoState, config: Config) -> Sequence[Action]:
    label = view(LabelView, env.payload, "label")
    if label.name != config.trigger_label or env.repository is None:
        return []
    return _intake(env, config)


@router.on("issues", "opened")
def on_opened(env: Envelope, state: RepoState, config: Config) -> Sequence[Action]:
    issue = view(IssueView, env.payload, "issue")
    if config.trigger_label not in issue.label_names or env.repository is None:
        return []
    return _intake(env, config)


@router.on("issues", "unlabeled")
def on_unlabeled(env: Envelope, state: RepoState, config: Config) -> Sequence[Action]:
    label = view(LabelView, env.payload, "label")
    if label.name != config.trigger_label or env.repository is None:
        return []
    issue = view(IssueView, env.payload, "issue")
    return [
        RemoveLabel(
            repo=env.repository,
            number=issue.number,
            label=name,
            reason=f"intake: the `{config.trigger_label}` label was removed",
        )
        for name in (QUEUED_LABEL, REJECTED_LABEL)
        if name in issue.label_names
    ]
