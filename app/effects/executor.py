"""The executor: runs each decided action through the GitHub port, and audits it.

In dry-run (or with no App credentials) nothing is sent: the exact request is recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from app.core import revert as revert_texts
from app.core.actions import (
    Action,
    AllowTests,
    ClearExclusions,
    Comment,
    CountCiRetry,
    CountFixRound,
    Dispatch,
    ForgetConfigError,
    MarkAgent,
    Merge,
    MoveCard,
    OpenIssue,
    PauseRepository,
    PublishCheck,
    PublishReport,
    RecordEscalation,
    RecordLevel,
    RecordPull,
    RecordTask,
    RecordTests,
    RecordWaiting,
    RememberConfigError,
    RemoveLabel,
    RerequestCheckSuite,
    RerunFailedJobs,
    ResolveEscalation,
    RevertMerge,
    SendToAgent,
    StartReview,
    SubmitReview,
    Transition,
)
from app.effects.git import GitError
from app.effects.github import (
    GitHubError,
    GitHubPort,
    GitHubRequest,
    find_marked,
    request_for,
    update_check_run,
)
from app.effects.revert import NotReverted, RevertOutcome
from app.effects.store import AuditEntry, Store

# refused: GitHub would not do it now (a merge of a moved head, of a conflicting PR)
Outcome = Literal["sent", "recorded", "skipped", "failed", "conflict", "refused"]

StoreOnly = (
    AllowTests
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


class ReviewStarter(Protocol):
    """Starts the durable review of a pull request's head (the engine implements it)."""

    def start_review(self, installation_id: int, action: StartReview) -> str: ...


class Reverter(Protocol):
    """Opens the revert pull request of a red merge (app.effects.revert implements it);
    `closes`: the urgent issue the revert closes when merged."""

    def revert(
        self, installation_id: int, action: RevertMerge, closes: int | None
    ) -> RevertOutcome: ...


class Dispatcher(Protocol):
    """Runs a repository's dispatch pass (the engine implements it)."""

    def start_dispatch(self, installation_id: int, action: Dispatch) -> str: ...


class ReportStarter(Protocol):
    """Publishes a repository's report (the report engine implements it)."""

    def start_report(self, installation_id: int, repo: str, run_key: str, until: float) -> str: ...


class AgentMessenger(Protocol):
    """Delivers a message to an agent through its transport (app.effects.agents)."""

    def deliver(self, installation_id: int | None, action: SendToAgent) -> tuple[str, str]:
        """(outcome, detail): delivered, not_delivered, unreachable, unknown_agent."""
        ...

    def describe(self, action: SendToAgent) -> dict[str, Any]:
        """The request it would send, for dry-run."""
        ...


class CardMover(Protocol):
    """Moves a project card (app.effects.projects)."""

    def move_card(self, installation_id: int, action: MoveCard) -> tuple[str, str]:
        """(outcome, detail): moved, unchanged, no_project, missing."""
        ...


PROJECT_MISSING = (
    "Nightshift could not move this issue's card on the project: {detail}. "
    "Fix `project:` in `.github/nightshift.yml` (or the project); until then cards stay "
    "where they are, and this is said once."
)
NO_CREDENTIALS = "no GitHub App credentials are configured: recorded instead of sent"
DRY_RUN = "dry-run: recorded instead of sent"


@dataclass(frozen=True)
class Context:
    delivery_id: str
    installation_id: int | None


