"""The review rules, table-driven: pull requests of tasks, CI re-runs, ok-to-test, and the
review workflow's decisions (checks, escalations, verdicts, merging)."""

from __future__ import annotations

import re
from typing import Any, Literal

import pytest

from app.core import assignment as messages
from app.core import ci_log, gates, labels
from app.core.actions import (
    Action,
    AddLabels,
    AllowTests,
    Comment,
    CountCiRetry,
    CountFixRound,
    Dispatch,
    Merge,
    OpenIssue,
    PublishCheck,
    RecordEscalation,
    RecordPull,
    RecordTests,
    RemoveLabel,
    RerequestCheckSuite,
    RerunFailedJobs,
    RevertMerge,
    SendToAgent,
    StartReview,
    SubmitReview,
    Transition,
)
from app.core.config import DEFAULT_CONFIG, Config, Limits, Review
from app.core.envelope import Envelope
from app.core.gates import Escalation, Finding, GateResult, MergeDecision, Verdict
from app.core.review_facts import CheckResult, LogExcerpt
from app.core.rules import commands, decide, review
from app.core.rules.review import PullFacts
from app.core.state import Pull, RepoState
from app.core.tasks import State as TaskState
from app.core.tasks import Task
from tests.helpers import command_comment, payload

REPO = "octo/repo"
TASK = 1
PR = 7
HEAD = "0123456789abcdef0123456789abcdef01234567"
OLD = "fedcba9876543210fedcba9876543210fedcba98"
AGENT = "agent-alice"
BRANCH = "nightshift/issue-1-add-login"
RUN_ID = 30433642
SUITE_ID = 5604373
UPDATED = "2024-05-01T02:03:04Z"
EVIL_RUN = "x` @acme/security **pwned** `y"


# -- payloads and state ---------------------------------------------------------------------


def pull_request(
    action: str = "opened",
    *,
    body: str | None = "Adds the login page.\n\nCloses #1",
    ref: str = BRANCH,
    head_repo: str | None = REPO,
    draft: bool = False,
    state: str = "open",
    author: str = AGENT,
) -> dict[str, Any]:
    """A real `pull_request` payload with the fields a scenario needs changed."""
    data = payload("pull_request.opened")
    pr = data["pull_request"]
    head_repository = {**pr["head"]["repo"], "full_name": head_repo} if head_repo else None
    data["action"] = action
    data["number"] = PR
    data["pull_request"] = {
        **pr,
        "number": PR,
        "body": body,
        "draft": draft,
        "state": state,
        "user": {**pr["user"], "login": author},
        "head": {**pr["head"], "ref": ref, "sha": HEAD, "repo": head_repository},
        "base": {**pr["base"], "repo": {**pr["base"]["repo"], "full_name": REPO}},
    }
    data["repository"] = {**data["repository"], "full_name": REPO}
    return data


def workflow_run(
    conclusion: str | None = "failure",
    *,
    sha: str = HEAD,
    attempt: int = 1,
    html_url: str = f"https://github.com/{REPO}/actions/runs/{RUN_ID}",
    name: str = "CI",
) -> dict[str, Any]:
    """A `workflow_run.completed` delivery with the fields GitHub always sends that rules read."""
    return {
        "action": "completed",
        "workflow_run": {
            "id": RUN_ID,
            "name": name,
            "head_sha": sha,
            "head_branch": BRANCH,
            "status": "completed",
            "conclusion": conclusion,
            "run_attempt": attempt,
            "html_url": html_url,
        },
        "repository": {"full_name": REPO},
        "installation": {"id": 77},
        "sender": {"login": AGENT, "type": "User"},
    }


def check_suite(
    conclusion: str | None = "failure",
    *,
    sha: str = HEAD,
    slug: str = "circleci-checks",
    updated_at: str = UPDATED,
) -> dict[str, Any]:
    """A `check_suite.completed` delivery: a suite has no name and no html_url, its app does."""
    return {
        "action": "completed",
        "check_suite": {
            "id": SUITE_ID,
            "head_sha": sha,
            "head_branch": BRANCH,
            "status": "completed",
            "conclusion": conclusion,
            "app": {"id": 18001, "slug": slug, "name": "CircleCI Checks"},
            "updated_at": updated_at,
        },
        "repository": {"full_name": REPO},
        "installation": {"id": 77},
        "sender": {"login": AGENT, "type": "User"},
    }


def task(state: TaskState, agent: str | None = AGENT) -> Task:
    return Task(REPO, TASK, state, agent=agent)


TRACKED = Pull(REPO, PR, TASK, HEAD, AGENT, fork=False)
REVIEWED = task(TaskState.IN_REVIEW)


def moved(
    from_state: str, to_state: str, event: str, reason: str, previous: str | None = None
) -> Transition:
    return Transition(
        repo=REPO,
        number=TASK,
        event=event,
        from_state=from_state,
        to_state=to_state,
        previous=previous,
        reason=reason,
    )


def decided(
    event: str, data: dict[str, Any], state: RepoState, config: Config = DEFAULT_CONFIG
) -> list[Action]:
    decision = decide(Envelope.parse("d1", event, data), state, config)
    assert decision.failures == ()
    return list(decision.actions)


# -- pull requests of tasks -----------------------------------------------------------------


def reviewed(action: str, *, fork: bool = False, author: str = AGENT) -> list[Action]:
    why = f"review: #{PR} ({action}) works on #{TASK}"
    return [
        RecordPull(
            repo=REPO, number=PR, task=TASK, head_sha=HEAD, author=author, fork=fork, reason=why
        ),
        StartReview(
            repo=REPO,
            number=PR,
            task=TASK,
            head_sha=HEAD,
            attempt="reopened" if action == "reopened" else "push",
            reason=why,
        ),
    ]


def opened_pr(from_state: str, action: str = "opened") -> list[Action]:
    why = f"review: #{PR} ({action}) works on #{TASK}"
    return [moved(from_state, "in_review", "open_pr", why), *reviewed(action)]


def pushed_fix(action: str) -> list[Action]:
    why = f"review: #{PR} ({action}) works on #{TASK}"
    return [moved("changes_requested", "in_review", "push_fix", why), *reviewed(action)]


@pytest.mark.parametrize(
    ("data", "state", "expected"),
    [
        pytest.param(
            pull_request("opened"),
            TaskState.ASSIGNED,
            opened_pr("assigned"),
            id="opened-closes-assigned-task",
        ),
        pytest.param(
            pull_request("opened", body=None),
            TaskState.IN_PROGRESS,
            opened_pr("in_progress"),
            id="opened-linked-by-branch",
        ),
        pytest.param(
            pull_request("reopened", body="fixes: #1"),
            TaskState.IN_PROGRESS,
            opened_pr("in_progress", "reopened"),
            id="reopened-in-progress",
        ),
        pytest.param(
            pull_request("ready_for_review", ref="feature/login"),
            TaskState.ASSIGNED,
            opened_pr("assigned", "ready_for_review"),
            id="ready-for-review-closes-the-task",
        ),
        pytest.param(
            pull_request("synchronize"),
            TaskState.CHANGES_REQUESTED,
            pushed_fix("synchronize"),
            id="push-after-changes-requested",
        ),
        pytest.param(
            pull_request("synchronize"),
            TaskState.IN_REVIEW,
            reviewed("synchronize"),
            id="push-in-review-reviews-without-transition",
        ),
        pytest.param(
            pull_request("opened", body="Closes #1", ref="nightshift/issue-2-other"),
            TaskState.IN_REVIEW,
            reviewed("opened"),
            id="closing-keyword-wins-over-branch",
        ),
        pytest.param(
            pull_request("opened", head_repo="stranger/repo", author="stranger"),
            TaskState.IN_REVIEW,
            reviewed("opened", fork=True, author="stranger"),
            id="fork",
        ),
        pytest.param(
            pull_request("opened", head_repo=None),
            TaskState.IN_REVIEW,
            reviewed("opened", fork=True),
            id="deleted-fork-is-a-fork",
        ),
        pytest.param(
            pull_request("opened", draft=True), TaskState.ASSIGNED, [], id="draft-waits-for-ready"
        ),
        pytest.param(
            pull_request("synchronize", state="closed"), TaskState.IN_REVIEW, [], id="closed-pr"
        ),
        pytest.param(
            pull_request("opened", body="Adds the login page.", ref="feature/login"),
            TaskState.ASSIGNED,
            [],
            id="not-linked",
        ),
        pytest.param(
            pull_request("opened", body="Closes #2", ref="feature/login"),
            TaskState.ASSIGNED,
            [],
            id="linked-to-another-issue",
        ),
        pytest.param(
            pull_request("opened", body="Closes other/repo#1", ref="feature/login"),
            TaskState.ASSIGNED,
            [],
            id="closes-an-issue-of-another-repository",
        ),
        pytest.param(
            pull_request("opened", body="`Closes #1`", ref="feature/login"),
            TaskState.ASSIGNED,
            [],
            id="keyword-in-code-does-not-link",
        ),
        pytest.param(pull_request("opened"), None, [], id="task-unknown"),
        pytest.param(pull_request("opened"), TaskState.QUEUED, [], id="task-queued"),
        pytest.param(pull_request("synchronize"), TaskState.MERGED, [], id="task-merged"),
        pytest.param(pull_request("synchronize"), TaskState.DONE, [], id="task-done"),
        pytest.param(pull_request("synchronize"), TaskState.CANCELLED, [], id="task-cancelled"),
        pytest.param(pull_request("synchronize"), TaskState.PAUSED, [], id="task-paused"),
        pytest.param(pull_request("synchronize"), TaskState.BLOCKED, [], id="task-blocked"),
        pytest.param(pull_request("synchronize"), TaskState.ESCALATED, [], id="task-escalated"),
    ],
)
def test_pull_request(
    data: dict[str, Any], state: TaskState | None, expected: list[Action]
) -> None:
    found = task(state) if state is not None else None
    assert decided("pull_request", data, RepoState(task=found)) == expected


@pytest.mark.parametrize(
    ("action", "attempt"),
    [
        pytest.param("opened", "push", id="opened"),
        pytest.param("synchronize", "push", id="synchronize"),
        pytest.param("ready_for_review", "push", id="ready-for-review"),
        pytest.param("reopened", "reopened", id="reopened-reviews-the-same-head-again"),
    ],
)
def test_the_review_attempt_of_a_pull_request_event(action: str, attempt: str) -> None:
    state = RepoState(task=REVIEWED, pull=TRACKED)  # this head was reviewed before
    starts = [
        a
        for a in decided("pull_request", pull_request(action), state)
        if isinstance(a, StartReview)
    ]
    assert starts == [
        StartReview(
            repo=REPO,
            number=PR,
            task=TASK,
            head_sha=HEAD,
            attempt=attempt,
            reason=f"review: #{PR} ({action}) works on #{TASK}",
        )
    ]


