"""Pull requests of tasks: start their review, retry flaky CI, and allow a head to run.

A pull request belongs to a task when its body closes the task's issue (`Closes #N`) or
its branch follows the assignment's convention (app.core.linking). Only those are
reviewed; every other pull request is none of Nightshift's business.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

from app.core import assignment as messages
from app.core import ci_log, gates, revert
from app.core.actions import (
    Action,
    AddLabels,
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
)
from app.core.config import Config
from app.core.envelope import Envelope, PullView, view
from app.core.gates import GateResult, MergeDecision, Verdict
from app.core.labels import URGENT_LABEL
from app.core.linking import linked_issue
from app.core.review_facts import CheckResult
from app.core.router import Router
from app.core.state import Pull, RepoState
from app.core.tasks import Event, Task, as_action, move, path
from app.core.tasks import State as TaskState

router = Router()

BLOCKED_LABEL = "nightshift:blocked"
REVIEWABLE = frozenset(
    {TaskState.ASSIGNED, TaskState.IN_PROGRESS, TaskState.IN_REVIEW, TaskState.CHANGES_REQUESTED}
)
FAILED_CONCLUSIONS = frozenset({"failure", "timed_out"})

CI_STILL_FAILS = (
    "CI still fails on {sha} after {retries} re-run(s): {name} ended `{conclusion}`{link}."
)
CI_BLOCKED = (
    CI_STILL_FAILS + "\n\n{mention}please fix the failure and push again; Nightshift will not "
    "re-run it further for this commit.{log}"
)
# the same news through the agent's own transport (a webhook agent may not read comments)
CI_FIX = (
    CI_STILL_FAILS + " The task is blocked until you fix the failure and push to the same "
    "branch; Nightshift will not re-run it further for this commit.{log}"
)


def pull_of(env: Envelope) -> PullView | None:
    """The pull request a `pull_request` delivery is about."""
    if env.event != "pull_request":
        return None
    return view(PullView, env.payload, "pull_request")


def task_number(env: Envelope) -> int | None:
    """The task (issue number) a pull-request delivery links to, for the effects layer to
    load before deciding."""
    pull = pull_of(env)
    if pull is None or env.repository is None:
        return None
    return linked_issue(env.repository, pull.body, pull.head.ref)


def head_sha_of(env: Envelope) -> str | None:
    """The commit a CI delivery (`check_suite`, `workflow_run`) is about."""
    for key in ("check_suite", "workflow_run"):
        obj = env.payload.get(key)
        if env.event == key and isinstance(obj, dict) and isinstance(obj.get("head_sha"), str):
            return str(obj["head_sha"])
    return None


@router.on("pull_request", "opened")
@router.on("pull_request", "reopened")
@router.on("pull_request", "synchronize")
@router.on("pull_request", "ready_for_review")
def on_pull_request(env: Envelope, state: RepoState, config: Config) -> Sequence[Action]:
    pull = pull_of(env)
    task = state.task
    if pull is None or env.repository is None or task is None:
        return []
    if pull.draft or pull.state != "open" or task.number != task_number(env):
        return []  # a draft is reviewed when it is marked ready
    repo = env.repository
    why = f"review: #{pull.number} ({env.action}) works on #{task.number}"
    actions: list[Action] = []
    if task.state is TaskState.BLOCKED and _new_push_to_tracked(env, state, pull):
        # blocked by red CI, a conflict or the fix rounds: a new push is the agent's answer
        step = path(task, Event.UNBLOCK, Event.PUSH_FIX) or path(task, Event.UNBLOCK)
        if step is None or step.to_state not in REVIEWABLE:
            return []
        actions += [
            as_action(repo, task.number, step, Event.UNBLOCK, why),
            RemoveLabel(repo=repo, number=pull.number, label=BLOCKED_LABEL, reason=why),
        ]
    elif task.state not in REVIEWABLE:
        return []
    else:
        event = {
            TaskState.ASSIGNED: Event.OPEN_PR,
            TaskState.IN_PROGRESS: Event.OPEN_PR,
            TaskState.CHANGES_REQUESTED: Event.PUSH_FIX,
        }.get(task.state)
        if event is not None:
            step = move(task, event)
            if step is not None:
                actions.append(as_action(repo, task.number, step, event, why))
    author = pull.user.login if pull.user is not None else ""
    actions += [
        RecordPull(
            repo=repo,
            number=pull.number,
            task=task.number,
            head_sha=pull.head.sha,
            author=author,
            fork=pull.is_fork(repo),
            reason=why,
        ),
        StartReview(
            repo=repo,
            number=pull.number,
            task=task.number,
            head_sha=pull.head.sha,
            # a reopened PR is reviewed again even when its head is one reviewed before
            attempt="reopened" if env.action == "reopened" else "push",
            reason=why,
        ),
    ]
    return actions


def _new_push_to_tracked(env: Envelope, state: RepoState, pull: PullView) -> bool:
    tracked = state.pull
    return (
        env.action == "synchronize"
        and tracked is not None
        and tracked.number == pull.number
        and tracked.head_sha != pull.head.sha
    )


def _ci_run(env: Envelope) -> tuple[str, dict[str, Any]] | None:
    obj = env.payload.get(env.event)
    return (env.event, obj) if isinstance(obj, dict) else None


@router.on("workflow_run", "completed")
@router.on("check_suite", "completed")
def on_ci_completed(env: Envelope, state: RepoState, config: Config) -> Sequence[Action]:
    """A red CI run on a reviewed head: re-run it, up to `max_retry_attempts` per commit."""
    found = _red_on_head(env, state)
    pull = state.pull
    if found is None or pull is None or env.repository is None:
        return []
    kind, run = found
    repo = env.repository
    limit = config.limits.max_retry_attempts
    name = _run_name(kind, run)
    if state.ci_retries < limit:
        # the key tells a re-run's result (counted again) from a redelivery (counted once):
        # a re-run workflow run gets a new `run_attempt`, but a re-requested check suite
        # keeps its id and has no attempt, only a new `updated_at`
        attempt = run.get("run_attempt", 1) if kind == "workflow_run" else run.get("updated_at")
        key = f"{run.get('id')}/{attempt or 1}"
        why = f"ci: {name} failed on {pull.head_sha[:7]}: re-run {state.ci_retries + 1} of {limit}"
        once = f"ci-rerun:{repo}@{pull.head_sha}:{key}"  # a redelivery re-runs nothing
        rerun: Action = (
            RerunFailedJobs(
                repo=repo, run_id=int(run["id"]), head_sha=pull.head_sha, key=once, reason=why
            )
            if kind == "workflow_run"
            else RerequestCheckSuite(
                repo=repo, suite_id=int(run["id"]), head_sha=pull.head_sha, key=once, reason=why
            )
        )
        return [CountCiRetry(repo=repo, head_sha=pull.head_sha, run=key, reason=why), rerun]
    return blocked_by_ci(repo, pull, state, name, str(run.get("conclusion")), run)


def _red_on_head(env: Envelope, state: RepoState) -> tuple[str, dict[str, Any]] | None:
    """The delivery's CI run or suite, when it failed on the head of a pull request under
    review: what on_ci_completed re-runs, or blocks on once the re-runs are used up."""
    found = _ci_run(env)
    pull = state.pull
    if found is None or pull is None or env.repository is None:
        return None
    kind, run = found
    if run.get("conclusion") not in FAILED_CONCLUSIONS or run.get("head_sha") != pull.head_sha:
        return None
    if kind == "check_suite" and _is_actions(run):
        return None  # GitHub Actions suites arrive as workflow_run too: handled there
    if kind == "check_suite" and _app_id(run) is not None and _app_id(run) == state.app_id:
        return None  # our own check runs' suite: a failed gate is not flaky CI
    task = state.task
    if task is not None and task.state not in REVIEWABLE:
        return None
    return found


@dataclass(frozen=True)
class RedRun:
    """A red CI result whose failing log the effects layer reads before deciding."""

    kind: str  # workflow_run (GitHub Actions: its jobs' logs) or check_suite (check runs)
    id: int
    attempt: int  # the workflow run's attempt that failed (1 for a check suite)
    name: str


def ci_log_wanted(env: Envelope, state: RepoState, config: Config) -> RedRun | None:
    """The CI result to read the failing log of, for blocked_by_ci to quote: only when its
    re-runs are used up, so a log is read once a head is blocked, never on every delivery."""
    found = _red_on_head(env, state)
    if found is None or state.ci_retries < config.limits.max_retry_attempts:
        return None
    kind, run = found
    run_id, attempt = run.get("id"), run.get("run_attempt")
    if not isinstance(run_id, int):
        return None
    attempt = attempt if kind == "workflow_run" and isinstance(attempt, int) else 1
    return RedRun(kind=kind, id=run_id, attempt=attempt, name=_run_name(kind, run))


def blocked_by_ci(
    repo: str, pull: Pull, state: RepoState, name: str, conclusion: str, run: dict[str, Any]
) -> list[Action]:
    """Blocked: CI still fails after its re-runs. The comment and the agent's fix request
    say which run failed and quote its failing log (state.ci_log)."""
    why = f"ci: re-runs exhausted for {pull.head_sha[:7]}"
    url = run.get("html_url")
    task = state.task
    agent = task.agent if task is not None else None
    log = ci_log.section(state.ci_log)
    facts = {
        "sha": pull.head_sha[:7],
        "retries": state.ci_retries,
        "name": gates.code(name, 100),  # the run's name is the PR's to choose: quoted, capped
        "conclusion": gates.plain(conclusion, 30),
        "link": f" ({url})" if isinstance(url, str) and url.startswith("https://") else "",
        "log": f"\n\n{log}" if log else "",
    }
    body = CI_BLOCKED.format(**facts, mention=f"@{agent} " if agent else "")
    notice = Comment(
        repo=repo,
        number=pull.number,
        body=body,
        key=f"ci-blocked:{repo}#{pull.number}@{pull.head_sha}",
        reason=why,
    )
    summary = (
        f"#{pull.number}: CI {gates.code(name, 100)} still fails after {state.ci_retries} re-run(s)"
    )
    key = f"ci:{repo}#{pull.number}@{pull.head_sha}"
    blocked = block(repo, pull.number, pull.task, state.task, why, notice, "ci", summary, key)
    own = agent is not None and pull.author.lower() == agent.lower() and not pull.fork
    if task is None or task.agent_name is None or not own:
        return blocked  # only the task's agent hears it, about its own pull request
    message = messages.fix_request(
        repo=repo,
        number=pull.task,
        pr=pull.number,
        agent=task.agent_name,
        instructions=CI_FIX.format(**facts),
    )
    return [
        *blocked,
        SendToAgent(
            repo=repo,
            number=pull.task,
            agent=task.agent_name,
            message=message.model_dump(mode="json"),
            key=f"ci-fix:{repo}#{pull.number}@{pull.head_sha}",  # once per head
            reason=why,
        ),
    ]


def block(
    repo: str,
    pull_number: int,
    task_number: int,
    task: Task | None,
    why: str,
    notice: Comment | SubmitReview,
    category: str,
    summary: str,
    key: str,
) -> list[Action]:
    """Blocked for a person: the task moved, the PR labelled, the agent told (`notice`),
    a deferred escalation recorded for the report (with what was done meanwhile: nothing
    merged, so it can all be undone), and a dispatch pass, which starts the block's climb
    up the escalation path (app.core.dispatch)."""
    meanwhile = BLOCKED_MEANWHILE.get(category, BLOCKED_MEANWHILE["merge"]).format(pull=pull_number)
    return [
        *_task_move(repo, task, Event.BLOCK, why),
        AddLabels(repo=repo, number=pull_number, labels=(BLOCKED_LABEL,), reason=why),
        notice,
        RecordEscalation(
            repo=repo,
            number=task_number,
            level="deferred",
            category=category,
            summary=summary,
            key=key,
            meanwhile=meanwhile,
            reversible=True,
            reason=why,
        ),
        Dispatch(repo=repo, cause=f"blocked:{key}", reason=why),
    ]


# what was done while a blocked pull request's decision waits (the report's "done meanwhile")
BLOCKED_MEANWHILE = {
    "ci": (
        "re-ran the failed CI up to the limit and asked the agent to fix it; #{pull} stays "
        "open and unmerged, labelled nightshift:blocked"
    ),
    "fix-rounds": (
        "sent fix instructions for every failed review; #{pull} stays open and unmerged, "
        "labelled nightshift:blocked"
    ),
    "conflict": (
        "asked the agent to rebase; nothing was resolved or merged; #{pull} stays open, "
        "labelled nightshift:blocked"
    ),
    "merge": "nothing was merged; #{pull} stays open, labelled nightshift:blocked",
}


# -- a merge that turned the default branch red --------------------------------------------

RED_MERGE_TITLE = "{branch} is red after #{pull} was merged: {checks} failed"
RED_MERGE_BODY = (
    "**Risk:** {checks} failed on {branch} at {sha}, the merge of #{pull} (task #{task}){link}: "
    "{branch} is broken for everyone who builds on it.\n"
    "**Action required:** {action}\n"
    "**Blocks work:** yes: pull requests into {branch} build on the failing commit until it is "
    "reverted or fixed.\n\n{mentions}"
)
RED_MERGE_REVERTING = (
    "merge the revert pull request Nightshift opens from {revert} (merging it closes this "
    "issue), or fix {branch} another way and close this issue. If the revert cannot be made "
    "(it conflicts), Nightshift says so here and a human must revert #{pull}."
)
RED_MERGE_MEANWHILE_REVERT = (
    "opened a pull request that reverts the merge (from {revert}) for a human to merge; "
    "the default branch stays red until then"
)
RED_MERGE_MEANWHILE_NONE = "nothing: review.revert_on_red is off; the default branch stays red"
RED_MERGE_NOT_REVERTING = (
    "revert #{pull} or fix {branch}: `review.revert_on_red` is off, so Nightshift does not "
    "revert it."
)


def default_branch(env: Envelope) -> str | None:
    """The repository's default branch, as the delivery's `repository` says (always sent)."""
    repository = env.payload.get("repository")
    value = repository.get("default_branch") if isinstance(repository, dict) else None
    return value if isinstance(value, str) and value else None


def _red_run_on(env: Envelope, sha: str) -> tuple[str, dict[str, Any]] | None:
    """The CI run or suite of the delivery, when it failed on `sha`."""
    found = _ci_run(env)
    if found is None:
        return None
    _, run = found
    if run.get("head_sha") != sha or run.get("conclusion") not in FAILED_CONCLUSIONS:
        return None
    return found


def wants_merge_checks(env: Envelope, merged: Pull | None, config: Config) -> bool:
    """Whether the effects layer should read the checks on a merge commit before deciding:
    a red result on it, and required checks that name what counts."""
    if merged is None or merged.merged_sha is None or not config.review.required_checks:
        return False
    return _red_run_on(env, merged.merged_sha) is not None


def red_required_checks(config: Config, sha: str, checks: Sequence[CheckResult]) -> tuple[str, ...]:
    """The required checks that completed red on `sha`, in the configuration's order."""
    red = {
        c.name
        for c in checks
        if c.head_sha == sha and c.status == "completed" and c.conclusion in FAILED_CONCLUSIONS
    }
    return tuple(name for name in config.review.required_checks if name in red)


