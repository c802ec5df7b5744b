"""Intake decisions, table-driven: (payload, config) -> actions."""

from __future__ import annotations

from typing import Any

import pytest

from app.core import labels
from app.core.actions import (
    Action,
    AddLabels,
    Comment,
    Dispatch,
    RecordTask,
    RemoveLabel,
    Transition,
)
from app.core.config import DEFAULT_CONFIG, Config
from app.core.envelope import Envelope
from app.core.rules import decide, intake
from app.core.state import RepoState
from app.core.tasks import State as TaskState
from app.core.tasks import Task
from tests.helpers import labeled_issue, payload

REPO = "octo/repo"


def env(data: dict[str, Any], event: str = "issues", delivery: str = "d1") -> Envelope:
    return Envelope.parse(delivery, event, data)


def decided(actions: tuple[Action, ...]) -> list[Action]:
    """The intake decision without the task's facts and the dispatch pass it asks for
    (tested on their own below)."""
    return [a for a in actions if not isinstance(a, RecordTask | Dispatch)]


def moved(
    from_state: str | None, to_state: str, event: str, reason: str, previous: str | None = None
) -> Transition:
    return Transition(
        repo=REPO,
        number=1,
        event=event,
        from_state=from_state,
        to_state=to_state,
        previous=previous,
        reason=reason,
    )


def rejected(*problems: str) -> list[Action]:
    body = intake.REJECTED_COMMENT.format(
        problems="\n".join(f"- {p}" for p in problems), label="autonomous"
    )
    reason = f"intake: {len(problems)} validation rule(s) failed"
    return [
        moved(None, "rejected", "reject", reason),
        AddLabels(repo=REPO, number=1, labels=(labels.REJECTED_LABEL,), reason=reason),
        Comment(
            repo=REPO,
            number=1,
            body=body,
            key=f"intake-rejected:{REPO}#1:{intake.digest(list(problems))}",
            reason="intake: tell the maintainer what to fix",
        ),
    ]


ACCEPTED = moved(None, "queued", "accept", "intake: accepted for autonomous work")
QUEUED = [
    ACCEPTED,
    AddLabels(
        repo=REPO,
        number=1,
        labels=(labels.QUEUED_LABEL,),
        reason="intake: accepted for autonomous work",
    ),
]
HUMAN = {"login": "octocat", "type": "User"}
BOT = {"login": "copilot-swe-agent[bot]", "type": "Bot"}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(labeled_issue(), QUEUED, id="valid-with-criteria-section"),
        pytest.param(
            labeled_issue(body="Do it.\n\n- [ ] tests pass\n- [x] docs"),
            QUEUED,
            id="valid-with-checklist",
        ),
        pytest.param(labeled_issue(label="bug"), [], id="other-label"),
        pytest.param(
            labeled_issue(body="Please fix"), rejected(intake.NO_CRITERIA), id="no-criteria"
        ),
        pytest.param(
            labeled_issue(body="`- [ ] in code`"),
            rejected(intake.NO_CRITERIA),
            id="checklist-inside-code-is-not-criteria",
        ),
        pytest.param(labeled_issue(state="closed"), rejected(intake.CLOSED), id="closed"),
        pytest.param(labeled_issue(locked=True), rejected(intake.LOCKED), id="locked"),
        pytest.param(
            labeled_issue(assignees=[HUMAN]),
            rejected(intake.ASSIGNED_TO_HUMAN.format(logins="@octocat")),
            id="assigned-to-human",
        ),
        pytest.param(labeled_issue(assignees=[BOT]), QUEUED, id="assigned-to-bot-is-fine"),
        pytest.param(
            labeled_issue(state="closed", locked=True, body=""),
            rejected(intake.CLOSED, intake.LOCKED, intake.NO_CRITERIA),
            id="every-failure-listed-once",
        ),
        pytest.param(
            labeled_issue(labels=[{"name": "autonomous"}, {"name": labels.REJECTED_LABEL}]),
            [
                ACCEPTED,
                RemoveLabel(
                    repo=REPO,
                    number=1,
                    label=labels.REJECTED_LABEL,
                    reason="intake: the issue now passes validation",
                ),
                *QUEUED[1:],
            ],
            id="fixed-after-rejection",
        ),
    ],
)
def test_labeled(data: dict[str, Any], expected: list[Action]) -> None:
    decision = decide(env(data), RepoState(), DEFAULT_CONFIG)
    assert decision.failures == ()
    assert decided(decision.actions) == expected


def test_criteria_not_required_by_config() -> None:
    config = Config(require_acceptance_criteria=False)
    decision = decide(env(labeled_issue(body="Please fix")), RepoState(), config)
    assert decided(decision.actions) == QUEUED