def test_a_closed_pull_request_is_no_rules_business() -> None:
    data = pull_request("closed", state="closed")
    decision = decide(
        Envelope.parse("d1", "pull_request", data), RepoState(task=REVIEWED), DEFAULT_CONFIG
    )
    assert decision.actions == ()
    assert not decision.handled


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(pull_request(body="Closes #1"), 1, id="closing-keyword"),
        pytest.param(pull_request(body=None, ref="nightshift/issue-12"), 12, id="branch"),
        pytest.param(pull_request(body="thanks", ref="feature/x"), None, id="neither"),
    ],
)
def test_task_number(data: dict[str, Any], expected: int | None) -> None:
    assert review.task_number(Envelope.parse("d1", "pull_request", data)) == expected


@pytest.mark.parametrize(
    ("event", "data", "expected"),
    [
        pytest.param("workflow_run", workflow_run(sha=OLD), OLD, id="workflow-run"),
        pytest.param("check_suite", check_suite(sha=OLD), OLD, id="check-suite"),
        pytest.param("pull_request", pull_request(), None, id="not-a-ci-event"),
        pytest.param("check_suite", workflow_run(), None, id="payload-of-another-event"),
    ],
)
def test_head_sha_of(event: str, data: dict[str, Any], expected: str | None) -> None:
    assert review.head_sha_of(Envelope.parse("d1", event, data)) == expected


# -- CI re-runs -----------------------------------------------------------------------------


def rerun(retries: int, attempt: int = 1, limit: int = 3) -> list[Action]:
    why = f"ci: CI failed on {HEAD[:7]}: re-run {retries + 1} of {limit}"
    return [
        CountCiRetry(repo=REPO, head_sha=HEAD, run=f"{RUN_ID}/{attempt}", reason=why),
        RerunFailedJobs(
            repo=REPO,
            run_id=RUN_ID,
            head_sha=HEAD,
            key=f"ci-rerun:{REPO}@{HEAD}:{RUN_ID}/{attempt}",
            reason=why,
        ),
    ]


def rerequest(retries: int, updated_at: str = UPDATED) -> list[Action]:
    why = f"ci: CircleCI Checks failed on {HEAD[:7]}: re-run {retries + 1} of 3"
    return [
        CountCiRetry(repo=REPO, head_sha=HEAD, run=f"{SUITE_ID}/{updated_at}", reason=why),
        RerequestCheckSuite(
            repo=REPO,
            suite_id=SUITE_ID,
            head_sha=HEAD,
            key=f"ci-rerun:{REPO}@{HEAD}:{SUITE_ID}/{updated_at}",
            reason=why,
        ),
    ]


def ci_blocked(
    retries: int,
    *,
    quoted: str = "`CI`",
    conclusion: str = "failure",
    link: str = f" (https://github.com/{REPO}/actions/runs/{RUN_ID})",
    mention: str = f"@{AGENT} ",
    transition: bool = True,
    log: str = "",
) -> list[Action]:
    """`quoted` is the run's name exactly as the markdown must show it: one code span;
    `log` the failing log's section (ci_log.section), after its blank line."""
    why = f"ci: re-runs exhausted for {HEAD[:7]}"
    body = review.CI_BLOCKED.format(
        sha=HEAD[:7],
        retries=retries,
        name=quoted,
        conclusion=conclusion,
        link=link,
        mention=mention,
        log=log,
    )
    block = [moved("in_review", "blocked", "block", why, previous="in_review")]
    return [
        *(block if transition else []),
        AddLabels(repo=REPO, number=PR, labels=(review.BLOCKED_LABEL,), reason=why),
        Comment(repo=REPO, number=PR, body=body, key=f"ci-blocked:{REPO}#{PR}@{HEAD}", reason=why),
        RecordEscalation(
            repo=REPO,
            number=TASK,
            level="deferred",
            category="ci",
            summary=f"#{PR}: CI {quoted} still fails after {retries} re-run(s)",
            key=f"ci:{REPO}#{PR}@{HEAD}",
            meanwhile=review.BLOCKED_MEANWHILE["ci"].format(pull=PR),
            reversible=True,
            reason=why,
        ),
        Dispatch(repo=REPO, cause=f"blocked:ci:{REPO}#{PR}@{HEAD}", reason=why),
    ]


NO_RETRIES = Config(limits=Limits(max_retry_attempts=0))
JOB_URL = f"https://github.com/{REPO}/actions/runs/{RUN_ID}/job/77"
FAILED_JOB = LogExcerpt(
    name="test",
    url=JOB_URL,
    step="Run tests",
    text="E   assert 1 == 2\n##[error]Process completed with exit code 1.",
)
FAILED_JOB_SECTION = "\n\n" + "\n\n".join(
    [
        ci_log.LOG_INTRO,
        f"#### `test`, step `Run tests` ({JOB_URL})",
        "```text\nE   assert 1 == 2\n##[error]Process completed with exit code 1.\n```",
    ]
)
GONE_JOB = LogExcerpt(name="test", url=JOB_URL, error="GitHub answered 410 (Gone)")
GONE_JOB_SECTION = "\n\n" + "\n\n".join(
    [
        ci_log.LOG_INTRO,
        f"#### `test` ({JOB_URL})",
        "Its log could not be read: GitHub answered 410 (Gone).",
    ]
)
ROSTERED = Task(REPO, TASK, TaskState.IN_REVIEW, agent=AGENT, agent_name="alice")


@pytest.mark.parametrize(
    ("event", "data", "state", "config", "expected"),
    [
        pytest.param(
            "workflow_run",
            workflow_run(),
            RepoState(task=REVIEWED, pull=TRACKED),
            DEFAULT_CONFIG,
            rerun(0),
            id="workflow-run-failed-first-rerun",
        ),
        pytest.param(
            "workflow_run",
            workflow_run("timed_out", attempt=3),
            RepoState(task=REVIEWED, pull=TRACKED, ci_retries=2),
            DEFAULT_CONFIG,
            rerun(2, attempt=3),
            id="workflow-run-timed-out-last-rerun",
        ),
        pytest.param(
            "workflow_run",
            workflow_run(),
            RepoState(task=task(TaskState.CHANGES_REQUESTED), pull=TRACKED),
            DEFAULT_CONFIG,
            rerun(0),
            id="rerun-while-changes-requested",
        ),
        pytest.param(
            "workflow_run",
            workflow_run(),
            RepoState(pull=TRACKED),
            DEFAULT_CONFIG,
            rerun(0),
            id="rerun-with-no-task-loaded",
        ),
        pytest.param(
            "check_suite",
            check_suite(),
            RepoState(task=REVIEWED, pull=TRACKED, ci_retries=1),
            DEFAULT_CONFIG,
            rerequest(1),
            id="check-suite-of-another-ci-rerequested",
        ),
        pytest.param(
            "check_suite",
            check_suite(slug="github-actions"),
            RepoState(task=REVIEWED, pull=TRACKED),
            DEFAULT_CONFIG,
            [],
            id="actions-check-suite-left-to-workflow-run",
        ),
        pytest.param(
            "workflow_run",
            workflow_run("success"),
            RepoState(task=REVIEWED, pull=TRACKED),
            DEFAULT_CONFIG,
            [],
            id="success",
        ),
        pytest.param(
            "workflow_run",
            workflow_run("cancelled"),
            RepoState(task=REVIEWED, pull=TRACKED),
            DEFAULT_CONFIG,
            [],
            id="cancelled-is-not-a-failure",
        ),
        pytest.param(
            "check_suite",
            check_suite("success"),
            RepoState(task=REVIEWED, pull=TRACKED),
            DEFAULT_CONFIG,
            [],
            id="check-suite-success",
        ),
        pytest.param(
            "workflow_run",
            workflow_run(sha=OLD),
            RepoState(task=REVIEWED, pull=TRACKED),
            DEFAULT_CONFIG,
            [],
            id="another-head",
        ),
        pytest.param(
            "workflow_run",
            workflow_run(),
            RepoState(),
            DEFAULT_CONFIG,
            [],
            id="untracked-head",
        ),
        pytest.param(
            "workflow_run",
            workflow_run(),
            RepoState(task=task(TaskState.BLOCKED), pull=TRACKED, ci_retries=3),
            DEFAULT_CONFIG,
            [],
            id="already-blocked",
        ),
        pytest.param(
            "workflow_run",
            workflow_run(),
            RepoState(task=task(TaskState.DONE), pull=TRACKED),
            DEFAULT_CONFIG,
            [],
            id="task-done",
        ),
        pytest.param(
            "workflow_run",
            workflow_run(attempt=4),
            RepoState(task=REVIEWED, pull=TRACKED, ci_retries=3),
            DEFAULT_CONFIG,
            ci_blocked(3),
            id="retries-exhausted",
        ),
        pytest.param(
            "workflow_run",
            workflow_run("timed_out"),
            RepoState(task=REVIEWED, pull=TRACKED),
            NO_RETRIES,
            ci_blocked(0, conclusion="timed_out"),
            id="no-retries-configured",
        ),
        pytest.param(
            "workflow_run",
            workflow_run(html_url="javascript:alert(1)"),
            RepoState(task=task(TaskState.IN_REVIEW, agent=None), pull=TRACKED, ci_retries=3),
            DEFAULT_CONFIG,
            ci_blocked(3, link="", mention=""),
            id="exhausted-no-agent-and-no-https-link",
        ),
        pytest.param(
            "check_suite",
            check_suite(),
            RepoState(pull=TRACKED, ci_retries=3),
            DEFAULT_CONFIG,
            ci_blocked(3, quoted="`CircleCI Checks`", link="", mention="", transition=False),
            id="check-suite-exhausted-with-no-task-loaded",
        ),
        pytest.param(
            "workflow_run",
            workflow_run(name=EVIL_RUN),
            RepoState(task=REVIEWED, pull=TRACKED, ci_retries=3),
            DEFAULT_CONFIG,
            ci_blocked(3, quoted="``x` @acme/security **pwned** `y``"),
            id="run-name-with-backticks-stays-one-code-span",
        ),
        pytest.param(
            "workflow_run",
            workflow_run(name="CI\n\n# @acme/security"),
            RepoState(task=REVIEWED, pull=TRACKED, ci_retries=3),
            DEFAULT_CONFIG,
            ci_blocked(3, quoted="`CI # @acme/security`"),
            id="run-name-with-newlines-is-one-line",
        ),
        pytest.param(
            "workflow_run",
            workflow_run(name="n" * 150),
            RepoState(task=REVIEWED, pull=TRACKED, ci_retries=3),
            DEFAULT_CONFIG,
            ci_blocked(3, quoted="`" + "n" * 99 + "…`"),
            id="run-name-capped-at-100",
        ),
        pytest.param(
            "workflow_run",
            workflow_run(attempt=4),
            RepoState(task=REVIEWED, pull=TRACKED, ci_retries=3, ci_log=(FAILED_JOB,)),
            DEFAULT_CONFIG,
            ci_blocked(3, log=FAILED_JOB_SECTION),
            id="exhausted-quotes-the-failing-log",
        ),
        pytest.param(
            "workflow_run",
            workflow_run(attempt=4),
            RepoState(task=REVIEWED, pull=TRACKED, ci_retries=3, ci_log=(GONE_JOB,)),
            DEFAULT_CONFIG,
            ci_blocked(3, log=GONE_JOB_SECTION),
            id="exhausted-says-the-log-could-not-be-read",
        ),
        pytest.param(
            "workflow_run",
            workflow_run(),
            RepoState(task=REVIEWED, pull=TRACKED, ci_retries=1, ci_log=(FAILED_JOB,)),
            DEFAULT_CONFIG,
            rerun(1),
            id="a-rerun-quotes-nothing",
        ),
    ],
)
def test_ci_completed(
    event: str, data: dict[str, Any], state: RepoState, config: Config, expected: list[Action]
) -> None:
    assert decided(event, data, state, config) == expected


