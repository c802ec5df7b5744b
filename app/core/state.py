"""What the core knows about a repository when it decides: read by the effects layer."""

from __future__ import annotations

from dataclasses import dataclass

from app.core.review_facts import CheckResult, LogExcerpt
from app.core.tasks import Task


@dataclass(frozen=True)
class Pull:
    """A pull request Nightshift reviews, as the store remembers it."""

    repo: str
    number: int
    task: int
    head_sha: str
    author: str
    fork: bool
    fix_rounds: int = 0
    fix_round_sha: str | None = None  # the head whose review counted the latest round
    ok_to_test_sha: str | None = None
    merged_sha: str | None = None


@dataclass(frozen=True)
class Escalation:
    """An open escalation, as the store remembers it."""

    key: str
    level: str
    category: str
    task: int | None  # the task it is about, if any
    task_state: str | None = None  # that task's state now
    task_previous: tuple[str, ...] = ()


@dataclass(frozen=True)
class RepoState:
    """The state the rules may consult; gathered before deciding, never fetched by a rule."""

    paused: bool = False
    # what is wrong with .github/nightshift.yml now ("file: key: problem"), if anything
    config_error: str | None = None
    # the problem a comment was already posted about, so it is posted once
    reported_config_error: str | None = None
    # the sender's permission on the repository (admin, maintain, write, triage, read, none),
    # looked up through the API when the delivery carries a command, else None
    sender_permission: str | None = None
    # the task of the issue the delivery is about, if there is one
    task: Task | None = None
    # the pull request the delivery is about (a PR event, a comment on a PR, a CI result
    # for a PR's head), when Nightshift tracks it
    pull: Pull | None = None
    # CI re-runs made so far for the head commit the delivery is about
    ci_retries: int = 0
    # the failed jobs' log excerpts of that CI result, read only when its re-runs are used
    # up (the pull request is blocked and the agent told why: review.ci_log_wanted)
    ci_log: tuple[LogExcerpt, ...] = ()
    # the pull request Nightshift merged as the commit a CI result is about (its merged_sha)
    merged_pull: Pull | None = None
    # the checks and statuses on that merge commit, read only when the result is red and
    # `review.required_checks` names the checks that count
    merge_checks: tuple[CheckResult, ...] = ()
    # this GitHub App's id, to tell its own check suites from CI's
    app_id: int | None = None
    # the open escalation whose urgent issue the delivery is about (its close, a comment)
    escalation: Escalation | None = None
    # the native dependencies (blocked-by issues and sub-issues), read from GitHub
    # when an issue is taken in or edited; None when they were not read
    native_dependencies: frozenset[int] | None = None


EMPTY_STATE = RepoState()


@dataclass(frozen=True)
class AgentStatus:
    """What Nightshift last heard from (or concluded about) an agent, by roster name."""

    name: str
    last_heartbeat: float | None = None
    task: str | None = None  # the task id its latest heartbeat named
    offline_since: float | None = None  # marked offline by an earlier pass
    unreachable_since: float | None = None  # its transport failed


@dataclass(frozen=True)
class TaskFacts:
    """A non-final task of the repository, with what scheduling needs."""

    task: Task
    title: str = ""
    body: str | None = None
    labels: tuple[str, ...] = ()
    depends_on: frozenset[int] = frozenset()
    created_at: float = 0.0
    assigned_at: float | None = None
    excluded: frozenset[str] = frozenset()
    waiting: str | None = None  # what the issue was last told about why it waits
    state_since: float | None = None  # when it entered its state
    level: int = 0  # the escalation level its block reached (0 none .. 3 immediate)
    blocked_why: str | None = None  # blocked: the recorded reason of that move
