"""Actions: what the core decided should happen, as frozen data.

Only the executor (app.effects.executor) turns an action into a request. Every action says
why it exists (`reason`), which is what the audit log records next to it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class _Action(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    repo: str
    reason: str

    def describe(self) -> str:
        raise NotImplementedError


class AddLabels(_Action):
    kind: Literal["add_labels"] = "add_labels"
    number: int
    labels: tuple[str, ...]

    def describe(self) -> str:
        return f"{self.repo}#{self.number}:+" + ",+".join(self.labels)


class RemoveLabel(_Action):
    kind: Literal["remove_label"] = "remove_label"
    number: int
    label: str

    def describe(self) -> str:
        return f"{self.repo}#{self.number}:-{self.label}"


class Comment(_Action):
    """A comment on an issue or pull request.

    `key` identifies the comment across retries: the executor writes it as a hidden marker
    so a step re-run after a crash finds the comment it already posted instead of posting
    it twice.
    """

    kind: Literal["comment"] = "comment"
    number: int
    body: str
    key: str

    def describe(self) -> str:
        first = self.body.strip().splitlines()[0] if self.body.strip() else ""
        return f"{self.repo}#{self.number}:comment:{first}"


class RememberConfigError(_Action):
    """Record in the store that the maintainers were told about this configuration problem."""

    kind: Literal["remember_config_error"] = "remember_config_error"
    problem: str

    def describe(self) -> str:
        return f"{self.repo}:config-error-reported"


class ForgetConfigError(_Action):
    """The configuration is valid again: clear the recorded problem."""

    kind: Literal["forget_config_error"] = "forget_config_error"

    def describe(self) -> str:
        return f"{self.repo}:config-error-cleared"


class Transition(_Action):
    """Move a task from one state to another (app/core/tasks.py has the table).

    Carried out as a compare-and-set on `from_state`: a step re-run after a crash finds the
    move made and does not make it twice. Listed before the GitHub actions it justifies.
    """

    kind: Literal["transition"] = "transition"
    number: int
    event: str
    from_state: str | None
    to_state: str
    previous: str | None = None  # the detours' return stack, comma-separated
    # assign: the agent it goes to (GitHub login and roster name); requeue: they are cleared
    agent: str | None = None
    agent_name: str | None = None
    # the task's assignment count the decision saw: the move happens only if it is unchanged
    # (a timer of an earlier assignment must not take the task from a later agent)
    expect_assignment: int | None = None
    exclude: str | None = None  # requeue: this agent does not get the task again

    def describe(self) -> str:
        to = f"{self.to_state}:{self.agent_name}" if self.agent_name else self.to_state
        return f"{self.repo}#{self.number}:{self.from_state or 'new'}->{to}"


class RecordTask(_Action):
    """Remember what scheduling and the assignment message need from the issue."""

    kind: Literal["record_task"] = "record_task"
    number: int
    title: str
    body: str | None
    labels: tuple[str, ...]
    depends_on: tuple[int, ...]
    created_at: float

    def describe(self) -> str:
        return f"{self.repo}#{self.number}:facts"


class RecordWaiting(_Action):
    """Remember why a task waits, as just told on the issue (so it is told once)."""

    kind: Literal["record_waiting"] = "record_waiting"
    number: int
    waiting: str | None

    def describe(self) -> str:
        return f"{self.repo}#{self.number}:waiting"


class RecordLevel(_Action):
    """Remember the escalation level a block reached (1 peer or backup, 2 lead, 3 immediate),
    so each level acts once. `since` is the block's start the decision saw: a new block of
    the same task starts again from 0."""

    kind: Literal["record_level"] = "record_level"
    number: int
    level: int
    since: float

    def describe(self) -> str:
        return f"{self.repo}#{self.number}:level:{self.level}"


class MarkAgent(_Action):
    """Record what Nightshift concluded about an agent: offline (heartbeats stopped) or
    online again; `repo` is the repository whose pass concluded it."""

    kind: Literal["mark_agent"] = "mark_agent"
    agent: str  # roster name
    offline: bool

    def describe(self) -> str:
        return f"agent:{self.agent}:{'offline' if self.offline else 'online'}"


class ResolveEscalation(_Action):
    """An escalation is handled (its urgent issue closed, or `/nightshift resolve`)."""

    kind: Literal["resolve_escalation"] = "resolve_escalation"
    key: str
    by: str

    def describe(self) -> str:
        return f"{self.repo}:escalation-resolved:{self.key}"


class PauseRepository(_Action):
    """Stop (or, with `resume`, restart) every automatic action in the repository."""

    kind: Literal["pause_repository"] = "pause_repository"
    by: str
    resume: bool = False

    def describe(self) -> str:
        return f"{self.repo}:{'resume' if self.resume else 'pause'} by {self.by}"


class ClearExclusions(_Action):
    """Any agent may take the task again (`/nightshift retry` on a queued task)."""

    kind: Literal["clear_exclusions"] = "clear_exclusions"
    number: int

    def describe(self) -> str:
        return f"{self.repo}#{self.number}:exclusions-cleared"


class PublishReport(_Action):
    """Publish the repository's report now (`/nightshift report`), once per `run_key`."""

    kind: Literal["publish_report"] = "publish_report"
    run_key: str

    def describe(self) -> str:
        return f"{self.repo}:report:{self.run_key}"