def test_a_blocking_ci_failure_goes_to_the_agent_with_the_log_once_per_head() -> None:
    state = RepoState(task=ROSTERED, pull=TRACKED, ci_retries=3, ci_log=(FAILED_JOB,))
    actions = decided("workflow_run", workflow_run(attempt=4), state)
    assert actions[:-1] == ci_blocked(3, log=FAILED_JOB_SECTION)
    sent = actions[-1]
    assert isinstance(sent, SendToAgent)
    instructions = review.CI_FIX.format(
        sha=HEAD[:7],
        retries=3,
        name="`CI`",
        conclusion="failure",
        link=f" (https://github.com/{REPO}/actions/runs/{RUN_ID})",
        log=FAILED_JOB_SECTION,
    )
    message = messages.fix_request(
        repo=REPO, number=TASK, pr=PR, agent="alice", instructions=instructions
    )
    assert sent == SendToAgent(
        repo=REPO,
        number=TASK,
        agent="alice",
        message=message.model_dump(mode="json"),
        key=f"ci-fix:{REPO}#{PR}@{HEAD}",
        reason=f"ci: re-runs exhausted for {HEAD[:7]}",
    )
    assert "E   assert 1 == 2" in messages.as_markdown(message)


@pytest.mark.parametrize(
    "state",
    [
        pytest.param(
            RepoState(task=task(TaskState.IN_REVIEW), pull=TRACKED, ci_retries=3),
            id="agent-not-in-the-roster",
        ),
        pytest.param(
            RepoState(
                task=ROSTERED, pull=Pull(REPO, PR, TASK, HEAD, "mallory", False), ci_retries=3
            ),
            id="someone-elses-pull-request",
        ),
        pytest.param(
            RepoState(task=ROSTERED, pull=Pull(REPO, PR, TASK, HEAD, AGENT, True), ci_retries=3),
            id="the-agents-fork",
        ),
    ],
)
def test_only_the_tasks_agent_hears_of_its_own_blocked_pull_request(state: RepoState) -> None:
    actions = decided("workflow_run", workflow_run(attempt=4), state)
    assert any(isinstance(a, Comment) for a in actions)
    assert not any(isinstance(a, SendToAgent) for a in actions)


@pytest.mark.parametrize(
    ("event", "data", "state", "config", "expected"),
    [
        pytest.param(
            "workflow_run",
            workflow_run(attempt=4),
            RepoState(task=REVIEWED, pull=TRACKED, ci_retries=3),
            DEFAULT_CONFIG,
            review.RedRun(kind="workflow_run", id=RUN_ID, attempt=4, name="CI"),
            id="workflow-run-exhausted",
        ),
        pytest.param(
            "check_suite",
            check_suite(),
            RepoState(pull=TRACKED, ci_retries=3),
            DEFAULT_CONFIG,
            review.RedRun(kind="check_suite", id=SUITE_ID, attempt=1, name="CircleCI Checks"),
            id="check-suite-exhausted",
        ),
        pytest.param(
            "workflow_run",
            workflow_run("timed_out"),
            RepoState(task=REVIEWED, pull=TRACKED),
            NO_RETRIES,
            review.RedRun(kind="workflow_run", id=RUN_ID, attempt=1, name="CI"),
            id="no-retries-configured",
        ),
        pytest.param(
            "workflow_run",
            workflow_run(),
            RepoState(task=REVIEWED, pull=TRACKED, ci_retries=2),
            DEFAULT_CONFIG,
            None,
            id="re-run-instead",
        ),
        pytest.param(
            "workflow_run",
            workflow_run(),
            RepoState(task=task(TaskState.BLOCKED), pull=TRACKED, ci_retries=3),
            DEFAULT_CONFIG,
            None,
            id="already-blocked",
        ),
        pytest.param(
            "workflow_run",
            workflow_run("success"),
            RepoState(task=REVIEWED, pull=TRACKED, ci_retries=3),
            DEFAULT_CONFIG,
            None,
            id="green",
        ),
        pytest.param(
            "workflow_run",
            workflow_run(sha=OLD),
            RepoState(task=REVIEWED, pull=TRACKED, ci_retries=3),
            DEFAULT_CONFIG,
            None,
            id="another-head",
        ),
        pytest.param(
            "check_suite",
            check_suite(slug="github-actions"),
            RepoState(task=REVIEWED, pull=TRACKED, ci_retries=3),
            DEFAULT_CONFIG,
            None,
            id="actions-suite-read-through-its-workflow-run",
        ),
        pytest.param(
            "pull_request",
            pull_request(),
            RepoState(task=REVIEWED, pull=TRACKED, ci_retries=3),
            DEFAULT_CONFIG,
            None,
            id="not-ci",
        ),
    ],
)
def test_the_failing_log_is_read_only_when_ci_blocks(
    event: str,
    data: dict[str, Any],
    state: RepoState,
    config: Config,
    expected: review.RedRun | None,
) -> None:
    assert review.ci_log_wanted(Envelope.parse("d1", event, data), state, config) == expected


def outside_code(markdown: str) -> str:
    """The markdown with its inline code spans removed, as CommonMark pairs them: a run of
    N backticks opens a span only if a later run of exactly N backticks closes it."""
    runs = list(re.finditer(r"`+", markdown))
    kept: list[str] = []
    at = 0
    index = 0
    while index < len(runs):
        opener = runs[index]
        closer = next(
            (j for j in range(index + 1, len(runs)) if len(runs[j].group()) == len(opener.group())),
            None,
        )
        if closer is None:
            index += 1  # an unmatched run is literal text
            continue
        kept.append(markdown[at : opener.start()])
        at = runs[closer].end()
        index = closer + 1
    kept.append(markdown[at:])
    return "".join(kept)


def test_outside_code_pairs_backtick_runs_like_commonmark() -> None:
    assert outside_code("a `b` c") == "a  c"
    assert outside_code("a ``b ` c`` d") == "a  d"
    assert outside_code("a `b c") == "a `b c"  # never closed: literal, and `b c` is live
    assert outside_code("`x` @acme/security **pwned** `y`") == " @acme/security **pwned** "


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(EVIL_RUN, id="backticks"),
        pytest.param("``` @acme/security ```", id="a-longer-run-of-backticks"),
        pytest.param("`@acme/security`", id="starts-and-ends-with-a-backtick"),
        pytest.param("CI\n\n@acme/security <b>x</b>", id="newlines-and-html"),
    ],
)
def test_a_run_name_cannot_mention_anyone(name: str) -> None:
    """The run's name is the PR's to choose: in the comment and the escalation it is one
    code span, so nothing in it notifies a team or formats the text around it."""
    state = RepoState(task=REVIEWED, pull=TRACKED, ci_retries=3)
    actions = decided("workflow_run", workflow_run(name=name), state)
    (comment,) = [a for a in actions if isinstance(a, Comment)]
    (escalation,) = [a for a in actions if isinstance(a, RecordEscalation)]
    for text in (comment.body, escalation.summary):
        assert gates.code(name, 100) in text
        prose = outside_code(text)
        assert "@acme" not in prose
        assert "**" not in prose
        assert "<b>" not in prose


def test_ci_retry_keys_count_reruns_not_redeliveries() -> None:
    """A re-run's result is a new run key; a redelivered result is the same key."""

    def key(event: str, data: dict[str, Any]) -> str:
        actions = decided(event, data, RepoState(task=REVIEWED, pull=TRACKED))
        counted = [a for a in actions if isinstance(a, CountCiRetry)]
        assert len(counted) == 1
        return counted[0].run

    assert key("workflow_run", workflow_run()) == key("workflow_run", workflow_run())
    assert key("workflow_run", workflow_run()) != key("workflow_run", workflow_run(attempt=2))
    # a re-requested suite keeps its id and has no run_attempt: only updated_at moves
    again = check_suite(updated_at="2024-05-01T02:13:04Z")
    assert key("check_suite", check_suite()) == key("check_suite", check_suite())
    assert key("check_suite", check_suite()) != key("check_suite", again)


# -- /nightshift ok-to-test -----------------------------------------------------------------


def ok_to_test_comment(login: str = "maintainer") -> dict[str, Any]:
    data = command_comment("/nightshift ok-to-test", login=login, number=PR)
    data["issue"]["pull_request"] = {"url": f"https://api.github.com/repos/{REPO}/pulls/{PR}"}
    return data


def reply(text: str, reason: str) -> Comment:
    return Comment(repo=REPO, number=PR, body=text, key="command:d1", reason=reason)


ALLOWED_WHY = f"commands: @maintainer allowed {HEAD[:7]} to run"
FORKED = Pull(REPO, PR, TASK, HEAD, "stranger", fork=True)