class Executor:
    def __init__(self, store: Store, github: GitHubPort | None, *, dry_run: bool) -> None:
        self.store = store
        self.github = github
        self.dry_run = dry_run
        self.reviews: ReviewStarter | None = None  # bound by the runtime
        self.reverts: Reverter | None = None  # bound by the runtime
        self.dispatcher: Dispatcher | None = None  # bound by the runtime
        self.agents: AgentMessenger | None = None  # bound by the runtime
        self.cards: CardMover | None = None  # bound by the runtime
        self.reports: ReportStarter | None = None  # bound by the runtime

    def execute(self, ctx: Context, action: Action) -> Outcome:
        if isinstance(action, RememberConfigError | ForgetConfigError):
            return self._remember(ctx, action)
        if isinstance(action, Transition):
            return self._transition(ctx, action)
        if isinstance(action, StoreOnly):
            return self._store_only(ctx, action)
        if isinstance(action, StartReview):
            reviews = self.reviews
            return self._start(
                ctx, action, (lambda i: reviews.start_review(i, action)) if reviews else None
            )
        if isinstance(action, RevertMerge):
            return self._revert(ctx, action)
        if isinstance(action, Dispatch):
            dispatcher = self.dispatcher
            return self._start(
                ctx,
                action,
                (lambda i: dispatcher.start_dispatch(i, action)) if dispatcher else None,
            )
        if isinstance(action, PublishReport):
            reports, now = self.reports, self.store.clock()
            return self._start(
                ctx,
                action,
                (lambda i: reports.start_report(i, action.repo, action.run_key, now))
                if reports
                else None,
            )
        if isinstance(action, SendToAgent):
            return self._send_to_agent(ctx, action)
        if isinstance(action, MoveCard):
            return self._move_card(ctx, action)
        request = request_for(action)
        entry = _entry_for(ctx, action, request)
        if self.dry_run or self.github is None:
            why = DRY_RUN if self.dry_run else NO_CREDENTIALS
            self.store.record(entry(kind="dry-run", why=f"{action.reason} ({why})"))
            return "recorded"
        if ctx.installation_id is None:
            self.store.record(entry(kind="error", why="the delivery names no installation"))
            return "failed"
        github = self.github
        if isinstance(action, Comment | SubmitReview | OpenIssue) and self._already_posted(
            github, ctx, action
        ):
            self.store.record(entry(kind="skipped", why="already posted by an earlier attempt"))
            return "skipped"
        if (
            isinstance(action, RerunFailedJobs | RerequestCheckSuite)
            and action.key is not None
            and not self.store.begin_effect(action.key)
            and self.store.effect_finished(action.key)
        ):
            self.store.record(entry(kind="skipped", why=f"{action.reason} (re-run already asked)"))
            return "skipped"
        if isinstance(action, PublishCheck):
            existing = self._check_run_id(github, ctx, action)
            if existing is not None:
                request = update_check_run(action, existing)
                entry = _entry_for(ctx, action, request)
        try:
            response = github.send(ctx.installation_id, request)
        except GitHubError as exc:
            if isinstance(action, RemoveLabel) and exc.status == 404:
                # already absent: a re-run after a crash, or someone removed it meanwhile
                self.store.record(entry(kind="skipped", why=f"{action.reason} (already absent)"))
                return "skipped"
            if isinstance(action, Merge) and exc.status in (405, 409, 422):
                # 405: not mergeable now, 409: the head moved; look again, never force
                # https://docs.github.com/en/rest/pulls/pulls#merge-a-pull-request
                self.store.record(entry(kind="refused", why=f"{action.reason}: GitHub: {exc}"))
                return "refused"
            self.store.record(entry(kind="error", why=f"{action.reason}: GitHub answered {exc}"))
            if exc.transient:
                raise  # the workflow step runs again, with back-off
            return "failed"
        if isinstance(action, Comment | SubmitReview | OpenIssue):
            self.store.finish_effect(action.key, _issue_number(action, response.data))
        if isinstance(action, RerunFailedJobs | RerequestCheckSuite) and action.key is not None:
            self.store.finish_effect(action.key)
        if isinstance(action, PublishCheck) and request.method == "POST":
            data = response.data if isinstance(response.data, dict) else {}
            self.store.finish_effect(action.key, str(data.get("id", "")))
        if isinstance(action, Merge):
            data = response.data if isinstance(response.data, dict) else {}
            self.store.mark_merged(action.repo, action.number, str(data.get("sha") or ""))
        self.store.record(entry(kind="action", why=action.reason, status=response.status))
        return "sent"

    def _store_only(self, ctx: Context, action: StoreOnly) -> Outcome:
        """Nightshift's own records about pull requests, CI retries and escalations."""
        if self.dry_run:
            return self._record_dry_run(ctx, action)
        done = True
        if isinstance(action, RecordPull):
            self.store.record_pull(
                action.repo, action.number, action.task, action.head_sha, action.author, action.fork
            )
        elif isinstance(action, AllowTests):
            self.store.allow_tests(action.repo, action.number, action.head_sha, action.by)
        elif isinstance(action, CountFixRound):
            done = self.store.count_fix_round(action.repo, action.number, action.head_sha)
        elif isinstance(action, RecordTests):
            done = self.store.record_tests(
                action.repo, action.number, action.head_sha, action.passed, action.failed
            )
        elif isinstance(action, CountCiRetry):
            done = self.store.count_ci_retry(action.repo, action.head_sha, action.run)
        elif isinstance(action, RecordTask):
            self.store.record_task(
                action.repo,
                action.number,
                title=action.title,
                body=action.body,
                labels=action.labels,
                depends_on=action.depends_on,
                created_at=action.created_at,
            )
        elif isinstance(action, RecordWaiting):
            self.store.record_waiting(action.repo, action.number, action.waiting)
        elif isinstance(action, MarkAgent):
            done = self.store.mark_agent(action.agent, offline=action.offline)
        elif isinstance(action, PauseRepository):
            if action.resume:
                done = self.store.resume(action.repo.lower())
            else:
                done = self.store.pause(action.repo, action.by)
        elif isinstance(action, ClearExclusions):
            self.store.clear_exclusions(action.repo, action.number)
        elif isinstance(action, ResolveEscalation):
            done = self.store.resolve_escalation(action.key)
        elif isinstance(action, RecordLevel):
            done = self.store.record_level(action.repo, action.number, action.level, action.since)
        else:
            done = self.store.record_escalation(
                action.key,
                action.repo,
                action.number,
                action.level,
                action.category,
                action.summary,
                meanwhile=action.meanwhile,
                reversible=action.reversible,
            )
        self._audit(
            ctx,
            action,
            "state" if done else "skipped",
            action.reason if done else f"{action.reason} (recorded already)",
        )
        return "sent" if done else "skipped"

    def _start(self, ctx: Context, action: Action, start: Callable[[int], str] | None) -> Outcome:
        """Start a durable workflow through an engine's port (a review, a dispatch pass, a
        report); recorded instead in dry-run or without the port."""
        if self.dry_run or start is None or ctx.installation_id is None:
            return self._record_dry_run(ctx, action)
        workflow_id = start(ctx.installation_id)
        self._audit(ctx, action, "action", action.reason, workflow=workflow_id)
        return "sent"

    def _send_to_agent(self, ctx: Context, action: SendToAgent) -> Outcome:
        """A message to an agent, once per key: a step re-run after a crash does not send it
        again once it was delivered (the webhook transport also sends the key, so an agent
        can drop a duplicate sent before the crash was recorded)."""
        if self.dry_run or self.agents is None:
            why = DRY_RUN if self.dry_run else "no agent transports are configured"
            request = self.agents.describe(action) if self.agents is not None else {}
            self._audit(ctx, action, "dry-run", f"{action.reason} ({why})", request=request)
            return "recorded"
        if not self.store.begin_effect(action.key) and self.store.effect_finished(action.key):
            self._audit(ctx, action, "skipped", f"{action.reason} (sent by an earlier attempt)")
            return "skipped"
        outcome, detail = self.agents.deliver(ctx.installation_id, action)
        if outcome == "delivered":
            self.store.finish_effect(action.key, outcome)
            if self.store.mark_agent(action.agent, unreachable=False):
                pass  # reachable again: the next pass counts it online
            self._audit(ctx, action, "action", f"{action.reason}: {detail}")
            return "sent"
        if outcome == "unreachable":
            self.store.mark_agent(action.agent, unreachable=True)
        self.store.finish_effect(action.key, outcome)
        self._audit(ctx, action, "error", f"{action.reason}: not delivered: {detail}")
        return "failed"

    def _move_card(self, ctx: Context, action: MoveCard) -> Outcome:
        if self.dry_run or self.cards is None or ctx.installation_id is None:
            return self._record_dry_run(ctx, action)
        outcome, detail = self.cards.move_card(ctx.installation_id, action)
        kind = {"moved": "action", "unchanged": "skipped", "no_project": "skipped"}.get(
            outcome, "error"
        )
        self._audit(ctx, action, kind, f"{action.reason}: {detail}")
        if outcome == "missing":
            self._report_missing_project(ctx, action, detail)
        return "sent" if outcome == "moved" else "skipped" if kind == "skipped" else "failed"

    def _report_missing_project(self, ctx: Context, action: MoveCard, detail: str) -> None:
        """One comment per repository and problem (not per card move), on the issue whose
        card could not move: the maintainers learn what to fix, and nothing loops."""
        assert ctx.installation_id is not None and self.github is not None
        key = f"project-missing:{action.repo}:{detail}"[:300]
        if not self.store.begin_effect(key) and self.store.effect_finished(key):
            return
        body = PROJECT_MISSING.format(detail=detail)
        comment = Comment(
            repo=action.repo, number=action.number, body=body, key=key, reason=action.reason
        )
        self.github.send(ctx.installation_id, request_for(comment))
        self.store.finish_effect(key)

    def _audit(self, ctx: Context, action: Action, kind: str, why: str, **detail: object) -> None:
        """One audit entry about an action this delivery or workflow carried out."""
        self.store.record(
            AuditEntry(
                kind=kind,
                what=action.describe(),
                why=why,
                delivery_id=ctx.delivery_id,
                repository=action.repo,
                detail={"action": action.kind, **detail},
            )
        )

    def _revert(self, ctx: Context, action: RevertMerge) -> Outcome:
        """Open the revert pull request, once per merge commit; when it cannot be made, say
        so on the urgent issue (or on the merged pull request when there is none)."""
        if self.dry_run or self.reverts is None or ctx.installation_id is None:
            return self._record_dry_run(ctx, action)

        def audit(kind: str, why: str, **detail: object) -> None:
            self._audit(ctx, action, kind, why, **detail)

        if not self.store.begin_effect(action.key) and self.store.effect_finished(action.key):
            audit("skipped", f"{action.reason} (made by an earlier attempt)")
            return "skipped"
        known = self.store.effect_result(action.issue_key) if action.issue_key else None
        issue = int(known) if known and known.isdigit() else None
        try:
            outcome = self.reverts.revert(ctx.installation_id, action, issue)
        except GitHubError as exc:
            audit("error", f"{action.reason}: GitHub answered {exc}")
            if exc.transient:
                raise  # the workflow step runs again, with back-off
            return "failed"
        except GitError as exc:
            audit("error", f"{action.reason}: {exc}")
            raise  # a fetch that failed may work the next time: the step runs again
        if isinstance(outcome, NotReverted):
            # told before the key is finished: a re-run finds this comment by its marker
            told = Comment(
                repo=action.repo,
                number=issue or action.number,
                body=revert_texts.not_reverted(action, outcome.why),
                key=f"revert-failed:{action.repo}@{action.merge_sha}",
                reason=f"{action.reason}: not reverted",
            )
            self.execute(ctx, told)
            self.store.finish_effect(action.key, "not-reverted")
            audit("refused", f"{action.reason}: not reverted: {outcome.why}")
            return "refused"
        self.store.finish_effect(action.key, str(outcome.number))
        audit("action", action.reason, pull=outcome.number, created=outcome.created)
        return "sent"

    def _check_run_id(self, github: GitHubPort, ctx: Context, action: PublishCheck) -> int | None:
        """The check run this key created earlier, if any (also after a crash in between)."""
        if self.store.begin_effect(action.key):
            return None
        known = self.store.effect_result(action.key)
        if known:
            return int(known)
        assert ctx.installation_id is not None
        # an attempt created it and died before remembering its id: find it by external_id
        response = github.send(
            ctx.installation_id,
            GitHubRequest(
                "GET",
                f"/repos/{action.repo}/commits/{action.head_sha}/check-runs",
                params={"check_name": action.name, "filter": "all", "per_page": 100},
            ),
        )
        data = response.data if isinstance(response.data, dict) else {}
        for run in data.get("check_runs", []):
            if isinstance(run, dict) and run.get("external_id") == action.key:
                self.store.finish_effect(action.key, str(run["id"]))
                return int(run["id"])
        return None

    def _record_dry_run(self, ctx: Context, action: Action) -> Outcome:
        """In dry-run Nightshift's own state is not changed either: when dry-run is switched
        off, nothing it merely previewed stands in the way (a task `queued` without its
        label on GitHub, a configuration problem never actually reported)."""
        self._audit(ctx, action, "dry-run", f"{action.reason} ({DRY_RUN})")
        return "recorded"

    def _remember(self, ctx: Context, action: RememberConfigError | ForgetConfigError) -> Outcome:
        """Nightshift's memory of what it told the maintainers about the configuration."""
        if self.dry_run:
            return self._record_dry_run(ctx, action)
        problem = action.problem if isinstance(action, RememberConfigError) else None
        self.store.set_reported_config_error(action.repo, problem)
        self._audit(ctx, action, "state", action.reason)
        return "sent"

    def _transition(self, ctx: Context, action: Transition) -> Outcome:
        """Move a task (compare-and-set); `conflict` stops the actions that depended on it."""
        if self.dry_run:
            return self._record_dry_run(ctx, action)
        result = self.store.transition(
            action.repo,
            action.number,
            action.from_state,
            action.to_state,
            action.previous,
            event=action.event,
            reason=action.reason,
            agent=action.agent,
            agent_name=action.agent_name,
            expect_assignment=action.expect_assignment,
            exclude=action.exclude,
        )
        outcomes: dict[str, tuple[str, str, Outcome]] = {
            "moved": ("transition", action.reason, "sent"),
            "already": ("skipped", f"{action.reason} (made by an earlier attempt)", "skipped"),
            "conflict": (
                "error",
                f"{action.reason}: the task is no longer {action.from_state or 'new'}; "
                "the actions that depended on this move were not taken",
                "conflict",
            ),
        }
        kind, why, outcome = outcomes[result]
        self._audit(ctx, action, kind, why, event=action.event)
        return outcome

    def _already_posted(
        self, github: GitHubPort, ctx: Context, action: Comment | SubmitReview | OpenIssue
    ) -> bool:
        """True when an earlier attempt posted it (a comment, a review, an issue).

        The first attempt claims the key and posts; only a re-run finds the key claimed and
        looks for the hidden marker before posting again.
        """
        if self.store.begin_effect(action.key):
            return False
        if self.store.effect_finished(action.key):
            return True
        assert ctx.installation_id is not None
        if isinstance(action, OpenIssue):
            path = f"/repos/{action.repo}/issues"
            extra: dict[str, Any] = {"state": "all", "labels": ",".join(action.labels)}
        elif isinstance(action, SubmitReview):
            path, extra = f"/repos/{action.repo}/pulls/{action.number}/reviews", {}
        else:
            path, extra = f"/repos/{action.repo}/issues/{action.number}/comments", {}
        posted = find_marked(github, ctx.installation_id, path, action.key, params=extra)
        if posted is None:
            return False
        self.store.finish_effect(action.key, _issue_number(action, posted))
        return True


def _issue_number(action: Action, data: object) -> str | None:
    """An opened issue's number, remembered with its key (a revert closes the issue)."""
    if not isinstance(action, OpenIssue) or not isinstance(data, dict):
        return None
    number = data.get("number")
    return str(number) if isinstance(number, int) else None


def _entry_for(ctx: Context, action: Action, request: GitHubRequest) -> Callable[..., AuditEntry]:
    def build(kind: str, why: str, status: int | None = None) -> AuditEntry:
        detail: dict[str, object] = {"request": request.as_dict(), "action": action.kind}
        if status is not None:
            detail["status"] = status
        return AuditEntry(
            kind=kind,
            what=action.describe(),
            why=why,
            delivery_id=ctx.delivery_id,
            repository=action.repo,
            detail=detail,
        )

    return build
