"""One durable workflow per delivery: decide once, then carry out each action as a step.

The workflow id is the delivery GUID, so a second start of the same delivery returns the
first result instead of running again. Each step's result is checkpointed: after a crash
the workflow resumes at the first step that did not finish, and completed side effects are
not repeated.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from dbos import DBOS, DBOSConfiguredInstance
from dbos._error import DBOSMaxStepRetriesExceeded

from app.core.actions import ACTION_ADAPTER, ACTIONS_ADAPTER
from app.core.config import DEFAULT_CONFIG
from app.core.envelope import Envelope, EnvelopeError
from app.core.review_facts import CheckResult
from app.core.rules import commands, decide, escalation, intake, review
from app.core.state import Pull, RepoState
from app.core.tasks import Task
from app.effects import facts
from app.effects.executor import Context, Executor
from app.effects.repo_config import ConfigSource, LoadedConfig
from app.effects.store import AuditEntry, Store
from app.metrics import Metrics

DELIVERY_QUEUE = "nightshift-deliveries"

# DBOS only recovers and dequeues workflows of the application version it runs. Change this
# only when the delivery workflow's steps change incompatibly (their order, names or inputs),
# never for a release that leaves them alone: in-flight work would be stranded.
ENGINE_VERSION = "delivery-v1"


@DBOS.dbos_class()
class DeliveryEngine(DBOSConfiguredInstance):
    """The delivery workflows, bound to this process's store, executor and metrics.

    DBOS is a process-wide singleton whose registry outlives a `DBOS.destroy()`, and a
    configured instance can be registered once per name; so there is one engine per
    process (`delivery_engine()`), and each launch binds it to its dependencies.
    """

    store: Store
    executor: Executor
    metrics: Metrics
    configs: ConfigSource
    app_id: int | None = None
    on_finished: Callable[[], None] | None = None

    def __init__(self) -> None:
        super().__init__(config_name="deliveries")

    def bind(
        self,
        store: Store,
        executor: Executor,
        metrics: Metrics,
        configs: ConfigSource,
        app_id: int | None = None,
        *,
        on_finished: Callable[[], None] | None = None,
    ) -> DeliveryEngine:
        """`on_finished` is told when a delivery's workflow ends (the pump may start the
        next one of its repository)."""
        self.app_id = app_id
        self.on_finished = on_finished
        self.store = store
        self.executor = executor
        self.metrics = metrics
        self.configs = configs
        return self

    @DBOS.workflow(name="nightshift.delivery")
    def handle(self, delivery_id: str) -> str:
        try:
            return self._handle(delivery_id)
        finally:
            if self.on_finished is not None:
                self.on_finished()

    def _handle(self, delivery_id: str) -> str:
        started = time.monotonic()
        try:
            plan = self.plan(delivery_id)
        except Exception as exc:  # GitHub unreachable while reading the configuration, ...
            self.finish(delivery_id, "failed", failure_reason(exc))
            return "failed"
        status = str(plan["status"])
        if status == "handled":
            errors = [plan["error"]] if plan.get("error") else []
            for index, action in enumerate(plan["actions"]):
                try:
                    outcome = self.execute(delivery_id, plan["installation_id"], index, action)
                except Exception as exc:  # still failing after the step's retries
                    outcome = "failed"
                    errors.append(f"action {index + 1}: {failure_reason(exc)}")
                if outcome == "conflict":
                    errors.append(
                        f"action {index + 1}: the task moved since the decision; "
                        "the rest was not done"
                    )
                    break  # what follows was justified by a move that did not happen
                if outcome == "failed" and not errors:
                    errors.append("an action failed (see the audit log)")
            status = "failed" if errors else "done"
            self.finish(delivery_id, status, "; ".join(errors) or None)
        # otherwise the plan step already recorded the outcome: nothing was left to do
        self.metrics.handling_seconds.labels(plan.get("event", "unknown")).observe(
            time.monotonic() - started
        )
        return status

    @DBOS.step(
        name="nightshift.delivery.plan",
        retries_allowed=True,
        max_attempts=3,
        interval_seconds=2.0,
        backoff_rate=3.0,
    )
    def plan(self, delivery_id: str) -> dict[str, Any]:
        """Load the delivery and decide; the decision is checkpointed as this step's result."""
        loaded = self.store.delivery(delivery_id)
        if loaded is None:
            return {"status": "failed", "error": "delivery not found in the store"}
        row, body = loaded
        try:
            env = Envelope.parse(delivery_id, row.event, body)
        except EnvelopeError as exc:
            self.store.finish_delivery(delivery_id, "failed", str(exc))
            return {"status": "failed", "event": row.event}
        repo_config = (
            self.configs.load(env.installation_id, env.repository)
            if env.repository is not None
            else LoadedConfig(DEFAULT_CONFIG)
        )
        asker = commands.needs_permission(env)
        task, pull, ci_retries, merged = self._subject_of(env)
        merge_checks: tuple[CheckResult, ...] = ()
        if review.wants_merge_checks(env, merged, repo_config.config):
            merge_checks = self._merge_checks(env, merged)
        state = RepoState(
            paused=self.store.is_paused(env.repository),
            config_error=str(repo_config.error) if repo_config.error is not None else None,
            reported_config_error=self.store.reported_config_error(env.repository),
            task=task,
            pull=pull,
            ci_retries=ci_retries,
            merged_pull=merged,
            merge_checks=merge_checks,
            app_id=self.app_id,
            sender_permission=(
                facts.permission(self.executor.github, env.installation_id, env.repository, asker)
                if asker is not None and env.repository is not None
                else None
            ),
        )
        if escalation.concerns(env) and env.repository and env.issue_number is not None:
            state = dataclasses.replace(
                state, escalation=self.store.escalation_of_issue(env.repository, env.issue_number)
            )
        red = review.ci_log_wanted(env, state, repo_config.config)
        if red is not None and env.repository is not None:
            state = dataclasses.replace(
                state,
                ci_log=facts.failing_log(
                    self.executor.github, env.installation_id, env.repository, red
                ),
            )
        if (
            intake.wants_dependencies(env, state, repo_config.config)
            and env.repository is not None
            and env.issue_number is not None  # else the rules say what the payload lacks
        ):
            state = dataclasses.replace(
                state,
                native_dependencies=facts.dependencies(
                    self.executor.github, env.installation_id, env.repository, env.issue_number
                ),
            )
        decision = decide(env, state, repo_config.config)
        # a re-run of this step (the process died before its checkpoint) records nothing twice
        first_run = not self.store.has_decision(delivery_id)
        if not decision.handled:
            if first_run:
                self.store.record(
                    AuditEntry(
                        kind="decision",
                        what=env.name,
                        why=f"no rule handles {env.name}",
                        delivery_id=delivery_id,
                        repository=env.repository,
                    )
                )
            self.store.finish_delivery(delivery_id, "ignored")
            return {"status": "ignored", "event": env.event}
        entries = [
            AuditEntry(
                kind="decision",
                what=f"{env.name}: {len(decision.actions)} action(s)",
                why="paused: no automatic action"
                if state.paused
                else "rules: " + ", ".join(decision.rules),
                delivery_id=delivery_id,
                repository=env.repository,
                detail={"actions": [a.describe() for a in decision.actions]},
            )
        ]
        entries += [
            AuditEntry(
                kind="error",
                what=f"rule {f.rule}",
                why=f.error,
                delivery_id=delivery_id,
                repository=env.repository,
            )
            for f in decision.failures
        ]
        if first_run:
            self.store.record(*entries)
        if not decision.actions:
            status = "failed" if decision.failures else "done"
            error = "; ".join(f"{f.rule}: {f.error}" for f in decision.failures) or None
            self.store.finish_delivery(delivery_id, status, error)
            return {"status": status, "event": env.event}
        return {
            "status": "handled",
            "event": env.event,
            "installation_id": env.installation_id,
            "actions": ACTIONS_ADAPTER.dump_python(list(decision.actions), mode="json"),
            "failures": [f.rule for f in decision.failures],
            "error": "; ".join(f"{f.rule}: {f.error}" for f in decision.failures) or None,
        }

    def _subject_of(self, env: Envelope) -> tuple[Task | None, Pull | None, int, Pull | None]:
        """The task, the reviewed pull request, the head's CI re-runs, and the merged pull
        request a delivery is about.

        An issue event: its task. A pull-request event: the task it links to. A comment on
        a pull request: that pull request and its task. A CI result: the pull request whose
        head it ran on, or the one Nightshift merged as that commit.
        """
        repo = env.repository
        if repo is None:
            return None, None, 0, None
        if env.event == "pull_request":
            linked = review.task_number(env)
            pr = review.pull_of(env)
            pull = self.store.pull(repo, pr.number) if pr is not None else None
            return (self.store.task(repo, linked) if linked else None), pull, 0, None
        sha = review.head_sha_of(env)
        if sha is not None:
            pull = self.store.pull_by_head(repo, sha)
            if pull is None:
                return None, None, 0, self.store.pull_by_merge(repo, sha)
            # GitHub's merges always make a new commit, so a head is not its own merge
            # commit; were it one (a merge made elsewhere), it is both
            merged = pull if pull.merged_sha == sha else None
            task = self.store.task(repo, pull.task)
            return task, pull, self.store.ci_retries(repo, sha), merged
        number = env.issue_number
        if number is None:
            return None, None, 0, None
        pull = self.store.pull(repo, number)
        if pull is not None:
            return self.store.task(repo, pull.task), pull, 0, None
        return self.store.task(repo, number), None, 0, None

    def _merge_checks(self, env: Envelope, merged: Pull | None) -> tuple[CheckResult, ...]:
        """The checks and statuses on a merge commit CI went red on (see on_red_merge)."""
        github = self.executor.github
        if github is None or env.installation_id is None or env.repository is None:
            return ()
        assert merged is not None and merged.merged_sha is not None
        found = facts.checks_for(
            github,
            env.installation_id,
            env.repository,
            merged.merged_sha,
            ignore_prefix=review.CHECK_PREFIX,
        )
        return tuple(found)

    # A transient failure (GitHub 5xx or unreachable, a database hiccup) raises and the step
    # runs again; a comment re-run finds the one an earlier attempt posted by its marker.
    @DBOS.step(
        name="nightshift.delivery.execute",
        retries_allowed=True,
        max_attempts=4,
        interval_seconds=2.0,
        backoff_rate=2.0,
    )
    def execute(
        self, delivery_id: str, installation_id: int | None, index: int, action: dict[str, Any]
    ) -> str:
        parsed = ACTION_ADAPTER.validate_python(action)
        return self.executor.execute(Context(delivery_id, installation_id), parsed)

    @DBOS.step(name="nightshift.delivery.finish", retries_allowed=True, max_attempts=5)
    def finish(self, delivery_id: str, status: str, error: str | None) -> None:
        self.store.finish_delivery(delivery_id, status, error)


def failure_reason(exc: Exception) -> str:
    """The underlying error, also when DBOS gave up retrying a step."""
    if isinstance(exc, DBOSMaxStepRetriesExceeded) and exc.errors:
        last = exc.errors[-1]
        return f"gave up after {len(exc.errors)} attempts: {type(last).__name__}: {last}"
    return f"{type(exc).__name__}: {exc}"


_ENGINE: list[DeliveryEngine] = []


def delivery_engine() -> DeliveryEngine:
    """The process's one engine instance, created on first use (before DBOS launches)."""
    if not _ENGINE:
        _ENGINE.append(DeliveryEngine())
    return _ENGINE[0]