def test_custom_trigger_label() -> None:
    config = Config(trigger_label="nightshift")
    decision = decide(env(labeled_issue(label="nightshift")), RepoState(), config)
    assert decided(decision.actions) == QUEUED


def test_opened_with_the_label_is_intake() -> None:
    data = labeled_issue()
    data["action"] = "opened"
    del data["label"]
    assert decided(decide(env(data), RepoState(), DEFAULT_CONFIG).actions) == QUEUED


def test_opened_without_the_label_does_nothing() -> None:
    data = payload("issues.opened")
    decision = decide(env(data), RepoState(), DEFAULT_CONFIG)
    assert decision.handled and decision.actions == ()


def test_unlabeled_cancels_the_task_and_removes_nightshift_labels() -> None:
    data = labeled_issue(labels=[{"name": labels.QUEUED_LABEL}])
    data["action"] = "unlabeled"
    task = Task(REPO, 1, TaskState.QUEUED)
    assert decided(decide(env(data), RepoState(task=task), DEFAULT_CONFIG).actions) == [
        moved("queued", "cancelled", "cancel", "intake: the `autonomous` label was removed"),
        RemoveLabel(
            repo=REPO,
            number=1,
            label=labels.QUEUED_LABEL,
            reason="intake: the `autonomous` label was removed",
        ),
    ]


def test_paused_repository_decides_nothing() -> None:
    decision = decide(env(labeled_issue()), RepoState(paused=True), DEFAULT_CONFIG)
    assert decision.handled and decision.actions == ()
    assert decision.rules == ("paused",)


def test_unknown_event_is_not_handled() -> None:
    decision = decide(
        env({"action": "created"}, event="deployment_status"), RepoState(), DEFAULT_CONFIG
    )
    assert not decision.handled


def test_a_payload_missing_what_a_rule_needs_is_a_recorded_failure_not_a_crash() -> None:
    data = {
        "action": "labeled",
        "label": {"name": "autonomous"},
        "issue": {"title": "no number"},
        "repository": {"full_name": REPO},
    }
    decision = decide(env(data), RepoState(), DEFAULT_CONFIG)
    assert decision.actions == ()
    assert [f.rule for f in decision.failures] == ["intake.on_labeled"]
    assert "issue.number" in decision.failures[0].error


def test_real_payload_lacking_newer_fields_still_decides() -> None:
    data = payload("issues.labeled")
    for key in ("performed_via_github_app", "reactions", "timeline_url", "state_reason"):
        data["issue"].pop(key, None)
    data["label"]["name"] = "autonomous"
    data["issue"]["body"] = "- [ ] done"
    data["issue"]["assignees"] = []
    decision = decide(env(data), RepoState(), DEFAULT_CONFIG)
    assert decision.failures == ()
    assert [a.describe() for a in decided(decision.actions)] == [
        "Codertocat/Hello-World#1:new->queued",
        "Codertocat/Hello-World#1:+nightshift:queued",
    ]


@pytest.mark.parametrize(
    ("issue", "problem"),
    [
        pytest.param(
            {"body": "- [ ] edit `.github/workflows/ci.yml` to add a job"},
            intake.PROTECTED.format(paths="`.github/workflows/ci.yml`"),
            id="protected-workflow-in-code",
        ),
        pytest.param(
            {"title": "Update CODEOWNERS", "body": "- [ ] done"},
            intake.PROTECTED.format(paths="`CODEOWNERS`"),
            id="protected-file-in-title",
        ),
        pytest.param(
            {"labels": [{"name": "autonomous"}, {"name": "size:XL"}]},
            intake.TOO_BIG.format(size="size:XL", limit="size:L"),
            id="too-big",
        ),
    ],
)
def test_protected_paths_and_size_are_rejected(issue: dict[str, Any], problem: str) -> None:
    decision = decide(env(labeled_issue(**issue)), RepoState(), DEFAULT_CONFIG)
    assert decided(decision.actions) == rejected(problem)


def test_size_within_the_limit_and_unprotected_paths_pass() -> None:
    data = labeled_issue(
        body="- [ ] change `src/app.py` and docs/guide.md",
        labels=[{"name": "autonomous"}, {"name": "size:M"}],
    )
    assert decided(decide(env(data), RepoState(), DEFAULT_CONFIG).actions) == QUEUED