@router.on("workflow_run", "completed")
@router.on("check_suite", "completed")
def on_red_merge(env: Envelope, state: RepoState, config: Config) -> Sequence[Action]:
    """CI failed on the commit of a merge Nightshift made on the default branch: revert it
    (`review.revert_on_red`) and escalate at once, once per merge commit.

    Which failures count: with `review.required_checks`, a required check (check run or
    commit status, read from GitHub before deciding) completed red on the merge commit, as
    gate 2 counts them; a workflow's name is not a check's name, so the delivery only says
    when to look. Without required checks, any red workflow run or (other app's) check suite
    on the merge commit counts.
    """
    merged = state.merged_pull
    if merged is None or merged.merged_sha is None or env.repository is None:
        return []
    sha = merged.merged_sha
    found = _red_run_on(env, sha)
    if found is None:
        return []
    kind, run = found
    if kind == "check_suite" and (
        _is_actions(run) or (_app_id(run) is not None and _app_id(run) == state.app_id)
    ):
        return []  # Actions' suites arrive as workflow_run too; ours are no CI
    branch = default_branch(env)
    ran_on = run.get("head_branch")
    if branch is None or (isinstance(ran_on, str) and ran_on != branch):
        return []  # a run of that commit on another branch says nothing about the default
    if config.review.required_checks:
        failed = red_required_checks(config, sha, state.merge_checks)
    else:
        failed = (_run_name(kind, run),)
    if not failed:
        return []
    url = run.get("html_url")
    link = f" ({url})" if isinstance(url, str) and url.startswith("https://") else ""
    return red_merge(env.repository, merged, sha, branch, failed, link, config)