@pytest.mark.parametrize(
    ("permission", "pull", "expected"),
    [
        pytest.param(
            "write",
            FORKED,
            [
                AllowTests(
                    repo=REPO, number=PR, head_sha=HEAD, by="maintainer", reason=ALLOWED_WHY
                ),
                StartReview(
                    repo=REPO,
                    number=PR,
                    task=TASK,
                    head_sha=HEAD,
                    attempt=commands.ok_to_test_attempt("d1"),
                    reason=ALLOWED_WHY,
                ),
                reply(commands.OK_TO_TEST.format(login="maintainer", sha=HEAD[:7]), ALLOWED_WHY),
            ],
            id="writer-allows-the-head",
        ),
        pytest.param(
            "read",
            FORKED,
            [
                reply(
                    commands.REFUSED.format(login="maintainer"),
                    "commands: @maintainer has read permission",
                )
            ],
            id="reader-is-refused",
        ),
        pytest.param(
            "admin",
            None,
            [
                reply(
                    commands.NOTHING_TO_TEST.format(login="maintainer"),
                    "commands: no reviewed pull request",
                )
            ],
            id="untracked-pull-request",
        ),
        pytest.param(
            "maintain",
            Pull(REPO, PR + 1, TASK, HEAD, "stranger", fork=True),
            [
                reply(
                    commands.NOTHING_TO_TEST.format(login="maintainer"),
                    "commands: no reviewed pull request",
                )
            ],
            id="another-pull-request-is-tracked",
        ),
    ],
)
def test_ok_to_test(permission: str, pull: Pull | None, expected: list[Action]) -> None:
    state = RepoState(sender_permission=permission, pull=pull, task=REVIEWED)
    assert decided("issue_comment", ok_to_test_comment(), state) == expected


def test_each_ok_to_test_comment_is_an_attempt_of_its_own() -> None:
    """A second `/nightshift ok-to-test` reviews again; the same delivery twice is one."""
    assert commands.ok_to_test_attempt("d1") == "ok-to-test-8b53639f"
    assert commands.ok_to_test_attempt("d1") == commands.ok_to_test_attempt("d1")
    assert commands.ok_to_test_attempt("d2") == "ok-to-test-e788103e"
    assert commands.ok_to_test_attempt("d1") != commands.ok_to_test_attempt("d2")

    def attempt(delivery: str) -> str:
        state = RepoState(sender_permission="write", pull=FORKED, task=REVIEWED)
        env = Envelope.parse(delivery, "issue_comment", ok_to_test_comment())
        (start,) = [
            a for a in decide(env, state, DEFAULT_CONFIG).actions if isinstance(a, StartReview)
        ]
        return start.attempt

    assert attempt("d1") == attempt("d1") == "ok-to-test-8b53639f"
    assert attempt("d2") == "ok-to-test-e788103e"


# -- may PR code run ------------------------------------------------------------------------


def facts(
    *,
    author: str = AGENT,
    agent: str | None = AGENT,
    fork: bool = False,
    ok_to_test_sha: str | None = None,
    head: str = HEAD,
    attempt: str | None = None,
) -> PullFacts:
    """The workflow's facts about the PR; without `attempt`, PullFacts' own default."""
    pull = PullFacts(
        number=PR,
        task=TASK,
        head_sha=head,
        head_ref=BRANCH,
        base_ref="main",
        author=author,
        fork=fork,
        agent=agent,
        ok_to_test_sha=ok_to_test_sha,
    )
    return pull if attempt is None else pull.model_copy(update={"attempt": attempt})


def test_pull_facts_attempt_defaults_to_push() -> None:
    assert facts().attempt == "push"
    assert facts(attempt="reopened").attempt == "reopened"


TESTS_REPORTED = Config(review=Review(tests_report="junit.xml"))
TESTS_WHY = f"review: the test report of #{PR} at {HEAD[:7]}"


@pytest.mark.parametrize(
    ("quality", "config", "expected"),
    [
        pytest.param(
            GateResult("quality", "fail", "bad", tests=gates.JUnitResult(40, 2, ("t.a", "t.b"))),
            TESTS_REPORTED,
            [
                RecordTests(
                    repo=REPO, number=PR, head_sha=HEAD, passed=40, failed=2, reason=TESTS_WHY
                )
            ],
            id="counts-of-this-head",
        ),
        pytest.param(
            GateResult("quality", "pass", "ok"),
            TESTS_REPORTED,
            [
                RecordTests(
                    repo=REPO, number=PR, head_sha=HEAD, passed=None, failed=None, reason=TESTS_WHY
                )
            ],
            id="no-report-read-clears-an-older-heads",
        ),
        pytest.param(
            GateResult("quality", "waiting", gates.WAITING), TESTS_REPORTED, [], id="code-not-run"
        ),
        pytest.param(
            GateResult("quality", "pass", "ok", tests=gates.JUnitResult(1, 0)),
            DEFAULT_CONFIG,
            [],
            id="not-configured",
        ),
    ],
)
def test_record_tests(quality: GateResult, config: Config, expected: list[Action]) -> None:
    assert review.record_tests(REPO, facts(), quality, config) == expected


@pytest.mark.parametrize(
    ("pull", "expected"),
    [
        pytest.param(facts(), True, id="own-agent-same-repository"),
        pytest.param(facts(author=AGENT.upper()), True, id="login-compared-without-case"),
        pytest.param(facts(author="someone-else"), False, id="other-author"),
        pytest.param(facts(agent=None), False, id="task-has-no-agent"),
        pytest.param(facts(fork=True), False, id="fork-by-the-agent"),
        pytest.param(
            facts(author="stranger", fork=True, ok_to_test_sha=HEAD),
            True,
            id="ok-to-test-for-this-head",
        ),
        pytest.param(
            facts(author="stranger", fork=True, ok_to_test_sha=OLD),
            False,
            id="ok-to-test-for-an-older-head",
        ),
    ],
)
def test_may_run_code(pull: PullFacts, expected: bool) -> None:
    assert review.may_run_code(pull) is expected


@pytest.mark.parametrize(
    ("pull", "expected"),
    [
        pytest.param(facts(), True, id="own-agent-same-repository"),
        pytest.param(facts(author=AGENT.upper()), True, id="login-compared-without-case"),
        pytest.param(facts(author="someone-else"), False, id="other-author"),
        pytest.param(facts(fork=True), False, id="fork-by-the-agent"),
        pytest.param(facts(agent=None), False, id="task-has-no-agent"),
        pytest.param(
            facts(author="stranger", fork=True, ok_to_test_sha=HEAD),
            False,
            id="ok-to-test-lets-code-run-but-never-merges",
        ),
        pytest.param(
            facts(author="drive-by", ok_to_test_sha=HEAD),
            False,
            id="ok-to-test-for-another-author-in-the-repository",
        ),
        pytest.param(facts(ok_to_test_sha=OLD), True, id="ok-to-test-irrelevant-for-the-agent"),
        pytest.param(
            facts(fork=True, ok_to_test_sha=HEAD), False, id="ok-to-test-for-the-agents-fork"
        ),
    ],
)
def test_may_merge(pull: PullFacts, expected: bool) -> None:
    assert review.may_merge(pull) is expected


# -- checks ---------------------------------------------------------------------------------


def started(attempt: str) -> list[Action]:
    return [
        PublishCheck(
            repo=REPO,
            head_sha=HEAD,
            name="Nightshift / spec",
            key=f"check:{REPO}@{HEAD}:spec:{attempt}",
            status="in_progress",
            output=review.IN_PROGRESS_OUTPUT["spec"],
            reason="review: spec gate started",
        ),
        PublishCheck(
            repo=REPO,
            head_sha=HEAD,
            name="Nightshift / quality",
            key=f"check:{REPO}@{HEAD}:quality:{attempt}",
            status="in_progress",
            output=review.IN_PROGRESS_OUTPUT["quality"],
            reason="review: quality gate started",
        ),
    ]


def test_review_started_marks_both_checks_in_progress() -> None:
    assert review.review_started(REPO, HEAD) == started("push")
    assert review.review_started(REPO, HEAD, "push") == started("push")
    assert review.review_started(REPO, HEAD, "reopened") == started("reopened")
    again = commands.ok_to_test_attempt("d1")
    assert review.review_started(REPO, HEAD, again) == started("ok-to-test-8b53639f")


SPEC_PASSED = GateResult("spec", "pass", "Gate 1 passed.")
SPEC_FAILED = GateResult(
    "spec",
    "fail",
    "1 problem: scope.",
    (Finding("scope", gates.OUT_OF_SCOPE.format(scope="`app/**`"), path="docs/x.md"),),
)
QUALITY_PASSED = GateResult("quality", "pass", "Gate 2 passed.")
QUALITY_FAILED = GateResult(
    "quality",
    "fail",
    "1 problem: command.",
    (Finding("command", gates.COMMAND_FAILED.format(name="`tests`", status="exit 1")),),
)
QUALITY_WAITING = GateResult("quality", "waiting", "Waiting for ok-to-test.")


@pytest.mark.parametrize(
    ("result", "name", "conclusion"),
    [
        pytest.param(SPEC_PASSED, review.SPEC_CHECK, "success", id="spec-passed"),
        pytest.param(SPEC_FAILED, review.SPEC_CHECK, "failure", id="spec-failed"),
        pytest.param(QUALITY_PASSED, review.QUALITY_CHECK, "success", id="quality-passed"),
        pytest.param(QUALITY_FAILED, review.QUALITY_CHECK, "failure", id="quality-failed"),
        pytest.param(
            QUALITY_WAITING, review.QUALITY_CHECK, "action_required", id="quality-waiting"
        ),
    ],
)
def test_publish(result: GateResult, name: str, conclusion: str) -> None:
    assert conclusion == gates.conclusion(result)

    def published(attempt: str) -> PublishCheck:
        return PublishCheck(
            repo=REPO,
            head_sha=HEAD,
            name=name,
            key=f"check:{REPO}@{HEAD}:{result.gate}:{attempt}",
            status="completed",
            conclusion=conclusion,
            output=gates.check_run_output(result),
            reason=f"review: {result.gate} gate: {result.outcome}",
        )

    assert review.publish(REPO, HEAD, result) == published("push")
    assert review.publish(REPO, HEAD, result, "reopened") == published("reopened")


@pytest.mark.parametrize("attempt", ["push", "reopened", "ok-to-test-8b53639f"])
def test_check_keys_are_stable_per_repository_head_gate_and_attempt(attempt: str) -> None:
    """An attempt's publish updates the runs it started; another attempt gets runs of its
    own (GitHub appends annotations on every update)."""
    keys = {
        check.name: check.key
        for check in review.review_started(REPO, HEAD, attempt)
        if isinstance(check, PublishCheck)
    }
    assert keys[review.SPEC_CHECK] == review.publish(REPO, HEAD, SPEC_FAILED, attempt).key
    assert keys[review.QUALITY_CHECK] == review.publish(REPO, HEAD, QUALITY_PASSED, attempt).key


def test_check_keys_differ_by_repository_head_gate_and_attempt() -> None:
    keys = {
        review.publish(repo, head, result, attempt).key
        for repo in (REPO, "octo/other")
        for head in (HEAD, OLD)
        for result in (SPEC_PASSED, QUALITY_PASSED)
        for attempt in ("push", "reopened")
    }
    assert len(keys) == 16