class SendToAgent(_Action):
    """A message to an agent through its roster transport (github, webhook, maestro).

    `message` is app.core.assignment's Message as JSON; `key` makes it one delivery across
    retries (the webhook transport sends it as the delivery id)."""

    kind: Literal["send_to_agent"] = "send_to_agent"
    number: int
    agent: str  # roster name
    message: dict[str, Any]
    key: str

    def describe(self) -> str:
        kind = self.message.get("content", {}).get("type", "message")
        return f"{self.repo}#{self.number}:to-agent:{self.agent}:{kind}"


class MoveCard(_Action):
    """Put the issue's card in the project column for its task state (config.project)."""

    kind: Literal["move_card"] = "move_card"
    number: int
    column: str

    def describe(self) -> str:
        return f"{self.repo}#{self.number}:card->{self.column}"


class Dispatch(_Action):
    """Run the repository's dispatch pass: acknowledgements, failovers, assignments.

    Passes are level-triggered (each looks at the whole repository), so `cause` only names
    the workflow; a pass already waiting in the queue makes a new one unnecessary."""

    kind: Literal["dispatch"] = "dispatch"
    cause: str
    delay_seconds: float = 0  # an acknowledgement deadline: the pass runs after it

    def describe(self) -> str:
        after = f" in {self.delay_seconds:.0f}s" if self.delay_seconds else ""
        return f"{self.repo}:dispatch{after}"


# -- the review ------------------------------------------------------------------------------


class StartReview(_Action):
    """Review a pull request's head: a durable review workflow on the review queue.

    `attempt` tells apart reviews of the same head (a first review, one after
    `/nightshift ok-to-test`, a retry): each is one workflow, started once.
    """

    kind: Literal["start_review"] = "start_review"
    number: int  # the pull request
    task: int  # the issue it works on
    head_sha: str
    attempt: str = "push"

    def describe(self) -> str:
        return f"{self.repo}#{self.number}:review@{self.head_sha[:7]}:{self.attempt}"


class AllowTests(_Action):
    """A user with write access said `/nightshift ok-to-test`: this head may run."""

    kind: Literal["allow_tests"] = "allow_tests"
    number: int
    head_sha: str
    by: str

    def describe(self) -> str:
        return f"{self.repo}#{self.number}:ok-to-test@{self.head_sha[:7]} by {self.by}"


class PublishCheck(_Action):
    """Create or update one of Nightshift's check runs on a commit.

    `key` names the check run across updates (the first publish creates it, later ones
    update the same run), so a re-run after a crash never creates a second one.
    """

    kind: Literal["publish_check"] = "publish_check"
    head_sha: str
    name: str
    key: str
    status: Literal["queued", "in_progress", "completed"]
    conclusion: str | None = None
    output: dict[str, Any] | None = None

    def describe(self) -> str:
        return f"{self.repo}@{self.head_sha[:7]}:check:{self.name}:{self.conclusion or self.status}"


class SubmitReview(_Action):
    """A pull-request review on the reviewed commit: approve, or request changes."""

    kind: Literal["submit_review"] = "submit_review"
    number: int
    commit_id: str
    event: Literal["APPROVE", "REQUEST_CHANGES", "COMMENT"]
    body: str
    key: str

    def describe(self) -> str:
        return f"{self.repo}#{self.number}:review:{self.event}"


class Merge(_Action):
    """Merge the pull request only if its head is still `sha` (GitHub refuses otherwise)."""

    kind: Literal["merge"] = "merge"
    number: int
    sha: str
    method: Literal["merge", "squash", "rebase"]
    title: str | None = None

    def describe(self) -> str:
        return f"{self.repo}#{self.number}:merge@{self.sha[:7]}:{self.method}"


class RerunFailedJobs(_Action):
    """Re-run the failed jobs of a GitHub Actions workflow run."""

    kind: Literal["rerun_failed_jobs"] = "rerun_failed_jobs"
    run_id: int
    head_sha: str
    key: str | None = None  # once per key: a redelivered failure re-runs nothing more

    def describe(self) -> str:
        return f"{self.repo}:rerun-failed-jobs:{self.run_id}"


class RerequestCheckSuite(_Action):
    """Ask a (non-Actions) CI to run a check suite again."""

    kind: Literal["rerequest_check_suite"] = "rerequest_check_suite"
    suite_id: int
    head_sha: str
    key: str | None = None  # once per key: a redelivered failure re-runs nothing more

    def describe(self) -> str:
        return f"{self.repo}:rerequest-check-suite:{self.suite_id}"