def red_merge(
    repo: str,
    merged: Pull,
    sha: str,
    branch: str,
    failed: Sequence[str],
    link: str,
    config: Config,
) -> list[Action]:
    names = ", ".join(gates.plain(name, 100) for name in failed)
    key = f"red-merge:{repo}@{sha}"
    where = gates.plain(branch, 100)
    why = f"ci: {names} failed on {where} at {sha[:7]}, the merge of #{merged.number}"
    reverting = config.review.revert_on_red
    # an urgent issue unless the repository wants issues for security escalations only:
    # then the matter waits for the report, saying what was done meanwhile
    issue = config.escalation == "all"
    meanwhile = (
        RED_MERGE_MEANWHILE_REVERT.format(revert=revert.branch_for(merged.number))
        if reverting
        else RED_MERGE_MEANWHILE_NONE
    )
    actions: list[Action] = [
        RecordEscalation(
            repo=repo,
            number=merged.task,
            level="immediate" if issue else "deferred",
            category="red-merge",
            summary=f"#{merged.number}: {names} failed on {where} after the merge ({sha[:7]})",
            key=key,
            meanwhile=None if issue else meanwhile,
            reversible=None if issue else True,
            reason=why if issue else f"{why} (escalation: security-only)",
        )
    ]
    action = (RED_MERGE_REVERTING if reverting else RED_MERGE_NOT_REVERTING).format(
        revert=gates.code(revert.branch_for(merged.number)),
        branch=gates.code(branch),
        pull=merged.number,
    )
    if issue:
        actions.append(
            OpenIssue(
                repo=repo,
                title=RED_MERGE_TITLE.format(branch=where, pull=merged.number, checks=names),
                body=RED_MERGE_BODY.format(
                    checks=", ".join(gates.code(name, 100) for name in failed),
                    branch=gates.code(branch),
                    sha=sha[:7],
                    pull=merged.number,
                    task=merged.task,
                    link=link,
                    action=action,
                    mentions=" ".join(f"@{login}" for login in config.maintainers),
                ).strip(),
                labels=(URGENT_LABEL,),
                key=key,
                reason=why,
            )
        )
    if reverting:
        actions.append(
            RevertMerge(
                repo=repo,
                number=merged.number,
                task=merged.task,
                merge_sha=sha,
                branch=branch,
                checks=tuple(failed),
                key=f"revert:{repo}@{sha}",
                issue_key=key if issue else None,
                mentions=tuple(config.maintainers),
                reason=why,
            )
        )
    return actions


