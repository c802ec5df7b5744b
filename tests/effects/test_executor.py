"""The executor: what reaches GitHub, what is recorded, and what is never done twice."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from app.core import revert as revert_texts
from app.core.actions import AddLabels, Comment, OpenIssue, RevertMerge, Transition
from app.effects.executor import DRY_RUN, NO_CREDENTIALS, Context, Executor
from app.effects.github import GitHubApp, GitHubError, marker
from app.effects.revert import NotReverted, Reverted, RevertOutcome
from app.effects.store import Store
from tests.fakes.github import FakeGitHub, FakeIssue
from tests.helpers import app_client

ACCEPT = Transition(
    repo="octo/repo",
    number=1,
    event="accept",
    from_state=None,
    to_state="queued",
    reason="accepted",
)
CTX = Context(delivery_id="d1", installation_id=77)
LABEL = AddLabels(repo="octo/repo", number=1, labels=("nightshift:queued",), reason="accepted")
COMMENT = Comment(
    repo="octo/repo", number=1, body="Can't take this yet.", key="k-1", reason="tell the maintainer"
)


def github(fake: FakeGitHub) -> GitHubApp:
    return app_client(fake)


def test_sends_and_audits(store: Store, fake_github: FakeGitHub) -> None:
    executor = Executor(store, github(fake_github), dry_run=False)
    assert executor.execute(CTX, LABEL) == "sent"
    assert fake_github.effects == ["octo/repo#1:+nightshift:queued"]
    (entry,) = store.audit_log()
    assert (entry.kind, entry.what, entry.why, entry.delivery_id) == (
        "action",
        "octo/repo#1:+nightshift:queued",
        "accepted",
        "d1",
    )
    assert entry.detail == {
        "action": "add_labels",
        "status": 200,
        "request": {
            "method": "POST",
            "path": "/repos/octo/repo/issues/1/labels",
            "json": {"labels": ["nightshift:queued"]},
        },
    }


def test_dry_run_sends_nothing_and_records_the_exact_request(
    store: Store, fake_github: FakeGitHub
) -> None:
    executor = Executor(store, github(fake_github), dry_run=True)
    assert executor.execute(CTX, COMMENT) == "recorded"
    assert fake_github.requests == []
    (entry,) = store.audit_log()
    assert entry.kind == "dry-run"
    assert entry.why == f"tell the maintainer ({DRY_RUN})"
    assert entry.detail is not None
    assert entry.detail["request"] == {
        "method": "POST",
        "path": "/repos/octo/repo/issues/1/comments",
        "json": {"body": "Can't take this yet.\n\n<!-- nightshift:k-1 -->"},
    }


def test_without_credentials_records_instead_of_sending(store: Store) -> None:
    executor = Executor(store, None, dry_run=False)
    assert executor.execute(CTX, LABEL) == "recorded"
    assert store.audit_log()[0].why == f"accepted ({NO_CREDENTIALS})"


def test_github_error_is_audited_not_raised(store: Store, fake_github: FakeGitHub) -> None:
    fake_github.fail(
        "POST", r"/repos/octo/repo/issues/1/labels", 422, body={"message": "Validation Failed"}
    )
    executor = Executor(store, github(fake_github), dry_run=False)
    assert executor.execute(CTX, LABEL) == "failed"
    entry = store.audit_log()[-1]
    assert entry.kind == "error"
    assert "422" in entry.why and "Validation Failed" in entry.why


def test_comment_is_posted_once_even_when_the_step_runs_again(
    store: Store, fake_github: FakeGitHub
) -> None:
    executor = Executor(store, github(fake_github), dry_run=False)
    assert executor.execute(CTX, COMMENT) == "sent"
    assert executor.execute(CTX, COMMENT) == "skipped"
    assert [e for e in fake_github.effects if ":comment:" in e] == [
        "octo/repo#1:comment:Can't take this yet."
    ]


def test_comment_posted_before_a_crash_is_found_by_its_marker(
    store: Store, fake_github: FakeGitHub
) -> None:
    # the first attempt claimed the key and GitHub created the comment, then the process died
    assert store.begin_effect(COMMENT.key)
    fake_github.issue("octo/repo", 1).comments.append(
        {"id": 1, "body": f"Can't take this yet.\n\n{marker(COMMENT.key)}"}
    )
    executor = Executor(store, github(fake_github), dry_run=False)
    assert executor.execute(CTX, COMMENT) == "skipped"
    assert fake_github.writes() == ["POST /app/installations/77/access_tokens"]


def test_comment_claimed_but_never_posted_is_posted_on_the_rerun(
    store: Store, fake_github: FakeGitHub
) -> None:
    assert store.begin_effect(COMMENT.key)  # crashed before the request left
    executor = Executor(store, github(fake_github), dry_run=False)
    assert executor.execute(CTX, COMMENT) == "sent"
    assert fake_github.effects == ["octo/repo#1:comment:Can't take this yet."]


def test_removing_a_label_already_gone_is_not_a_failure(
    store: Store, fake_github: FakeGitHub
) -> None:
    from app.core.actions import RemoveLabel

    executor = Executor(store, github(fake_github), dry_run=False)
    gone = RemoveLabel(repo="octo/repo", number=1, label="nightshift:queued", reason="cancel")
    assert executor.execute(CTX, gone) == "skipped"
    assert store.audit_log()[-1].why == "cancel (already absent)"


def test_server_error_is_raised_for_the_step_to_retry(
    store: Store, fake_github: FakeGitHub
) -> None:
    import pytest

    from app.effects.github import GitHubError

    fake_github.fail("POST", r"/repos/octo/repo/issues/1/comments", 502)
    executor = Executor(store, github(fake_github), dry_run=False)
    with pytest.raises(GitHubError):
        executor.execute(CTX, COMMENT)
    # the re-run (the step's retry) finds no comment with the marker, so it posts once
    assert executor.execute(CTX, COMMENT) == "sent"
    assert [e for e in fake_github.effects if ":comment:" in e] == [
        "octo/repo#1:comment:Can't take this yet."
    ]


def test_comment_created_although_github_answered_502_is_not_posted_again(
    store: Store, fake_github: FakeGitHub
) -> None:
    import pytest

    from app.effects.github import GitHubError

    executor = Executor(store, github(fake_github), dry_run=False)
    fake_github.fail(
        "POST",
        r"/repos/octo/repo/issues/1/comments",
        502,
        after_doing_it=True,
        body={"message": "Bad Gateway"},
    )
    with pytest.raises(GitHubError):
        executor.execute(CTX, COMMENT)  # the step fails and will run again
    assert executor.execute(CTX, COMMENT) == "skipped"
    assert len(fake_github.issue("octo/repo", 1).comments) == 1


def test_transitions_are_compare_and_set(store: Store) -> None:
    from app.core.actions import Transition

    executor = Executor(store, None, dry_run=False)
    assert executor.execute(CTX, ACCEPT) == "sent"
    assert executor.execute(CTX, ACCEPT) == "skipped"  # a re-run of the same move
    stale = Transition(
        repo="octo/repo",
        number=1,
        event="approve",
        from_state="awaiting_approval",
        to_state="queued",
        reason="approved",
    )
    block = Transition(
        repo="octo/repo",
        number=1,
        event="block",
        from_state="queued",
        to_state="blocked",
        previous="queued",
        reason="conflict",
    )
    assert executor.execute(CTX, block) == "sent"
    assert executor.execute(CTX, stale) == "conflict"  # something moved it meanwhile
    task = store.task("octo/repo", 1)
    assert task is not None and (task.state, task.previous) == ("blocked", ("queued",))
    assert store.audit_log()[-1].kind == "error"


def test_a_blocks_level_is_recorded_once_and_only_for_that_block(store: Store) -> None:
    from app.core.actions import RecordLevel, Transition

    clock = [1000.0]
    store.clock = lambda: clock[0]
    executor = Executor(store, None, dry_run=False)
    assert executor.execute(CTX, ACCEPT) == "sent"
    clock[0] = 2000.0
    block = Transition(
        repo="octo/repo",
        number=1,
        event="block",
        from_state="queued",
        to_state="blocked",
        previous="queued",
        reason="review: conflict",
    )
    assert executor.execute(CTX, block) == "sent"
    [facts] = store.dispatch_tasks("octo/repo")
    assert (facts.state_since, facts.level, facts.blocked_why) == (2000.0, 0, "review: conflict")

    def level(value: int, since: float) -> RecordLevel:
        return RecordLevel(repo="octo/repo", number=1, level=value, since=since, reason="path")

    assert executor.execute(CTX, level(1, 2000.0)) == "sent"
    assert executor.execute(CTX, level(1, 2000.0)) == "skipped"  # a re-run
    assert executor.execute(CTX, level(2, 1999.0)) == "skipped"  # an older block's decision
    assert store.dispatch_tasks("octo/repo")[0].level == 1
    # any move starts the clock again at level 0
    clock[0] = 3000.0
    unblock = Transition(
        repo="octo/repo",
        number=1,
        event="unblock",
        from_state="blocked",
        to_state="queued",
        reason="gone",
    )
    assert executor.execute(CTX, unblock) == "sent"
    [facts] = store.dispatch_tasks("octo/repo")
    assert (facts.state_since, facts.level, facts.blocked_why) == (3000.0, 0, None)


def test_a_hand_over_gives_the_task_to_the_new_agent(store: Store) -> None:
    from app.core.actions import Transition

    store.transition("octo/repo", 1, None, "queued", None)
    store.transition(
        "octo/repo", 1, "queued", "assigned", None, event="assign", agent="a-bot", agent_name="a"
    )
    store.transition("octo/repo", 1, "assigned", "blocked", "assigned", event="block")
    executor = Executor(store, None, dry_run=False)
    hand_over = Transition(
        repo="octo/repo",
        number=1,
        event="hand_over",
        from_state="blocked",
        to_state="assigned",
        agent="b-bot",
        agent_name="b",
        expect_assignment=1,
        exclude="a",
        reason="blocked too long",
    )
    assert executor.execute(CTX, hand_over) == "sent"
    assert executor.execute(CTX, hand_over) == "skipped"  # a re-run finds it made
    [facts] = store.dispatch_tasks("octo/repo")
    assert (facts.task.state, facts.task.agent_name, facts.task.assignment) == (
        "assigned",
        "b",
        2,
    )
    assert facts.excluded == frozenset({"a"}) and facts.task.previous == ()


def test_a_deferred_escalation_keeps_what_was_done_meanwhile(store: Store) -> None:
    from app.core.actions import RecordEscalation

    executor = Executor(store, None, dry_run=False)
    deferred = RecordEscalation(
        repo="octo/repo",
        number=1,
        level="deferred",
        category="architecture",
        summary="#1: which queue?",
        key="architecture:octo/repo#1:d1",
        meanwhile="the agent keeps working with its own judgment",
        reversible=True,
        reason="asked",
    )
    assert executor.execute(CTX, deferred) == "sent"
    [row] = store.escalations("octo/repo")
    assert (row["meanwhile"], row["reversible"]) == (
        "the agent keeps working with its own judgment",
        True,
    )


def test_dry_run_changes_no_state_of_its_own(store: Store) -> None:
    from app.core.actions import RememberConfigError

    executor = Executor(store, None, dry_run=True)
    told = RememberConfigError(repo="octo/repo", problem="bad", reason="told")
    assert executor.execute(CTX, ACCEPT) == "recorded"
    assert executor.execute(CTX, told) == "recorded"
    assert store.task("octo/repo", 1) is None
    assert store.reported_config_error("octo/repo") is None
    assert [e.kind for e in store.audit_log()] == ["dry-run", "dry-run"]


# -- reverting a red merge ----------------------------------------------------------------------

MERGE_SHA = "5e1ec7ed" * 5
URGENT = OpenIssue(
    repo="octo/repo",
    title="main is red",
    body="Revert #7.",
    labels=("nightshift:urgent",),
    key=f"red-merge:octo/repo@{MERGE_SHA}",
    reason="red",
)
REVERT = RevertMerge(
    repo="octo/repo",
    number=7,
    task=5,
    merge_sha=MERGE_SHA,
    branch="main",
    checks=("ci/test",),
    key=f"revert:octo/repo@{MERGE_SHA}",
    issue_key=URGENT.key,
    mentions=("lead",),
    reason="red",
)


@dataclass
class StubReverts:
    """The revert port: answers `outcome` (or raises it) and remembers each call."""

    outcome: RevertOutcome | Exception
    calls: list[int | None] = field(default_factory=list)

    def revert(
        self, installation_id: int, action: RevertMerge, closes: int | None
    ) -> RevertOutcome:
        self.calls.append(closes)
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


def reverting(store: Store, fake: FakeGitHub, outcome: RevertOutcome | Exception) -> Executor:
    executor = Executor(store, github(fake), dry_run=False)
    executor.reverts = StubReverts(outcome)
    return executor


def calls(executor: Executor) -> list[int | None]:
    assert isinstance(executor.reverts, StubReverts)
    return executor.reverts.calls


def test_a_revert_is_made_once_per_merge_commit_and_closes_the_urgent_issue(
    store: Store, fake_github: FakeGitHub
) -> None:
    executor = reverting(store, fake_github, Reverted(9, created=True))
    assert executor.execute(CTX, URGENT) == "sent"
    assert store.effect_result(URGENT.key) == "1"  # the issue's number, for the revert
    assert executor.execute(CTX, REVERT) == "sent"
    assert executor.execute(CTX, REVERT) == "skipped"  # a redelivery, a step re-run
    assert calls(executor) == [1]
    assert store.effect_result(REVERT.key) == "9"
    entry = [e for e in store.audit_log() if e.detail and e.detail["action"] == "revert_merge"]
    assert [(e.kind, e.detail) for e in entry] == [
        ("action", {"action": "revert_merge", "pull": 9, "created": True}),
        ("skipped", {"action": "revert_merge"}),
    ]


def test_an_urgent_issue_found_by_its_marker_is_remembered_by_number(
    store: Store, fake_github: FakeGitHub
) -> None:
    assert store.begin_effect(URGENT.key)  # opened, then the process died
    fake_github.issues[("octo/repo", 4)] = FakeIssue(
        labels=["nightshift:urgent"], title="main is red", body=f"x\n\n{marker(URGENT.key)}"
    )
    executor = Executor(store, github(fake_github), dry_run=False)
    assert executor.execute(CTX, URGENT) == "skipped"
    assert store.effect_result(URGENT.key) == "4"


@pytest.mark.parametrize(
    ("opened", "told"), [(True, 1), (False, 7)], ids=["on-the-issue", "on-the-merged-pr"]
)
def test_a_revert_that_cannot_be_made_is_reported_once(
    store: Store, fake_github: FakeGitHub, opened: bool, told: int
) -> None:
    executor = reverting(store, fake_github, NotReverted("it conflicts in `a.py`"))
    if opened:
        executor.execute(CTX, URGENT)
    assert executor.execute(CTX, REVERT) == "refused"
    assert executor.execute(CTX, REVERT) == "skipped"
    text = revert_texts.not_reverted(REVERT, "it conflicts in `a.py`")
    assert fake_github.effects[-1] == f"octo/repo#{told}:comment:{text}"
    assert len([e for e in fake_github.effects if ":comment:" in e]) == 1
    assert store.effect_result(REVERT.key) == "not-reverted"


def test_a_failed_revert_is_tried_again_by_the_next_delivery(
    store: Store, fake_github: FakeGitHub
) -> None:
    executor = reverting(store, fake_github, GitHubError(403, "Resource not accessible"))
    assert executor.execute(CTX, REVERT) == "failed"
    assert store.audit_log()[-1].kind == "error"
    executor.reverts = StubReverts(Reverted(9, created=True))
    assert executor.execute(CTX, REVERT) == "sent"


def test_a_revert_that_meets_a_server_error_is_raised_for_the_step_to_retry(
    store: Store, fake_github: FakeGitHub
) -> None:
    executor = reverting(store, fake_github, GitHubError(502, "Bad Gateway"))
    with pytest.raises(GitHubError):
        executor.execute(CTX, REVERT)
    assert not store.effect_finished(REVERT.key)


def test_a_revert_in_dry_run_is_recorded_not_made(store: Store, fake_github: FakeGitHub) -> None:
    executor = Executor(store, github(fake_github), dry_run=True)
    executor.reverts = StubReverts(Reverted(9, created=True))
    assert executor.execute(CTX, REVERT) == "recorded"
    assert calls(executor) == []
    assert store.audit_log()[-1].kind == "dry-run"


def test_timers_are_set_once_per_cause_and_fired_once(store: Store) -> None:
    assert store.add_timer("octo/repo", "ack:7:1", 77, 1000.0)
    assert not store.add_timer("octo/repo", "ack:7:1", 77, 5000.0)  # a later pass asks again
    assert store.add_timer("octo/repo", "level:7:900:2", 77, 2000.0)
    assert store.due_timers(999.0) == []
    assert store.due_timers(1500.0) == [("octo/repo", "ack:7:1", 77)]
    store.fired_timer("octo/repo", "ack:7:1", 1500.0)
    assert store.due_timers(3000.0) == [("octo/repo", "level:7:900:2", 77)]
    # fired: asking for it again sets nothing (its cause names a deadline that passed)
    assert not store.add_timer("octo/repo", "ack:7:1", 77, 1600.0)
    assert store.pending_timers("octo/repo") == [("level:7:900:2", 2000.0)]