def test_check_keys_fit_the_store_with_the_longest_names() -> None:
    long_repo = f"{'o' * 39}/{'r' * 100}"
    attempt = commands.ok_to_test_attempt("d" * 100)
    started_keys = [
        a.key
        for a in review.review_started(long_repo, HEAD, attempt)
        if isinstance(a, PublishCheck)
    ]
    assert started_keys == [
        f"check:{long_repo}@{HEAD}:spec:{attempt}",
        f"check:{long_repo}@{HEAD}:quality:{attempt}",
    ]
    assert all(len(key) <= 256 for key in started_keys)


def check(name: str, status: str = "completed", head: str = HEAD) -> CheckResult:
    return CheckResult(name, head, status, "failure" if status == "completed" else None)


REQUIRED = Config(review=Review(required_checks=["ci/test", "lint"]))


@pytest.mark.parametrize(
    ("config", "checks", "expected"),
    [
        pytest.param(DEFAULT_CONFIG, [], False, id="nothing-required"),
        pytest.param(REQUIRED, [check("ci/test")], True, id="required-never-reported"),
        pytest.param(
            REQUIRED, [check("ci/test"), check("lint", "in_progress")], True, id="still-running"
        ),
        pytest.param(
            REQUIRED, [check("ci/test"), check("lint", head=OLD)], True, id="done-on-another-head"
        ),
        pytest.param(
            REQUIRED,
            [check("ci/test"), check("lint"), check("other", "queued")],
            False,
            id="all-required-completed-even-failed",
        ),
    ],
)
def test_checks_pending(config: Config, checks: list[CheckResult], expected: bool) -> None:
    assert review.checks_pending(config, HEAD, checks) is expected


# -- security escalations -------------------------------------------------------------------

SECRET = Escalation("secret", "AWS Access Key", "app/keys.py:4")
PROTECTED = Escalation("protected-path", gates.PROTECTED_WHAT, ".github/workflows/ci.yml")
MAINTAINERS = Config(maintainers=["alice", "bob"])


def urgent(kind: str, what: str, listed: str, mentions: str) -> list[Action]:
    """One record and one urgent issue for a kind of risk: `listed` is every place, as the
    issue shows them."""
    key = f"security:{REPO}#{PR}:{kind}"
    why = f"review: security escalation ({kind}) in #{PR}"
    return [
        RecordEscalation(
            repo=REPO,
            number=TASK,
            level="immediate",
            category="security",
            summary=f"{what} at {listed} in #{PR}",
            key=key,
            reason=why,
        ),
        OpenIssue(
            repo=REPO,
            title=review.SECURITY_TITLE.format(what=what, pull=PR),
            body=review.SECURITY_BODY.format(
                what=what, where=listed, pull=PR, task=TASK, mentions=mentions
            ).strip(),
            labels=(labels.URGENT_LABEL,),
            key=key,
            reason=why,
        ),
    ]


def secret_at(where: str, what: str = "AWS Access Key") -> Escalation:
    return Escalation("secret", what, where)


def with_escalations(*escalations: Escalation) -> Verdict:
    return Verdict("fix", "x", 1, escalations=escalations)


MANY = tuple(secret_at(f"app/k{i:02d}.py:1") for i in range(review.ESCALATION_PLACES + 5))
FIRST_TWENTY = ", ".join(f"`app/k{i:02d}.py:1`" for i in range(20))


@pytest.mark.parametrize(
    ("verdict", "config", "expected"),
    [
        pytest.param(with_escalations(), MAINTAINERS, [], id="none"),
        pytest.param(
            with_escalations(SECRET),
            MAINTAINERS,
            urgent("secret", "AWS Access Key", "`app/keys.py:4`", "@alice @bob"),
            id="secret-mentions-maintainers",
        ),
        pytest.param(
            with_escalations(SECRET, PROTECTED),
            MAINTAINERS,
            [
                *urgent("secret", "AWS Access Key", "`app/keys.py:4`", "@alice @bob"),
                *urgent(
                    "protected-path",
                    gates.PROTECTED_WHAT,
                    "`.github/workflows/ci.yml`",
                    "@alice @bob",
                ),
            ],
            id="one-issue-per-kind-of-risk",
        ),
        pytest.param(
            with_escalations(secret_at("b.py:9"), secret_at("a.py:3"), secret_at("b.py:9")),
            MAINTAINERS,
            urgent("secret", "AWS Access Key", "`a.py:3`, `b.py:9`", "@alice @bob"),
            id="places-of-one-kind-in-one-issue-sorted-once-each",
        ),
        pytest.param(
            with_escalations(
                PROTECTED,
                secret_at("app/keys.py:4"),
                Escalation("protected-path", gates.PROTECTED_WHAT, "Makefile"),
                secret_at("deploy/id_rsa:1", "Private Key"),
            ),
            DEFAULT_CONFIG,
            [
                *urgent(
                    "protected-path",
                    gates.PROTECTED_WHAT,
                    "`.github/workflows/ci.yml`, `Makefile`",
                    "",
                ),
                # the first finding of a kind names the issue, whatever the other places hold
                *urgent("secret", "AWS Access Key", "`app/keys.py:4`, `deploy/id_rsa:1`", ""),
            ],
            id="kinds-in-order-of-first-finding",
        ),
        pytest.param(
            with_escalations(*MANY),
            MAINTAINERS,
            urgent("secret", "AWS Access Key", f"{FIRST_TWENTY} and 5 more", "@alice @bob"),
            id="at-most-twenty-places-then-how-many-more",
        ),
        pytest.param(
            with_escalations(*MANY[: review.ESCALATION_PLACES]),
            MAINTAINERS,
            urgent("secret", "AWS Access Key", FIRST_TWENTY, "@alice @bob"),
            id="exactly-twenty-places-all-listed",
        ),
        pytest.param(
            with_escalations(
                secret_at("x` @acme/security `y.py:1", "Key @acme/security <img src=x>")
            ),
            DEFAULT_CONFIG,
            urgent(
                "secret",
                "Key @\u200bacme/security &lt;img src=x&gt;",
                "``x` @acme/security `y.py:1``",
                "",
            ),
            id="what-is-plain-where-is-code",
        ),
        pytest.param(
            with_escalations(PROTECTED),
            DEFAULT_CONFIG,
            urgent("protected-path", gates.PROTECTED_WHAT, "`.github/workflows/ci.yml`", ""),
            id="no-maintainers",
        ),
        pytest.param(
            Verdict("merge", gates.MERGE_REASON, escalations=(SECRET,)),
            Config(escalation="security-only", maintainers=["alice"]),
            urgent("secret", "AWS Access Key", "`app/keys.py:4`", "@alice"),
            id="security-only-still-opens-the-issue",
        ),
    ],
)
def test_escalate(verdict: Verdict, config: Config, expected: list[Action]) -> None:
    assert review.escalate(REPO, facts(), verdict, config) == expected


def test_escalation_keys_are_one_per_pull_request_and_kind() -> None:
    """A PR full of fake keys opens one issue; a later review of the same PR (another head,
    another place) decides the same key, so the effects open nothing more."""
    long = secret_at("d/" * 99 + "k.pem:12", "Private Key")
    first = review.escalate(REPO, facts(), with_escalations(SECRET, long, PROTECTED), MAINTAINERS)
    keys = [a.key for a in first if isinstance(a, RecordEscalation | OpenIssue)]
    assert keys == [
        f"security:{REPO}#{PR}:secret",
        f"security:{REPO}#{PR}:secret",
        f"security:{REPO}#{PR}:protected-path",
        f"security:{REPO}#{PR}:protected-path",
    ]
    later = review.escalate(
        REPO, facts(head=OLD, attempt="reopened"), with_escalations(long), MAINTAINERS
    )
    assert [a.key for a in later if isinstance(a, RecordEscalation)] == keys[:1]
    other_pull = facts().model_copy(update={"number": PR + 1})
    elsewhere = review.escalate(REPO, other_pull, with_escalations(SECRET), MAINTAINERS)
    assert [a.key for a in elsewhere if isinstance(a, RecordEscalation)] == [
        f"security:{REPO}#{PR + 1}:secret"
    ]
    # the store keeps escalation keys in 256 characters, with a full-length repository name
    long_repo = f"{'o' * 39}/{'r' * 100}"
    longest = review.escalate(long_repo, facts(), with_escalations(long), MAINTAINERS)
    assert all(len(a.key) <= 256 for a in longest if isinstance(a, RecordEscalation | OpenIssue))


# -- the verdict's conclusion ---------------------------------------------------------------


def fix_review(
    verdict: Verdict, mention: str = f"@{AGENT} ", attempt: str = "push"
) -> SubmitReview:
    round_ = verdict.round or DEFAULT_CONFIG.limits.max_fix_rounds
    return SubmitReview(
        repo=REPO,
        number=PR,
        commit_id=HEAD,
        event="REQUEST_CHANGES",
        body=mention
        + gates.fix_instructions(
            TASK, [SPEC_FAILED, QUALITY_FAILED], round_, DEFAULT_CONFIG.limits.max_fix_rounds
        ),
        key=f"review:{REPO}#{PR}@{HEAD}:{attempt}:changes",
        reason=f"review: {verdict.reason}",
    )


FIX = gates.verdict(SPEC_FAILED, QUALITY_FAILED, fix_rounds=1, max_fix_rounds=5)
BLOCKED = gates.verdict(SPEC_FAILED, QUALITY_FAILED, fix_rounds=5, max_fix_rounds=5)
WAIT = gates.verdict(SPEC_PASSED, QUALITY_WAITING, fix_rounds=0, max_fix_rounds=5)
FIX_WHY = f"review: {FIX.reason}"
BLOCKED_WHY = f"review: {BLOCKED.reason}"


def fixed(
    verdict: Verdict = FIX, transition: bool = True, mention: str = f"@{AGENT} "
) -> list[Action]:
    why = f"review: {verdict.reason}"
    move = [moved("in_review", "changes_requested", "request_changes", why)]
    return [
        *(move if transition else []),
        CountFixRound(repo=REPO, number=PR, head_sha=HEAD, reason=why),
        fix_review(verdict, mention),
    ]


def blocked(verdict: Verdict = BLOCKED, transition: bool = True) -> list[Action]:
    why = f"review: {verdict.reason}"
    move = [moved("in_review", "blocked", "block", why, previous="in_review")]
    return [
        *(move if transition else []),
        AddLabels(repo=REPO, number=PR, labels=(review.BLOCKED_LABEL,), reason=why),
        fix_review(verdict),
        RecordEscalation(
            repo=REPO,
            number=TASK,
            level="deferred",
            category="fix-rounds",
            summary=f"#{PR}: {verdict.reason}",
            key=f"fix-rounds:{REPO}#{PR}",
            meanwhile=review.BLOCKED_MEANWHILE["fix-rounds"].format(pull=PR),
            reversible=True,
            reason=why,
        ),
        Dispatch(repo=REPO, cause=f"blocked:fix-rounds:{REPO}#{PR}", reason=why),
    ]