def _run_name(kind: str, run: dict[str, Any]) -> str:
    """A workflow run's name, or a check suite's app's name."""
    return str(run.get("name") or (run.get("app") or {}).get("name") or kind)


def _app_id(suite: dict[str, Any]) -> int | None:
    app = suite.get("app")
    value = app.get("id") if isinstance(app, dict) else None
    return value if isinstance(value, int) else None


def _is_actions(suite: dict[str, Any]) -> bool:
    app = suite.get("app")
    return isinstance(app, dict) and app.get("slug") == "github-actions"


# -- the review workflow's decisions --------------------------------------------------------

CHECK_PREFIX = "Nightshift / "
SPEC_CHECK = CHECK_PREFIX + "spec"
QUALITY_CHECK = CHECK_PREFIX + "quality"
CHECK_NAMES = {"spec": SPEC_CHECK, "quality": QUALITY_CHECK}
IN_PROGRESS_OUTPUT = {
    "spec": {"title": "Checking the change against the task", "summary": "Gate 1 is running."},
    "quality": {
        "title": "Waiting for checks and running the commands",
        "summary": "Gate 2 runs after gate 1.",
    },
}
APPROVED = "Both gates passed on {sha}: merging."
MERGED = "Merged #{pull} ({sha}) after both gates passed: this task is done."
CONFLICT = (
    "{mention}#{pull} conflicts with `{base}`. Nightshift never resolves conflicts itself: "
    "please rebase onto `{base}` and push; the review starts again on the new head."
)
GAVE_UP = (
    "{mention}#{pull} could not be merged: {reason}. A maintainer may merge it by hand, "
    "or push again to start a new review."
)
WAITING_COMMENT = (
    "#{pull} comes from {who}: its code does not run until someone with write access "
    "comments `/nightshift ok-to-test` (gate 1 ran; gate 2 waits)."
)
ESCALATION_PLACES = 20  # places listed in one urgent issue
REVIEW_BODY_CHARS = 60_000  # GitHub takes 65,536; room for the mention and the marker
REVIEW_FAILED = "Nightshift could not finish the review"
PASSED_FOR_HUMAN = (
    "Both gates passed on {sha}. #{pull} is by @{author}{who}: "
    "Nightshift merges only its agents' pull requests, so a maintainer decides on this one."
)
NOT_THE_AGENT = ", not the task's agent"
FROM_A_FORK = " and comes from a fork"
AGENTS_FORK = " (its agent, but from a fork)"
SECURITY_TITLE = "Security: {what} in #{pull}"
SECURITY_BODY = (
    "**Risk:** {what} at {where} in #{pull} (task #{task}).\n"
    "**Action required:** review #{pull} before anything else; Nightshift will not merge it.\n"
    "**Blocks work:** task #{task} until this is resolved.\n\n{mentions}"
)