class OpenIssue(_Action):
    """A new issue (an urgent escalation), opened once per `key`."""

    kind: Literal["open_issue"] = "open_issue"
    title: str
    body: str
    labels: tuple[str, ...] = ()
    key: str

    def describe(self) -> str:
        return f"{self.repo}:new-issue:{self.title}"


class RecordPull(_Action):
    """Remember a pull request Nightshift reviews: its task, head, author and fork."""

    kind: Literal["record_pull"] = "record_pull"
    number: int
    task: int
    head_sha: str
    author: str
    fork: bool

    def describe(self) -> str:
        return f"{self.repo}#{self.number}:tracks #{self.task}@{self.head_sha[:7]}"


class CountFixRound(_Action):
    """One more round of fix instructions for the pull request (once per reviewed head)."""

    kind: Literal["count_fix_round"] = "count_fix_round"
    number: int
    head_sha: str

    def describe(self) -> str:
        return f"{self.repo}#{self.number}:fix-round@{self.head_sha[:7]}"


class RecordTests(_Action):
    """The tests passed and failed that the review of a head read from its test report
    (`review.tests_report`), for the morning report. None: the report was missing or
    unreadable, so the counts of an earlier head are not shown as this one's."""

    kind: Literal["record_tests"] = "record_tests"
    number: int
    head_sha: str
    passed: int | None
    failed: int | None

    def describe(self) -> str:
        return f"{self.repo}#{self.number}:tests@{self.head_sha[:7]}:{self.passed}/{self.failed}"


class CountCiRetry(_Action):
    """One more CI re-run for a head commit."""

    kind: Literal["count_ci_retry"] = "count_ci_retry"
    head_sha: str
    run: str  # the run or suite retried, so a redelivered event is not counted twice

    def describe(self) -> str:
        return f"{self.repo}@{self.head_sha[:7]}:ci-retry:{self.run}"


class RecordEscalation(_Action):
    """An escalation: immediate ones also open an issue; deferred ones wait for the report."""

    kind: Literal["record_escalation"] = "record_escalation"
    number: int | None
    level: Literal["immediate", "deferred"]
    category: str  # security, conflict, fix-rounds, ci, ...
    summary: str
    key: str
    # deferred ones, for the report's decisions: what was done while the decision waits,
    # and whether that can be undone
    meanwhile: str | None = None
    reversible: bool | None = None

    def describe(self) -> str:
        return f"{self.repo}#{self.number or '-'}:escalation:{self.level}:{self.category}"


class RevertMerge(_Action):
    """Revert a merge Nightshift made, after checks went red on the default branch.

    The revert of `merge_sha` is computed onto the branch's current head and created on
    GitHub as its own branch (`nightshift/revert-N`) with a pull request for a human to
    merge; never pushed to `branch` itself. `key` makes it once per merge commit, also when
    a step runs again after a crash. `issue_key` names the urgent issue opened about it (if
    any): the revert pull request closes it, and a revert that cannot be made is reported
    there.
    """

    kind: Literal["revert_merge"] = "revert_merge"
    number: int  # the merged pull request
    task: int
    merge_sha: str
    branch: str  # the default branch the merge landed on
    checks: tuple[str, ...]  # what failed on the merge commit
    key: str
    issue_key: str | None = None
    mentions: tuple[str, ...] = ()  # logins told when the revert cannot be made

    def describe(self) -> str:
        return f"{self.repo}#{self.number}:revert@{self.merge_sha[:7]}->{self.branch}"


GitHubAction = (
    AddLabels
    | RemoveLabel
    | Comment
    | PublishCheck
    | SubmitReview
    | Merge
    | RerunFailedJobs
    | RerequestCheckSuite
    | OpenIssue
)
StoreAction = (
    RememberConfigError
    | ForgetConfigError
    | Transition
    | AllowTests
    | RecordPull
    | CountFixRound
    | RecordTests
    | CountCiRetry
    | RecordEscalation
    | RecordTask
    | RecordWaiting
    | MarkAgent
    | PauseRepository
    | ClearExclusions
    | ResolveEscalation
    | RecordLevel
)
EngineAction = StartReview | Dispatch | PublishReport
AgentAction = SendToAgent
ProjectAction = MoveCard
GitAction = RevertMerge  # git on the mirror, then GitHub (app/effects/revert.py)
Action = Annotated[
    GitHubAction | StoreAction | EngineAction | GitAction | AgentAction | ProjectAction,
    Field(discriminator="kind"),
]
ACTION_ADAPTER: TypeAdapter[Action] = TypeAdapter(Action)
ACTIONS_ADAPTER: TypeAdapter[list[Action]] = TypeAdapter(list[Action])