def waiting(who: str) -> list[Action]:
    return [
        Comment(
            repo=REPO,
            number=PR,
            body=review.WAITING_COMMENT.format(pull=PR, who=who),
            key=f"ok-to-test-wanted:{REPO}#{PR}@{HEAD}",
            reason=f"review: {gates.WAIT_REASON}",
        )
    ]


@pytest.mark.parametrize(
    ("verdict", "pull", "found", "expected"),
    [
        pytest.param(
            WAIT,
            facts(author="stranger", fork=True),
            REVIEWED,
            waiting("a fork"),
            id="wait-fork",
        ),
        pytest.param(
            WAIT,
            facts(author="drive-by"),
            REVIEWED,
            waiting("@drive-by, not the task's agent"),
            id="wait-other-author",
        ),
        pytest.param(FIX, facts(), REVIEWED, fixed(), id="fix-requests-changes"),
        pytest.param(FIX, facts(), None, fixed(transition=False), id="fix-without-task"),
        pytest.param(
            FIX,
            facts(),
            task(TaskState.CHANGES_REQUESTED),
            fixed(transition=False),
            id="fix-already-changes-requested",
        ),
        pytest.param(
            FIX, facts(agent=None), REVIEWED, fixed(mention=""), id="fix-with-no-agent-to-mention"
        ),
        pytest.param(BLOCKED, facts(), REVIEWED, blocked(), id="blocked-after-the-last-round"),
        pytest.param(
            Verdict("blocked", BLOCKED.reason, None, True),
            facts(),
            REVIEWED,
            blocked(Verdict("blocked", BLOCKED.reason, None, True)),
            id="blocked-round-defaults-to-the-limit",
        ),
        pytest.param(BLOCKED, facts(), None, blocked(transition=False), id="blocked-without-task"),
    ],
)
def test_conclude(
    verdict: Verdict, pull: PullFacts, found: Task | None, expected: list[Action]
) -> None:
    actions = review.conclude(
        REPO, pull, verdict, SPEC_FAILED, QUALITY_FAILED, DEFAULT_CONFIG, found
    )
    assert actions == expected


def test_each_review_attempt_submits_a_review_of_its_own() -> None:
    """A second review of the same head (reopened, ok-to-test) is keyed apart."""
    again = facts(attempt="reopened")
    fix = review.conclude(REPO, again, FIX, SPEC_FAILED, QUALITY_FAILED, DEFAULT_CONFIG, REVIEWED)
    assert fix == [*fixed()[:2], fix_review(FIX, attempt="reopened")]
    (block, *_) = [
        a
        for a in review.conclude(
            REPO, again, BLOCKED, SPEC_FAILED, QUALITY_FAILED, DEFAULT_CONFIG, REVIEWED
        )
        if isinstance(a, SubmitReview)
    ]
    assert block.key == f"review:{REPO}#{PR}@{HEAD}:reopened:changes"


def many_findings(gate: Literal["spec", "quality"], count: int, message: str) -> GateResult:
    """A failed gate whose fix instructions are long: `count` findings of `message`."""
    findings = tuple(
        Finding("scope", message, path=f"{gate}/{i:03d}/" + "d" * 150 + ".py") for i in range(count)
    )
    return GateResult(gate, "fail", f"{count} problems: scope.", findings)


def test_the_review_body_is_clipped_to_what_github_takes() -> None:
    spec = many_findings("spec", 50, "x" * 480)
    quality = many_findings("quality", 50, "y" * 480)
    verdict = gates.verdict(spec, quality, fix_rounds=1, max_fix_rounds=5)
    full = f"@{AGENT} " + gates.fix_instructions(TASK, [spec, quality], 2, 5)
    assert len(full) > review.REVIEW_BODY_CHARS  # within the 65,535 of a check run's text
    actions = review.conclude(REPO, facts(), verdict, spec, quality, DEFAULT_CONFIG, REVIEWED)
    (request,) = [a for a in actions if isinstance(a, SubmitReview)]
    assert review.REVIEW_BODY_CHARS == 60_000
    assert len(request.body.encode()) <= review.REVIEW_BODY_CHARS
    assert request.body.startswith(f"@{AGENT} ")
    # cut between whole findings, never inside one (a code span cut open could make a
    # quoted @-mention live), and it says how much was left out
    kept = request.body.splitlines()[:-1]
    assert all(line in full.splitlines() for line in kept)
    assert request.body.splitlines()[-1] == gates.PIECES_LEFT_OUT.format(
        count=full.count("\n- ") - request.body.count("\n- "),
        limit=review.REVIEW_BODY_CHARS - len(f"@{AGENT} "),
    )


def test_a_short_review_body_is_not_clipped() -> None:
    (_, _, request) = review.conclude(
        REPO, facts(), FIX, SPEC_FAILED, QUALITY_FAILED, DEFAULT_CONFIG, REVIEWED
    )
    assert isinstance(request, SubmitReview)
    assert request.body == f"@{AGENT} " + gates.fix_instructions(
        TASK, [SPEC_FAILED, QUALITY_FAILED], 2, 5
    )
    assert not request.body.endswith("…")


def test_fix_instructions_mention_the_agent_and_the_round() -> None:
    (_, _, request) = review.conclude(
        REPO, facts(), FIX, SPEC_FAILED, QUALITY_FAILED, DEFAULT_CONFIG, REVIEWED
    )
    assert isinstance(request, SubmitReview)
    assert request.body.startswith(f"@{AGENT} ")
    assert gates.FIX_HEADING.format(task=TASK, round=2, max_rounds=5) in request.body


def test_fix_instructions_also_go_through_the_agents_transport() -> None:
    rostered = Task(REPO, TASK, TaskState.IN_REVIEW, agent=AGENT, agent_name="alpha")
    actions = review.conclude(
        REPO, facts(), FIX, SPEC_FAILED, QUALITY_FAILED, DEFAULT_CONFIG, rostered
    )
    [send] = [a for a in actions if isinstance(a, SendToAgent)]
    [request] = [a for a in actions if isinstance(a, SubmitReview)]
    assert send.agent == "alpha" and send.number == TASK
    assert send.message["content"]["type"] == "fix-instructions"
    assert send.message["content"]["instructions"] == request.body
    assert send.key == f"fix:{REPO}#{PR}@{HEAD}:push"
    # a stranger's pull request: its fix instructions are not the agent's business
    stranger = review.conclude(
        REPO, facts(author="someone"), FIX, SPEC_FAILED, QUALITY_FAILED, DEFAULT_CONFIG, rostered
    )
    assert not any(isinstance(a, SendToAgent) for a in stranger)


# -- approving and merging ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pull", "key"),
    [
        pytest.param(facts(), f"review:{REPO}#{PR}@{HEAD}:push:approve", id="push"),
        pytest.param(
            facts(attempt="reopened"), f"review:{REPO}#{PR}@{HEAD}:reopened:approve", id="reopened"
        ),
        pytest.param(
            facts(attempt="ok-to-test-8b53639f"),
            f"review:{REPO}#{PR}@{HEAD}:ok-to-test-8b53639f:approve",
            id="ok-to-test",
        ),
    ],
)
def test_approve(pull: PullFacts, key: str) -> None:
    assert review.approve(REPO, pull) == [
        SubmitReview(
            repo=REPO,
            number=PR,
            commit_id=HEAD,
            event="APPROVE",
            body=review.APPROVED.format(sha=HEAD[:7]),
            key=key,
            reason="review: both gates passed",
        )
    ]


@pytest.mark.parametrize(
    ("config", "method"),
    [
        pytest.param(DEFAULT_CONFIG, "squash", id="default-squash"),
        pytest.param(Config(review=Review(merge_method="merge")), "merge", id="merge"),
        pytest.param(Config(review=Review(merge_method="rebase")), "rebase", id="rebase"),
    ],
)
def test_merge(config: Config, method: Literal["merge", "squash", "rebase"]) -> None:
    assert review.merge(REPO, facts(), config) == Merge(
        repo=REPO,
        number=PR,
        sha=HEAD,
        method=method,
        reason="review: both gates passed and GitHub says it can merge",
    )


MERGED_WHY = f"review: #{PR} merged"
MERGED_COMMENT = Comment(
    repo=REPO,
    number=TASK,
    body=review.MERGED.format(pull=PR, sha=HEAD[:7]),
    key=f"merged:{REPO}#{PR}",
    reason=MERGED_WHY,
)


@pytest.mark.parametrize(
    ("found", "expected"),
    [
        pytest.param(
            REVIEWED,
            [moved("in_review", "done", "finish", MERGED_WHY), MERGED_COMMENT],
            id="task-merged-then-done",
        ),
        pytest.param(None, [MERGED_COMMENT], id="no-task"),
        pytest.param(task(TaskState.BLOCKED), [MERGED_COMMENT], id="blocked-task-not-moved"),
        pytest.param(task(TaskState.DONE), [MERGED_COMMENT], id="already-done"),
    ],
)
def test_merged(found: Task | None, expected: list[Action]) -> None:
    # the agent has room for its next task, and tasks waiting for this one may be ready
    next_pass = Dispatch(repo=REPO, cause=f"merged:{PR}", reason=MERGED_WHY)
    assert review.merged(REPO, facts(), found) == [*expected, next_pass]


CONFLICT = MergeDecision("conflict", gates.MERGE_CONFLICT)
GAVE_UP = MergeDecision("give-up", gates.MERGE_GAVE_UP.format(max_polls=5))


def cannot(
    decision: MergeDecision, category: str, text: str, transition: bool = True
) -> list[Action]:
    why = f"review: {decision.reason}"
    move = [moved("in_review", "blocked", "block", why, previous="in_review")]
    key = f"{category}:{REPO}#{PR}@{HEAD}"
    return [
        *(move if transition else []),
        AddLabels(repo=REPO, number=PR, labels=(review.BLOCKED_LABEL,), reason=why),
        Comment(repo=REPO, number=PR, body=text, key=key, reason=why),
        RecordEscalation(
            repo=REPO,
            number=TASK,
            level="deferred",
            category=category,
            summary=f"#{PR}: {decision.reason}",
            key=key,
            meanwhile=review.BLOCKED_MEANWHILE[category].format(pull=PR),
            reversible=True,
            reason=why,
        ),
        Dispatch(repo=REPO, cause=f"blocked:{key}", reason=why),
    ]