class PullFacts(BaseModel):
    """What the review workflow knows about the pull request it reviews."""

    model_config = ConfigDict(frozen=True)

    number: int
    task: int
    head_sha: str
    head_ref: str
    base_ref: str
    author: str
    fork: bool
    agent: str | None = None
    ok_to_test_sha: str | None = None
    attempt: str = "push"  # which review of this head (the workflow id's last part)


def may_merge(pull: PullFacts) -> bool:
    """Nightshift merges only what the task's own agent pushed to this repository; a
    passing PR by anyone else (or an agent's from a fork) waits for a maintainer.
    `/nightshift ok-to-test` lets code run; it never makes a stranger's PR mergeable."""
    own = pull.agent is not None and pull.author.lower() == pull.agent.lower()
    return own and not pull.fork


def may_run_code(pull: PullFacts) -> bool:
    """PR code runs when the task's own agent pushed it to this repository, or when a user
    with write access said `/nightshift ok-to-test` for this very head (Prow's rule)."""
    if pull.ok_to_test_sha == pull.head_sha:
        return True
    own = pull.agent is not None and pull.author.lower() == pull.agent.lower()
    return own and not pull.fork


def _check_key(repo: str, head: str, gate: str, attempt: str) -> str:
    # one check run per review attempt: GitHub appends annotations on every update, so a
    # second review of the same head gets runs of its own instead of piling onto the first
    return f"check:{repo}@{head}:{gate}:{attempt}"


