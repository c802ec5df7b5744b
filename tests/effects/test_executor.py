"""The executor: what reaches GitHub, what is recorded, and what is never done twice."""

from __future__ import annotations

from app.core.actions import AddLabels, Comment, Transition
from app.effects.executor import DRY_RUN, NO_CREDENTIALS, Context, Executor
from app.effects.github import GitHubApp, marker
from app.effects.store import Store
from tests.fakes.github import FakeGitHub
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


def test_dry_run_changes_no_state_of_its_own(store: Store) -> None:
    from app.core.actions import RememberConfigError

    executor = Executor(store, None, dry_run=True)
    told = RememberConfigError(repo="octo/repo", problem="bad", reason="told")
    assert executor.execute(CTX, ACCEPT) == "recorded"
    assert executor.execute(CTX, told) == "recorded"
    assert store.task("octo/repo", 1) is None
    assert store.reported_config_error("octo/repo") is None
    assert [e.kind for e in store.audit_log()] == ["dry-run", "dry-run"]