@pytest.mark.parametrize(
    ("decision", "pull", "found", "expected"),
    [
        pytest.param(
            CONFLICT,
            facts(),
            REVIEWED,
            cannot(
                CONFLICT,
                "conflict",
                review.CONFLICT.format(mention=f"@{AGENT} ", pull=PR, base="main"),
            ),
            id="conflict-asks-the-agent-to-rebase",
        ),
        pytest.param(
            CONFLICT,
            facts(agent=None),
            None,
            cannot(
                CONFLICT,
                "conflict",
                review.CONFLICT.format(mention="", pull=PR, base="main"),
                transition=False,
            ),
            id="conflict-without-task-or-agent",
        ),
        pytest.param(
            GAVE_UP,
            facts(),
            REVIEWED,
            cannot(
                GAVE_UP,
                "merge",
                review.GAVE_UP.format(mention=f"@{AGENT} ", pull=PR, reason=GAVE_UP.reason),
            ),
            id="give-up",
        ),
        pytest.param(
            MergeDecision("give-up", "GitHub refused to merge it"),
            facts(),
            task(TaskState.BLOCKED),
            cannot(
                MergeDecision("give-up", "GitHub refused to merge it"),
                "merge",
                review.GAVE_UP.format(
                    mention=f"@{AGENT} ", pull=PR, reason="GitHub refused to merge it"
                ),
                transition=False,
            ),
            id="refused-while-already-blocked",
        ),
    ],
)
def test_cannot_merge(
    decision: MergeDecision, pull: PullFacts, found: Task | None, expected: list[Action]
) -> None:
    actions = review.cannot_merge(REPO, pull, decision, DEFAULT_CONFIG, found)
    assert actions == expected
    assert not any(isinstance(a, Merge) for a in actions)
    assert not any(isinstance(a, SubmitReview) and a.event == "APPROVE" for a in actions)


# -- passed, but not Nightshift's to merge --------------------------------------------------


@pytest.mark.parametrize(
    ("pull", "text"),
    [
        pytest.param(
            facts(author="stranger", fork=True),
            f"Both gates passed on {HEAD[:7]}. #{PR} is by @stranger, not the task's agent and "
            "comes from a fork: Nightshift merges only its agents' pull requests, so a "
            "maintainer decides on this one.",
            id="strangers-fork",
        ),
        pytest.param(
            facts(author="stranger", fork=True, ok_to_test_sha=HEAD),
            f"Both gates passed on {HEAD[:7]}. #{PR} is by @stranger, not the task's agent and "
            "comes from a fork: Nightshift merges only its agents' pull requests, so a "
            "maintainer decides on this one.",
            id="strangers-fork-after-ok-to-test",
        ),
        pytest.param(
            facts(author="drive-by"),
            f"Both gates passed on {HEAD[:7]}. #{PR} is by @drive-by, not the task's agent: "
            "Nightshift merges only its agents' pull requests, so a maintainer decides on "
            "this one.",
            id="another-author-in-the-repository",
        ),
        pytest.param(
            facts(fork=True),
            f"Both gates passed on {HEAD[:7]}. #{PR} is by @{AGENT} (its agent, but from a "
            "fork): Nightshift merges only its agents' pull requests, so a maintainer decides "
            "on this one.",
            id="the-agents-fork",
        ),
        pytest.param(
            facts(author=AGENT.upper(), fork=True),
            f"Both gates passed on {HEAD[:7]}. #{PR} is by @{AGENT.upper()} (its agent, but "
            "from a fork): Nightshift merges only its agents' pull requests, so a maintainer "
            "decides on this one.",
            id="the-agents-fork-login-without-case",
        ),
        pytest.param(
            facts(agent=None),
            f"Both gates passed on {HEAD[:7]}. #{PR} is by @{AGENT}, not the task's agent: "
            "Nightshift merges only its agents' pull requests, so a maintainer decides on "
            "this one.",
            id="task-without-agent",
        ),
    ],
)
def test_passed_for_human(pull: PullFacts, text: str) -> None:
    assert not review.may_merge(pull)
    actions = review.passed_for_human(REPO, pull)
    assert actions == [
        Comment(
            repo=REPO,
            number=PR,
            body=text,
            key=f"passed-for-human:{REPO}#{PR}@{HEAD}",
            reason="review: both gates passed; not the agent's PR, so not merged",
        )
    ]
    assert not any(isinstance(a, Merge) for a in actions)
    assert not any(isinstance(a, SubmitReview) for a in actions)


def test_passed_for_human_is_said_once_per_head() -> None:
    """Keyed by head, not attempt: reviewing the same head again says nothing new."""

    def key(pull: PullFacts) -> str:
        (comment,) = review.passed_for_human(REPO, pull)
        assert isinstance(comment, Comment)
        return comment.key

    stranger = facts(author="stranger", fork=True)
    assert key(stranger) == f"passed-for-human:{REPO}#{PR}@{HEAD}"
    assert key(facts(author="stranger", fork=True, attempt="reopened")) == key(stranger)
    assert key(facts(author="stranger", fork=True, head=OLD)) == (
        f"passed-for-human:{REPO}#{PR}@{OLD}"
    )


# -- a review that could not finish ---------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "shown"),
    [
        pytest.param("the sandbox is unavailable", "the sandbox is unavailable", id="plain"),
        pytest.param(
            "GitHub said @acme/security <b>no</b>\n\n# boom",
            "GitHub said @\u200bacme/security &lt;b&gt;no&lt;/b&gt; # boom",
            id="reason-is-inert-prose",
        ),
    ],
)
def test_review_failed(reason: str, shown: str) -> None:
    why = f"review: could not finish: {shown}"
    output = {
        "title": "Nightshift could not finish the review",
        "summary": f"Nightshift could not finish the review: {shown}. Push again to retry.",
    }
    assert review.REVIEW_FAILED == "Nightshift could not finish the review"
    assert review.review_failed(REPO, PR, TASK, HEAD, reason) == [
        PublishCheck(
            repo=REPO,
            head_sha=HEAD,
            name="Nightshift / spec",
            key=f"check:{REPO}@{HEAD}:spec:push",
            status="completed",
            conclusion="failure",
            output=output,
            reason=why,
        ),
        PublishCheck(
            repo=REPO,
            head_sha=HEAD,
            name="Nightshift / quality",
            key=f"check:{REPO}@{HEAD}:quality:push",
            status="completed",
            conclusion="failure",
            output=output,
            reason=why,
        ),
        RecordEscalation(
            repo=REPO,
            number=TASK,
            level="deferred",
            category="review-error",
            summary=f"#{PR}: the review of {HEAD[:7]} could not finish",
            key=f"review-error:{REPO}#{PR}@{HEAD}",
            meanwhile=(
                "both check runs of the head say the review failed; nothing was merged; "
                "a new push is reviewed again"
            ),
            reversible=True,
            reason=why,
        ),
    ]


def test_review_failed_caps_the_reason() -> None:
    (spec, _, escalation) = review.review_failed(REPO, PR, TASK, HEAD, "e" * 1000)
    assert isinstance(spec, PublishCheck)
    assert isinstance(escalation, RecordEscalation)
    assert spec.reason == "review: could not finish: " + "e" * 199 + "…"
    assert spec.output == {
        "title": review.REVIEW_FAILED,
        "summary": f"{review.REVIEW_FAILED}: " + "e" * 499 + "…. Push again to retry.",
    }
    assert escalation.reason == spec.reason


# -- a blocked task takes a new push; our own check suite is not CI ------------------------


@pytest.mark.parametrize(
    ("stack", "expected_state", "previous"),
    [
        pytest.param((TaskState.IN_REVIEW,), "in_review", None, id="blocked-from-in-review"),
        pytest.param((TaskState.CHANGES_REQUESTED,), "in_review", None, id="blocked-after-changes"),
    ],
)
def test_a_new_push_unblocks_a_blocked_task_and_starts_a_review(
    stack: tuple[TaskState, ...], expected_state: str, previous: str | None
) -> None:
    blocked = Task(REPO, TASK, TaskState.BLOCKED, stack, AGENT)
    earlier = Pull(REPO, PR, TASK, OLD, AGENT, fork=False)
    why = f"review: #{PR} (synchronize) works on #{TASK}"
    actions = decided(
        "pull_request", pull_request("synchronize"), RepoState(task=blocked, pull=earlier)
    )
    assert actions == [
        moved("blocked", expected_state, "unblock", why, previous),
        RemoveLabel(repo=REPO, number=PR, label=review.BLOCKED_LABEL, reason=why),
        *reviewed("synchronize"),
    ]


def test_a_blocked_task_ignores_events_that_bring_no_new_code() -> None:
    blocked = Task(REPO, TASK, TaskState.BLOCKED, (TaskState.IN_REVIEW,), AGENT)
    same_head = RepoState(task=blocked, pull=TRACKED)
    assert decided("pull_request", pull_request("synchronize"), same_head) == []
    assert decided("pull_request", pull_request("reopened"), same_head) == []


def test_our_own_failed_check_suite_is_not_rerun() -> None:
    suite = check_suite()
    suite["check_suite"]["app"]["id"] = 4242
    state = RepoState(task=REVIEWED, pull=TRACKED, app_id=4242)
    assert decided("check_suite", suite, state) == []


# -- a merge that turned the default branch red ---------------------------------------------

MERGE = "5e1ec7ed5e1ec7ed5e1ec7ed5e1ec7ed5e1ec7ed"
MERGED_PR = Pull(REPO, PR, TASK, HEAD, AGENT, fork=False, merged_sha=MERGE)
RUN_URL = f" (https://github.com/{REPO}/actions/runs/{RUN_ID})"
REQUIRED = Config(review=Review(required_checks=["ci/test", "lint"]))
RED_KEY = f"red-merge:{REPO}@{MERGE}"


def on_main(data: dict[str, Any], *, ran_on: str | None = "main") -> dict[str, Any]:
    """The CI delivery, on the merge commit of the default branch `main`."""
    kind = "workflow_run" if "workflow_run" in data else "check_suite"
    data[kind]["head_branch"] = ran_on
    data["repository"] = {**data["repository"], "default_branch": "main"}
    return data