def review_started(repo: str, head: str, attempt: str = "push") -> list[Action]:
    return [
        PublishCheck(
            repo=repo,
            head_sha=head,
            name=CHECK_NAMES[gate],
            key=_check_key(repo, head, gate, attempt),
            status="in_progress",
            output=IN_PROGRESS_OUTPUT[gate],
            reason=f"review: {gate} gate started",
        )
        for gate in ("spec", "quality")
    ]


def publish(repo: str, head: str, result: GateResult, attempt: str = "push") -> PublishCheck:
    return PublishCheck(
        repo=repo,
        head_sha=head,
        name=CHECK_NAMES[result.gate],
        key=_check_key(repo, head, result.gate, attempt),
        status="completed",
        conclusion=gates.conclusion(result),
        output=gates.check_run_output(result),
        reason=f"review: {result.gate} gate: {result.outcome}",
    )


def record_tests(
    repo: str, pull: PullFacts, quality: GateResult, config: Config
) -> list[RecordTests]:
    """Keep the test counts gate 2 read for the morning report, once PR code ran with a
    test report configured; a report this head did not give clears an older head's."""
    if config.review.tests_report is None or quality.outcome == "waiting":
        return []
    tests = quality.tests
    return [
        RecordTests(
            repo=repo,
            number=pull.number,
            head_sha=pull.head_sha,
            passed=tests.passed if tests is not None else None,
            failed=tests.failed if tests is not None else None,
            reason=f"review: the test report of #{pull.number} at {pull.head_sha[:7]}",
        )
    ]


def checks_pending(config: Config, head: str, checks: Sequence[CheckResult]) -> bool:
    """A required check has not completed on the head yet: worth looking again later."""
    done = {c.name for c in checks if c.head_sha == head and c.status == "completed"}
    return any(name not in done for name in config.review.required_checks)


def escalate(repo: str, pull: PullFacts, verdict: Verdict, config: Config) -> list[Action]:
    """The gates' security findings: one urgent issue per pull request and kind of risk,
    listing every place (a PR full of fake keys must not flood the maintainers)."""
    by_kind: dict[str, list[gates.Escalation]] = {}
    for escalation in verdict.escalations:
        by_kind.setdefault(escalation.kind, []).append(escalation)
    actions: list[Action] = []
    mentions = " ".join(f"@{login}" for login in config.maintainers)
    for kind, found in by_kind.items():
        what = gates.plain(found[0].what, 100)
        places = sorted({e.where for e in found})
        listed = ", ".join(gates.code(place) for place in places[:ESCALATION_PLACES])
        if len(places) > ESCALATION_PLACES:
            listed += f" and {len(places) - ESCALATION_PLACES} more"
        key = f"security:{repo}#{pull.number}:{kind}"
        why = f"review: security escalation ({kind}) in #{pull.number}"
        actions.append(
            RecordEscalation(
                repo=repo,
                number=pull.task,
                level="immediate",
                category="security",
                summary=f"{what} at {listed} in #{pull.number}",
                key=key,
                reason=why,
            )
        )
        actions.append(  # security is immediate under either escalation policy
            OpenIssue(
                repo=repo,
                title=SECURITY_TITLE.format(what=what, pull=pull.number),
                body=SECURITY_BODY.format(
                    what=what, where=listed, pull=pull.number, task=pull.task, mentions=mentions
                ).strip(),
                labels=(URGENT_LABEL,),
                key=key,
                reason=why,
            )
        )
    return actions