def test_destructive_operation_waits_for_approval() -> None:
    data = labeled_issue(body="- [ ] DROP TABLE sessions once migrated")
    assert decided(decide(env(data), RepoState(), DEFAULT_CONFIG).actions) == [
        moved(
            None,
            "awaiting_approval",
            "need_approval",
            "intake: destructive operation (drop table) needs approval",
        ),
        AddLabels(
            repo=REPO,
            number=1,
            labels=(labels.NEEDS_APPROVAL_LABEL,),
            reason="intake: destructive operation (drop table) needs approval",
        ),
        Comment(
            repo=REPO,
            number=1,
            body=intake.NEEDS_APPROVAL_COMMENT.format(found="`drop table`"),
            key=f"intake-approval:{REPO}#1:{intake.digest(['drop table'])}",
            reason="intake: ask for approval",
        ),
    ]
    # labelled again while still waiting: nothing new
    waiting = labeled_issue(
        body="- [ ] drop table x",
        labels=[{"name": "autonomous"}, {"name": labels.NEEDS_APPROVAL_LABEL}],
    )
    task = Task(REPO, 1, TaskState.AWAITING_APPROVAL)
    assert decide(env(waiting), RepoState(task=task), DEFAULT_CONFIG).actions == ()


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        pytest.param(None, QUEUED, id="new"),
        pytest.param(TaskState.QUEUED, [], id="already-queued-repeated-event"),
        pytest.param(TaskState.IN_PROGRESS, [], id="already-at-work"),
        pytest.param(TaskState.BLOCKED, [], id="blocked"),
        pytest.param(
            TaskState.CANCELLED,
            [
                moved("cancelled", "queued", "accept", "intake: accepted for autonomous work"),
                *QUEUED[1:],
            ],
            id="labelled-again-after-cancel",
        ),
    ],
)
def test_a_labelled_issue_is_taken_in_once(state: TaskState | None, expected: list[Action]) -> None:
    task = Task(REPO, 1, state) if state is not None else None
    decision = decide(env(labeled_issue()), RepoState(task=task), DEFAULT_CONFIG)
    assert decided(decision.actions) == expected


def test_the_opened_and_labeled_deliveries_of_a_new_issue_reject_with_one_comment_key() -> None:
    labelled = labeled_issue(body="fix it")
    opened = {**labelled, "action": "opened"}
    first = decide(Envelope.parse("d-opened", "issues", opened), RepoState(), DEFAULT_CONFIG)
    rejected_task = Task(REPO, 1, TaskState.REJECTED)
    second = decide(
        Envelope.parse("d-labeled", "issues", labelled),
        RepoState(task=rejected_task),
        DEFAULT_CONFIG,
    )
    keys = [a.key for a in (*first.actions, *second.actions) if isinstance(a, Comment)]
    assert len(keys) == 2 and keys[0] == keys[1]  # the executor posts a key once


def test_an_accepted_task_remembers_its_facts_and_asks_for_a_pass() -> None:
    data = labeled_issue(body="## Acceptance criteria\n- [ ] works\n\nDepends on #4, #5")
    state = RepoState(native_dependencies=frozenset({9, 1}))
    actions = decide(env(data), state, DEFAULT_CONFIG).actions
    [facts] = [a for a in actions if isinstance(a, RecordTask)]
    assert facts.depends_on == (4, 5, 9)  # text and native; never the issue itself
    assert "autonomous" in facts.labels and facts.created_at > 0
    [dispatch] = [a for a in actions if isinstance(a, Dispatch)]
    assert dispatch.cause == "d1" and dispatch.delay_seconds == 0


def test_an_edited_task_is_read_again_and_a_closed_issue_asks_for_a_pass() -> None:
    edited = {**payload("issues.opened"), "action": "edited"}
    edited["issue"] = {**edited["issue"], "number": 1}
    state = RepoState(task=Task(REPO, 1, TaskState.QUEUED))
    actions = decide(env(edited), state, DEFAULT_CONFIG).actions
    assert [type(a) for a in actions] == [RecordTask, Dispatch]
    assert decide(env(edited), RepoState(), DEFAULT_CONFIG).actions == ()
    closed = {**payload("issues.opened"), "action": "closed"}
    assert [type(a) for a in decide(env(closed), RepoState(), DEFAULT_CONFIG).actions] == [Dispatch]


def test_plan_mode_waits_for_approval_and_asks_for_the_plan() -> None:
    config = Config(approval="plan")
    actions = decide(env(labeled_issue()), RepoState(), config).actions
    [transition] = [a for a in actions if isinstance(a, Transition)]
    assert transition.to_state == "awaiting_approval"
    assert any(
        isinstance(a, AddLabels) and a.labels == (labels.NEEDS_APPROVAL_LABEL,) for a in actions
    )
    assert [a.reason for a in actions if isinstance(a, Dispatch)] == [
        "intake: approval mode `plan`: the plan waits for `/nightshift approve`: post the plan"
    ]
    assert not any(isinstance(a, AddLabels) and labels.QUEUED_LABEL in a.labels for a in actions)