def red_main(
    checks: tuple[str, ...] = ("CI",),
    *,
    revert: bool = True,
    issue: bool = True,
    link: str = RUN_URL,
    maintainers: tuple[str, ...] = (),
) -> list[Action]:
    names = ", ".join(checks)
    why = f"ci: {names} failed on main at {MERGE[:7]}, the merge of #{PR}"
    # security-only: no issue, a deferred escalation saying what was done meanwhile
    meanwhile = (
        review.RED_MERGE_MEANWHILE_REVERT.format(revert=f"nightshift/revert-{PR}")
        if revert
        else review.RED_MERGE_MEANWHILE_NONE
    )
    actions: list[Action] = [
        RecordEscalation(
            repo=REPO,
            number=TASK,
            level="immediate" if issue else "deferred",
            category="red-merge",
            summary=f"#{PR}: {names} failed on main after the merge ({MERGE[:7]})",
            key=RED_KEY,
            meanwhile=None if issue else meanwhile,
            reversible=None if issue else True,
            reason=why if issue else f"{why} (escalation: security-only)",
        )
    ]
    template = review.RED_MERGE_REVERTING if revert else review.RED_MERGE_NOT_REVERTING
    todo = template.format(revert=f"`nightshift/revert-{PR}`", branch="`main`", pull=PR)
    if issue:
        body = review.RED_MERGE_BODY.format(
            checks=", ".join(f"`{name}`" for name in checks),
            branch="`main`",
            sha=MERGE[:7],
            pull=PR,
            task=TASK,
            link=link,
            action=todo,
            mentions=" ".join(f"@{login}" for login in maintainers),
        )
        actions.append(
            OpenIssue(
                repo=REPO,
                title=review.RED_MERGE_TITLE.format(branch="main", pull=PR, checks=names),
                body=body.strip(),
                labels=(labels.URGENT_LABEL,),
                key=RED_KEY,
                reason=why,
            )
        )
    if revert:
        actions.append(
            RevertMerge(
                repo=REPO,
                number=PR,
                task=TASK,
                merge_sha=MERGE,
                branch="main",
                checks=checks,
                key=f"revert:{REPO}@{MERGE}",
                issue_key=RED_KEY if issue else None,
                mentions=maintainers,
                reason=why,
            )
        )
    return actions


def merge_check(name: str, conclusion: str | None, sha: str = MERGE) -> CheckResult:
    status = "completed" if conclusion is not None else "in_progress"
    return CheckResult(name=name, head_sha=sha, status=status, conclusion=conclusion)


@pytest.mark.parametrize(
    ("event", "data", "state", "config", "expected"),
    [
        pytest.param(
            "workflow_run",
            on_main(workflow_run(sha=MERGE)),
            RepoState(merged_pull=MERGED_PR),
            DEFAULT_CONFIG,
            red_main(),
            id="red-run-on-the-merge-reverts-and-escalates",
        ),
        pytest.param(
            "workflow_run",
            on_main(workflow_run("timed_out", sha=MERGE)),
            RepoState(merged_pull=MERGED_PR),
            DEFAULT_CONFIG,
            red_main(),
            id="timed-out-counts",
        ),
        pytest.param(
            "workflow_run",
            on_main(workflow_run(sha=MERGE)),
            RepoState(merged_pull=MERGED_PR),
            Config(review=Review(revert_on_red=False)),
            red_main(revert=False),
            id="revert-on-red-off-only-escalates",
        ),
        pytest.param(
            "workflow_run",
            on_main(workflow_run(sha=MERGE)),
            RepoState(merged_pull=MERGED_PR),
            Config(escalation="security-only", maintainers=["lead"]),
            red_main(issue=False, maintainers=("lead",)),
            id="security-only-reverts-without-an-issue",
        ),
        pytest.param(
            "workflow_run",
            on_main(workflow_run(sha=MERGE, html_url="javascript:alert(1)")),
            RepoState(merged_pull=MERGED_PR),
            Config(maintainers=["lead", "ops"]),
            red_main(link="", maintainers=("lead", "ops")),
            id="maintainers-mentioned-no-https-link",
        ),
        pytest.param(
            "workflow_run",
            on_main(workflow_run(sha=MERGE, attempt=2)),
            RepoState(merged_pull=MERGED_PR),
            DEFAULT_CONFIG,
            red_main(),
            id="a-rerun-that-failed-again-has-the-same-keys",
        ),
        pytest.param(
            "check_suite",
            on_main(check_suite(sha=MERGE)),
            RepoState(merged_pull=MERGED_PR),
            DEFAULT_CONFIG,
            red_main(("CircleCI Checks",), link=""),
            id="another-apps-check-suite",
        ),
        pytest.param(
            "workflow_run",
            on_main(workflow_run(sha=MERGE)),
            RepoState(
                merged_pull=MERGED_PR,
                merge_checks=(merge_check("lint", "failure"), merge_check("ci/test", "timed_out")),
            ),
            REQUIRED,
            red_main(("ci/test", "lint")),
            id="required-checks-red-on-the-merge",
        ),
        pytest.param(
            "workflow_run",
            on_main(workflow_run(sha=MERGE)),
            RepoState(
                merged_pull=MERGED_PR,
                merge_checks=(
                    merge_check("ci/test", "success"),
                    merge_check("lint", None),
                    merge_check("docs", "failure"),
                ),
            ),
            REQUIRED,
            [],
            id="only-an-unrequired-check-is-red",
        ),
        pytest.param(
            "workflow_run",
            on_main(workflow_run(sha=MERGE)),
            RepoState(
                merged_pull=MERGED_PR, merge_checks=(merge_check("ci/test", "failure", sha=OLD),)
            ),
            REQUIRED,
            [],
            id="required-check-red-on-another-commit",
        ),
        pytest.param(
            "workflow_run",
            on_main(workflow_run("success", sha=MERGE)),
            RepoState(merged_pull=MERGED_PR),
            DEFAULT_CONFIG,
            [],
            id="green",
        ),
        pytest.param(
            "workflow_run",
            on_main(workflow_run("cancelled", sha=MERGE)),
            RepoState(merged_pull=MERGED_PR),
            DEFAULT_CONFIG,
            [],
            id="cancelled",
        ),
        pytest.param(
            "workflow_run",
            on_main(workflow_run(sha=OLD)),
            RepoState(merged_pull=MERGED_PR),
            DEFAULT_CONFIG,
            [],
            id="another-commit",
        ),
        pytest.param(
            "workflow_run",
            on_main(workflow_run(sha=MERGE)),
            RepoState(merged_pull=Pull(REPO, PR, TASK, HEAD, AGENT, fork=False)),
            DEFAULT_CONFIG,
            [],
            id="pull-not-merged",
        ),
        pytest.param(
            "workflow_run",
            on_main(workflow_run(sha=MERGE)),
            RepoState(),
            DEFAULT_CONFIG,
            [],
            id="not-a-merge-of-nightshifts",
        ),
        pytest.param(
            "workflow_run",
            on_main(workflow_run(sha=MERGE), ran_on="release"),
            RepoState(merged_pull=MERGED_PR),
            DEFAULT_CONFIG,
            [],
            id="ran-on-another-branch",
        ),
        pytest.param(
            "workflow_run",
            on_main(workflow_run(sha=MERGE), ran_on=None),
            RepoState(merged_pull=MERGED_PR),
            DEFAULT_CONFIG,
            red_main(),
            id="no-head-branch-named",
        ),
        pytest.param(
            "workflow_run",
            workflow_run(sha=MERGE),
            RepoState(merged_pull=MERGED_PR),
            DEFAULT_CONFIG,
            [],
            id="default-branch-unknown",
        ),
        pytest.param(
            "check_suite",
            on_main(check_suite(sha=MERGE, slug="github-actions")),
            RepoState(merged_pull=MERGED_PR),
            DEFAULT_CONFIG,
            [],
            id="actions-suite-left-to-workflow-run",
        ),
        pytest.param(
            "check_suite",
            on_main(check_suite(sha=MERGE)),
            RepoState(merged_pull=MERGED_PR, app_id=18001),
            DEFAULT_CONFIG,
            [],
            id="our-own-suite",
        ),
    ],
)
def test_red_merge(
    event: str, data: dict[str, Any], state: RepoState, config: Config, expected: list[Action]
) -> None:
    assert decided(event, data, state, config) == expected


def test_a_red_merge_is_keyed_by_its_commit_so_redeliveries_change_nothing() -> None:
    """The escalation, the issue and the revert are one per merge commit: a redelivery, a
    re-run's failure or another red workflow decide the same keys (the effects skip them)."""

    def keys(data: dict[str, Any]) -> list[str]:
        return [
            str(getattr(a, "key", ""))
            for a in decided("workflow_run", data, RepoState(merged_pull=MERGED_PR))
        ]

    first = keys(on_main(workflow_run(sha=MERGE)))
    assert first == [RED_KEY, RED_KEY, f"revert:{REPO}@{MERGE}"]
    assert keys(on_main(workflow_run(sha=MERGE))) == first
    other = on_main(workflow_run(sha=MERGE, attempt=3))
    other["workflow_run"] |= {"id": RUN_ID + 1, "name": "Lint"}
    assert keys(other) == first


@pytest.mark.parametrize(
    ("data", "merged", "config", "expected"),
    [
        pytest.param(on_main(workflow_run(sha=MERGE)), MERGED_PR, REQUIRED, True, id="red"),
        pytest.param(
            on_main(workflow_run("success", sha=MERGE)), MERGED_PR, REQUIRED, False, id="green"
        ),
        pytest.param(
            on_main(workflow_run(sha=MERGE)), MERGED_PR, DEFAULT_CONFIG, False, id="no-required"
        ),
        pytest.param(on_main(workflow_run(sha=MERGE)), None, REQUIRED, False, id="no-merge"),
        pytest.param(on_main(workflow_run(sha=OLD)), MERGED_PR, REQUIRED, False, id="other-sha"),
    ],
)
def test_merge_checks_are_read_only_when_they_decide(
    data: dict[str, Any], merged: Pull | None, config: Config, expected: bool
) -> None:
    env = Envelope.parse("d1", "workflow_run", data)
    assert review.wants_merge_checks(env, merged, config) is expected


@pytest.mark.parametrize(
    ("task_state", "paused", "expected"),
    [
        pytest.param(TaskState.IN_REVIEW, False, None, id="in-review"),
        pytest.param(TaskState.IN_REVIEW, True, "the repository is paused", id="paused"),
        pytest.param(
            TaskState.CANCELLED, False, "the task is no longer in review (cancelled)", id="moved"
        ),
        pytest.param(None, False, "the task is no longer in review (gone)", id="no-task"),
    ],
)
def test_merge_refusal(task_state: TaskState | None, paused: bool, expected: str | None) -> None:
    found = task(task_state) if task_state is not None else None
    assert review.merge_refusal(found, paused) == expected


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        pytest.param(None, 0, id="never-reviewed"),
        pytest.param(Pull(REPO, PR, TASK, HEAD, AGENT, False, 2, OLD), 2, id="other-head"),
        pytest.param(Pull(REPO, PR, TASK, HEAD, AGENT, False, 2, HEAD), 1, id="same-head-again"),
        pytest.param(Pull(REPO, PR, TASK, HEAD, AGENT, False, 0, HEAD), 0, id="never-below-zero"),
    ],
)
def test_rounds_before_a_review_of_this_head(stored: Pull | None, expected: int) -> None:
    assert review.rounds_before(stored, HEAD) == expected