def _task_move(repo: str, task: Task | None, event: Event, why: str) -> list[Action]:
    if task is None:
        return []
    step = move(task, event)
    return [as_action(repo, task.number, step, event, why)] if step is not None else []


def conclude(
    repo: str,
    pull: PullFacts,
    verdict: Verdict,
    spec: GateResult,
    quality: GateResult,
    config: Config,
    task: Task | None = None,
) -> list[Action]:
    """Fix instructions, a block, or a wait for ok-to-test, as actions."""
    why = f"review: {verdict.reason}"
    mention = f"@{pull.agent} " if pull.agent else ""
    if verdict.kind == "wait":
        who = "a fork" if pull.fork else f"@{pull.author}, not the task's agent"
        return [
            Comment(
                repo=repo,
                number=pull.number,
                body=WAITING_COMMENT.format(pull=pull.number, who=who),
                key=f"ok-to-test-wanted:{repo}#{pull.number}@{pull.head_sha}",
                reason=why,
            )
        ]
    limit = config.limits.max_fix_rounds
    round_ = verdict.round or limit
    # fitted in whole pieces (a cut inside a code span could make a quoted @-mention live)
    body = mention + gates.fix_instructions(
        pull.task, [spec, quality], round_, limit, limit=REVIEW_BODY_CHARS - len(mention)
    )
    review = SubmitReview(
        repo=repo,
        number=pull.number,
        commit_id=pull.head_sha,
        event="REQUEST_CHANGES",
        body=body,
        key=f"review:{repo}#{pull.number}@{pull.head_sha}:{pull.attempt}:changes",
        reason=why,
    )
    if verdict.kind == "fix":
        return [
            *_task_move(repo, task, Event.REQUEST_CHANGES, why),
            CountFixRound(repo=repo, number=pull.number, head_sha=pull.head_sha, reason=why),
            review,
            *_fix_to_agent(repo, pull, task, body, why),
        ]
    # blocked: the rounds are used up; a person decides (a deferred escalation)
    summary = f"#{pull.number}: {verdict.reason}"
    key = f"fix-rounds:{repo}#{pull.number}"
    return block(repo, pull.number, pull.task, task, why, review, "fix-rounds", summary, key)


def _fix_to_agent(
    repo: str, pull: PullFacts, task: Task | None, body: str, why: str
) -> list[Action]:
    """The fix instructions through the agent's own transport too (a webhook or AI Maestro
    agent may not read GitHub reviews); only to the task's agent, for its own PR."""
    if task is None or task.agent_name is None or not may_merge(pull):
        return []
    message = messages.fix_request(
        repo=repo, number=pull.task, pr=pull.number, agent=task.agent_name, instructions=body
    )
    return [
        SendToAgent(
            repo=repo,
            number=pull.task,
            agent=task.agent_name,
            message=message.model_dump(mode="json"),
            key=f"fix:{repo}#{pull.number}@{pull.head_sha}:{pull.attempt}",
            reason=why,
        )
    ]


def approve(repo: str, pull: PullFacts) -> list[Action]:
    return [
        SubmitReview(
            repo=repo,
            number=pull.number,
            commit_id=pull.head_sha,
            event="APPROVE",
            body=APPROVED.format(sha=pull.head_sha[:7]),
            key=f"review:{repo}#{pull.number}@{pull.head_sha}:{pull.attempt}:approve",
            reason="review: both gates passed",
        )
    ]


def merge(repo: str, pull: PullFacts, config: Config) -> Merge:
    return Merge(
        repo=repo,
        number=pull.number,
        sha=pull.head_sha,
        method=config.review.merge_method,
        reason="review: both gates passed and GitHub says it can merge",
    )


def merged(repo: str, pull: PullFacts, task: Task | None = None) -> list[Action]:
    why = f"review: #{pull.number} merged"
    actions: list[Action] = []
    if task is not None:
        step = path(task, Event.MERGE, Event.FINISH)
        if step is not None:
            actions.append(as_action(repo, task.number, step, Event.FINISH, why))
    actions.append(
        Comment(
            repo=repo,
            number=pull.task,
            body=MERGED.format(pull=pull.number, sha=pull.head_sha[:7]),
            key=f"merged:{repo}#{pull.number}",
            reason=why,
        )
    )
    # the agent has room for its next task, and tasks that waited for this one may be ready
    actions.append(Dispatch(repo=repo, cause=f"merged:{pull.number}", reason=why))
    return actions


def cannot_merge(
    repo: str, pull: PullFacts, decision: MergeDecision, config: Config, task: Task | None = None
) -> list[Action]:
    """A conflict (never resolved by Nightshift) or GitHub not letting it merge: blocked."""
    why = f"review: {decision.reason}"
    mention = f"@{pull.agent} " if pull.agent else ""
    if decision.kind == "conflict":
        text = CONFLICT.format(mention=mention, pull=pull.number, base=pull.base_ref)
        category = "conflict"
    else:
        text = GAVE_UP.format(mention=mention, pull=pull.number, reason=decision.reason)
        category = "merge"
    key = f"{category}:{repo}#{pull.number}@{pull.head_sha}"
    notice = Comment(repo=repo, number=pull.number, body=text, key=key, reason=why)
    summary = f"#{pull.number}: {decision.reason}"
    return block(repo, pull.number, pull.task, task, why, notice, category, summary, key)


def passed_for_human(repo: str, pull: PullFacts) -> list[Action]:
    """Both gates passed on a PR Nightshift may not merge: say so once, merge nothing."""
    if pull.agent is not None and pull.author.lower() == pull.agent.lower():
        who = AGENTS_FORK  # the agent itself, from a fork
    else:
        who = NOT_THE_AGENT + (FROM_A_FORK if pull.fork else "")
    return [
        Comment(
            repo=repo,
            number=pull.number,
            body=PASSED_FOR_HUMAN.format(
                sha=pull.head_sha[:7], pull=pull.number, author=pull.author, who=who
            ),
            key=f"passed-for-human:{repo}#{pull.number}@{pull.head_sha}",
            reason="review: both gates passed; not the agent's PR, so not merged",
        )
    ]


def review_failed(
    repo: str, number: int, task: int, head: str, reason: str, attempt: str = "push"
) -> list[Action]:
    """A review that could not finish: both check runs say so (never left spinning), and a
    person hears of it in the report."""
    why = f"review: could not finish: {gates.plain(reason, 200)}"
    output = {
        "title": REVIEW_FAILED,
        "summary": f"{REVIEW_FAILED}: {gates.plain(reason, 500)}. Push again to retry.",
    }
    return [
        *(
            PublishCheck(
                repo=repo,
                head_sha=head,
                name=CHECK_NAMES[gate],
                key=_check_key(repo, head, gate, attempt),  # the runs this attempt started
                status="completed",
                conclusion="failure",
                output=output,
                reason=why,
            )
            for gate in ("spec", "quality")
        ),
        RecordEscalation(
            repo=repo,
            number=task,
            level="deferred",
            category="review-error",
            summary=f"#{number}: the review of {head[:7]} could not finish",
            key=f"review-error:{repo}#{number}@{head}",
            meanwhile=(
                "both check runs of the head say the review failed; nothing was merged; "
                "a new push is reviewed again"
            ),
            reversible=True,
            reason=why,
        ),
    ]


def merge_refusal(task: Task | None, paused: bool) -> str | None:
    """Why a reviewed PR must not be merged now (the task moved on since, or the repository
    was paused), or None."""
    if paused:
        return "the repository is paused"
    if task is None or task.state is not TaskState.IN_REVIEW:
        return f"the task is no longer in review ({task.state.value if task else 'gone'})"
    return None


def rounds_before(stored: Pull | None, head: str) -> int:
    """Fix rounds sent before this head's review: a second review of the same head (after
    `/nightshift ok-to-test`) must not count the round its first review already sent."""
    if stored is None:
        return 0
    if stored.fix_round_sha == head:
        return max(0, stored.fix_rounds - 1)
    return stored.fix_rounds
