"""The review of a pull request's head: one durable workflow per head (and attempt).

Gather the facts (the PR, its issue, the configuration), publish both check runs as in
progress, run gate 1 (never runs PR code) and gate 2 (required checks, then the configured
commands in the sandbox), publish the results, and carry out the verdict: merge the exact
head reviewed, or send fix instructions, or block. The decisions are the core's
(app.core.gates, app.core.rules.review); this module only gathers and carries out.

Runs on the review queue: a concurrency limit per worker, one review per repository at a
time. A newer head cancels the review of the older one, and every look at the PR before
acting checks that the head is still the one reviewed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from dbos import DBOS, DBOSConfiguredInstance
from dbos._error import (
    DBOSException,
    DBOSMaxStepRetriesExceeded,
    DBOSWorkflowCancelledError,
)
from pydantic import TypeAdapter

from app.core import gates
from app.core.actions import ACTION_ADAPTER, Action, StartReview
from app.core.cards import with_cards
from app.core.config import Config
from app.core.gates import GateResult
from app.core.review_facts import CheckResult, CommandRun, JudgeVerdict
from app.core.rules import review as rules
from app.core.tasks import State as TaskState
from app.core.tasks import Task, parse_previous
from app.effects import facts
from app.effects import secrets as secret_scan
from app.effects.executor import Context, Executor
from app.effects.git import GitError, Mirrors
from app.effects.github import GitHubPort
from app.effects.repo_config import ConfigSource
from app.effects.sandbox import Sandbox, SandboxUnavailable
from app.effects.store import Store
from app.engine.delivery import failure_reason
from app.engine.starter import Starter

log = logging.getLogger("nightshift.review")

REVIEW_QUEUE = "nightshift-reviews"
REVIEW_WORKFLOW = "nightshift.review"
MERGEABLE_POLL_SECONDS = 5.0
COVERAGE_MAX_BYTES = gates.COVERAGE_REPORT_MAX_BYTES
TESTS_REPORT_MAX_BYTES = gates.TESTS_REPORT_MAX_BYTES

_RESULT: TypeAdapter[GateResult] = TypeAdapter(GateResult)
_CHECKS: TypeAdapter[list[CheckResult]] = TypeAdapter(list[CheckResult])


def review_id(action: StartReview) -> str:
    """The workflow id: one review per repository, pull request, head and attempt."""
    return f"review:{action.repo}#{action.number}@{action.head_sha}:{action.attempt}"


@dataclass(frozen=True)
class ReviewTools:
    """What a review needs besides GitHub and the store."""

    mirrors: Mirrors
    sandbox: Sandbox
    poll_seconds: float = 60.0
    mergeable_poll_seconds: float = MERGEABLE_POLL_SECONDS
    # the variables repositories may ask for (`review.commands[].env`): the operator's
    # allow-list, so no repository's configuration can read the worker's environment
    env_allowed: frozenset[str] = frozenset()


@DBOS.dbos_class()
class ReviewEngine(DBOSConfiguredInstance):
    """The review workflows, bound to this process's ports (one instance per process)."""

    store: Store
    executor: Executor
    github: GitHubPort | None
    configs: ConfigSource
    tools: ReviewTools

    def __init__(self) -> None:
        super().__init__(config_name="reviews")
        self.starter = Starter()

    def bind(
        self,
        store: Store,
        executor: Executor,
        github: GitHubPort | None,
        configs: ConfigSource,
        tools: ReviewTools,
        *,
        system_database_url: str,
        version: str,
    ) -> ReviewEngine:
        self.starter.bind(system_database_url, version)
        self.store = store
        self.executor = executor
        self.github = github
        self.configs = configs
        self.tools = tools
        return self

    # starting (the executor's ReviewStarter port) -------------------------------------------

    def start_review(self, installation_id: int, action: StartReview) -> str:
        """Enqueue the review of this head, and cancel reviews of older heads of the PR.

        Called from a delivery workflow's step, where DBOS does not let a workflow start
        another: so through a DBOS client, as from outside. Idempotent: the workflow id
        names the head and attempt, and a second enqueue returns the first workflow.
        """
        client = self.starter.client()
        workflow_id = review_id(action)
        prefix = f"review:{action.repo}#{action.number}@"
        live = facts.get(
            self._github(), installation_id, f"/repos/{action.repo}/pulls/{action.number}"
        )
        if live["head"]["sha"] != action.head_sha:
            # a late (redelivered, reordered) event for a head already replaced: it must not
            # cancel the review of the current head, nor be reviewed itself
            return f"{workflow_id} (stale: the head is now {live['head']['sha'][:7]})"
        for older in client.list_workflows(
            workflow_id_prefix=prefix,
            status=["PENDING", "ENQUEUED"],
            load_input=False,
            load_output=False,
        ):
            if not older.workflow_id.startswith(f"{prefix}{action.head_sha}:"):
                client.cancel_workflow(older.workflow_id)
        return self.starter.enqueue(
            self,
            REVIEW_WORKFLOW,
            REVIEW_QUEUE,
            workflow_id,
            installation_id,
            action.repo,
            action.number,
            action.task,
            action.head_sha,
            partition=action.repo,
        )

    def close(self) -> None:
        self.starter.close()

    # the workflow -------------------------------------------------------------------------

    @DBOS.workflow(name=REVIEW_WORKFLOW)
    def review(self, installation_id: int, repo: str, number: int, task: int, head: str) -> str:
        me = DBOS.workflow_id or f"review:{repo}#{number}@{head}"
        try:
            return self._review(me, installation_id, repo, number, task, head)
        except DBOSWorkflowCancelledError:
            raise  # a newer head took over: nothing to report on this one
        except Exception as exc:
            if isinstance(exc, DBOSException) and not isinstance(exc, DBOSMaxStepRetriesExceeded):
                raise  # the engine itself (shutting down, ...): recovery resumes the review
            # a step ran out of retries (GitHub down, the fetch failed, ...): never leave the
            # check runs spinning; say what failed and record it for a person
            reason = failure_reason(exc)
            log.warning("review %s could not finish: %s", me, reason)
            attempt = me.rsplit(":", 1)[-1]
            failed = rules.review_failed(repo, number, task, head, reason, attempt)
            self.act(me, installation_id, failed)
            return "error"

    def _review(
        self, me: str, installation_id: int, repo: str, number: int, task: int, head: str
    ) -> str:
        seen = self.gather(installation_id, repo, number, task)
        if seen.get("skip"):
            return str(seen["skip"])
        if seen["head_sha"] != head or seen["state"] != "open":
            return "superseded"  # a newer head has (or will have) its own review
        config = Config.model_validate(seen["config"])
        attempt = me.rsplit(":", 1)[-1]
        self.act(me, installation_id, rules.review_started(repo, head, attempt))
        spec = _RESULT.validate_python(self.spec_gate(installation_id, repo, seen, head))
        self.act(me, installation_id, [rules.publish(repo, head, spec, attempt)])

        checks: list[CheckResult] = []
        for look in range(config.limits.ci_poll_attempts):
            checks = _CHECKS.validate_python(self.read_checks(installation_id, repo, head))
            if not rules.checks_pending(config, head, checks):
                break
            if look + 1 < config.limits.ci_poll_attempts:
                DBOS.sleep(self.tools.poll_seconds)
        quality = _RESULT.validate_python(
            self.quality_gate(installation_id, repo, seen, head, _CHECKS.dump_python(checks))
        )
        self.act(me, installation_id, [rules.publish(repo, head, quality, attempt)])

        pull = rules.PullFacts.model_validate({**seen["pull"], "attempt": attempt})
        self.act(me, installation_id, rules.record_tests(repo, pull, quality, config))
        verdict = gates.verdict(
            spec,
            quality,
            fix_rounds=int(seen["fix_rounds"]),
            max_fix_rounds=config.limits.max_fix_rounds,
        )
        self.act(me, installation_id, rules.escalate(repo, pull, verdict, config), config)
        if verdict.kind != "merge":
            now = self.read_task(repo, pull.task)
            decided = rules.conclude(repo, pull, verdict, spec, quality, config, now)
            self.act(me, installation_id, decided, config)
            return verdict.kind
        return self.merge(me, installation_id, repo, pull, config)

    def merge(
        self, me: str, installation_id: int, repo: str, pull: rules.PullFacts, config: Config
    ) -> str:
        """Approve, then merge the reviewed head: re-read the PR before each attempt."""
        if not rules.may_merge(pull):
            self.act(me, installation_id, rules.passed_for_human(repo, pull), config)
            return "passed"
        refusal = rules.merge_refusal(self.read_task(repo, pull.task), self._paused(repo))
        if refusal is not None:
            log.info("review %s: not merged: %s", me, refusal)
            return "not-merged"
        self.act(me, installation_id, rules.approve(repo, pull), config)
        polls = 0
        for _attempt in range(config.review.mergeable_poll_attempts + 2):
            now = self.read_pull(installation_id, repo, pull.number)
            if now["merged"] and now["head_sha"] == pull.head_sha:
                # merged by an attempt whose answer was lost (a 502, a crash): finish the job
                self._remember_merge(repo, pull.number, now["merge_commit_sha"])
                task = self.read_task(repo, pull.task)
                self.act(me, installation_id, rules.merged(repo, pull, task), config)
                return "merged"
            if now["head_sha"] != pull.head_sha or now["state"] != "open":
                return "superseded"  # never merge a head that was not reviewed
            if now["base_ref"] != pull.base_ref:
                return "superseded"  # retargeted: the review judged another base
            decision = gates.merge_decision(
                now["mergeable"], polls=polls, max_polls=config.review.mergeable_poll_attempts
            )
            if decision.kind == "poll":
                polls += 1
                DBOS.sleep(self.tools.mergeable_poll_seconds * polls)
                continue
            if decision.kind in ("conflict", "give-up"):
                task = self.read_task(repo, pull.task)
                decided = rules.cannot_merge(repo, pull, decision, config, task)
                self.act(me, installation_id, decided, config)
                return "conflict" if decision.kind == "conflict" else "blocked"
            outcome = self.act(me, installation_id, [rules.merge(repo, pull, config)], config)
            if outcome and outcome[0] == "sent":
                task = self.read_task(repo, pull.task)
                self.act(me, installation_id, rules.merged(repo, pull, task), config)
                return "merged"
            # refused (405/409): look again, never force
            polls += 1
            DBOS.sleep(self.tools.mergeable_poll_seconds * polls)
        refused = gates.MergeDecision("give-up", "GitHub refused to merge it")
        task = self.read_task(repo, pull.task)
        self.act(me, installation_id, rules.cannot_merge(repo, pull, refused, config, task), config)
        return "blocked"

    # steps: gathering ---------------------------------------------------------------------

    @DBOS.step(name="nightshift.review.gather", retries_allowed=True, max_attempts=4)
    def gather(self, installation_id: int, repo: str, number: int, task: int) -> dict[str, Any]:
        """The PR, its task's issue, the configuration and what the store remembers."""
        github = self._github()
        loaded = self.configs.load(installation_id, repo)
        if loaded.error is not None:
            return {"skip": "invalid-config"}
        if self.store.is_paused(repo):
            return {"skip": "paused"}
        data = facts.get(github, installation_id, f"/repos/{repo}/pulls/{number}")
        issue = facts.get(github, installation_id, f"/repos/{repo}/issues/{task}")
        stored = self.store.pull(repo, number)
        if stored is not None and stored.head_sha != data["head"]["sha"]:
            # a late event recorded an older head: GitHub's answer is the truth
            self.store.record_pull(
                repo, number, stored.task, data["head"]["sha"], stored.author, stored.fork
            )
        known = self.store.task(repo, task)
        head = data["head"]
        source = (head.get("repo") or {}).get("full_name") or ""
        author = (data.get("user") or {}).get("login") or ""
        pull = rules.PullFacts(
            number=number,
            task=task,
            head_sha=head["sha"],
            head_ref=head.get("ref") or "",
            base_ref=data["base"]["ref"],
            author=author,
            fork=source.lower() != repo.lower(),
            agent=known.agent if known is not None else None,
            ok_to_test_sha=stored.ok_to_test_sha if stored is not None else None,
        )
        return {
            "head_sha": head["sha"],
            "state": data.get("state"),
            "pull": pull.model_dump(),
            "pr_body": data.get("body") or "",
            "issue_title": issue.get("title") or "",
            "issue_body": issue.get("body") or "",
            "fix_rounds": rules.rounds_before(stored, head["sha"]),
            "config": loaded.config.model_dump(),
        }

    @DBOS.step(name="nightshift.review.checks", retries_allowed=True, max_attempts=4)
    def read_checks(self, installation_id: int, repo: str, head: str) -> list[dict[str, Any]]:
        found = facts.checks_for(
            self._github(), installation_id, repo, head, ignore_prefix=rules.CHECK_PREFIX
        )
        return [asdict(check) for check in found]

    def read_task(self, repo: str, number: int) -> Task | None:
        """The task as it is now (a workflow step: a re-run sees what the first run saw)."""
        data = self._read_task(repo, number)
        if data is None:
            return None
        return Task(
            repo,
            number,
            TaskState(data["state"]),
            parse_previous(data["previous"]),
            data["agent"],
        )

    @DBOS.step(name="nightshift.review.task", retries_allowed=True, max_attempts=4)
    def _read_task(self, repo: str, number: int) -> dict[str, Any] | None:
        task = self.store.task(repo, number)
        if task is None:
            return None
        previous = ",".join(state.value for state in task.previous) or None
        return {"state": task.state.value, "previous": previous, "agent": task.agent}

    @DBOS.step(name="nightshift.review.pull", retries_allowed=True, max_attempts=4)
    def read_pull(self, installation_id: int, repo: str, number: int) -> dict[str, Any]:
        data = facts.get(self._github(), installation_id, f"/repos/{repo}/pulls/{number}")
        return {
            "head_sha": data["head"]["sha"],
            "base_ref": data["base"]["ref"],
            "state": data.get("state"),
            "merged": bool(data.get("merged")),
            "merge_commit_sha": data.get("merge_commit_sha") or "",
            "mergeable": data.get("mergeable"),
        }

    @DBOS.step(name="nightshift.review.remember-merge", retries_allowed=True, max_attempts=4)
    def _remember_merge(self, repo: str, number: int, merge_sha: str) -> None:
        self.store.mark_merged(repo, number, merge_sha)

    @DBOS.step(name="nightshift.review.paused", retries_allowed=True, max_attempts=4)
    def _paused(self, repo: str) -> bool:
        return self.store.is_paused(repo)

    # steps: the gates ---------------------------------------------------------------------

    def _fetch(self, installation_id: int, repo: str, pull: rules.PullFacts) -> None:
        token = facts.contents_token(self._github(), repo, installation_id)
        self.tools.mirrors.fetch(repo, token, pull=pull.number, branches=[pull.base_ref])

    @DBOS.step(name="nightshift.review.spec", retries_allowed=True, max_attempts=3)
    def spec_gate(
        self, installation_id: int, repo: str, seen: dict[str, Any], head: str
    ) -> dict[str, Any]:
        """Gate 1: the diff against the task; never runs PR code (the judge is sandboxed)."""
        pull = rules.PullFacts.model_validate(seen["pull"])
        config = Config.model_validate(seen["config"])
        self._fetch(installation_id, repo, pull)
        diff = self.tools.mirrors.diff(repo, f"refs/heads/{pull.base_ref}", head)
        judge = None
        if config.review.judge is not None:
            judge = self._judge(repo, f"refs/heads/{pull.base_ref}", seen, diff, config)
        result = gates.spec_gate(
            repo=repo,
            task_number=pull.task,
            issue_body=seen["issue_body"],
            pr_body=seen["pr_body"],
            head_ref=pull.head_ref,
            diff=diff,
            config=config,
            judge=judge,
        )
        return _dump(result)

    def _judge(
        self, repo: str, base: str, seen: dict[str, Any], diff: Any, config: Config
    ) -> JudgeVerdict:
        """The judge runs in a worktree of the base branch, never of the PR's head: the
        repository's own judge, reading the change from stdin; the PR cannot replace it."""
        judge = config.review.judge
        assert judge is not None
        payload = gates.judge_input(
            issue_title=seen["issue_title"], issue_body=seen["issue_body"], diff=diff
        )
        try:
            with self.tools.mirrors.worktree(repo, base, label="judge") as tree:
                run, stdout = self.tools.sandbox.capture(
                    "judge",
                    judge.command,
                    tree,
                    timeout=judge.timeout_seconds,
                    stdin=json.dumps(payload).encode(),
                )
        except SandboxUnavailable as exc:
            return JudgeVerdict(passed=False, error=f"the sandbox is unavailable: {exc}")
        if not run.passed:
            why = run.killed or f"exit {run.exit_code}"
            return JudgeVerdict(passed=False, error=f"the judge command failed ({why})")
        return gates.parse_judge(stdout)

    @DBOS.step(name="nightshift.review.quality", retries_allowed=True, max_attempts=3)
    def quality_gate(
        self,
        installation_id: int,
        repo: str,
        seen: dict[str, Any],
        head: str,
        checks: list[dict[str, Any]],
    ) -> dict[str, Any]:
        """Gate 2: required checks, the secret scan, and the commands in the sandbox."""
        pull = rules.PullFacts.model_validate(seen["pull"])
        config = Config.model_validate(seen["config"])
        self._fetch(installation_id, repo, pull)
        diff = self.tools.mirrors.diff(repo, f"refs/heads/{pull.base_ref}", head)
        found = secret_scan.scan(diff)
        waiting = not rules.may_run_code(pull)
        runs: Sequence[CommandRun] | str = ()
        report: bytes | None = None
        tests: bytes | None = None
        if config.review.commands and not waiting:
            runs, report, tests = self._run_commands(repo, head, config)
        result = gates.quality_gate(
            head_sha=head,
            diff=diff,
            config=config,
            checks=_CHECKS.validate_python(checks),
            runs=runs,
            coverage_report=report,
            tests_report=tests,
            secrets=found,
            awaiting_ok_to_test=waiting and bool(config.review.commands),
        )
        return _dump(result)

    def _run_commands(
        self, repo: str, head: str, config: Config
    ) -> tuple[Sequence[CommandRun] | str, bytes | None, bytes | None]:
        """The commands' runs (or why the sandbox could not run them), then the coverage
        and test reports they wrote, read before the worktree goes."""
        sandbox = self.tools.sandbox
        try:
            sandbox.check()
        except SandboxUnavailable as exc:
            return str(exc), None, None
        runs: list[CommandRun] = []
        report: bytes | None = None
        tests: bytes | None = None
        with self.tools.mirrors.worktree(repo, head, label="quality") as tree:
            for command in config.review.commands:
                env = {
                    name: value
                    for name in command.env
                    if name in self.tools.env_allowed and (value := _env(name)) is not None
                }
                try:
                    run = sandbox.run(
                        command.name, command.run, tree, env=env, timeout=command.timeout_seconds
                    )
                except SandboxUnavailable as exc:
                    return str(exc), None, None
                runs.append(_redacted(run, env.values()))
            if config.review.coverage.report:
                report = _read_inside(tree, config.review.coverage.report, COVERAGE_MAX_BYTES)
            if config.review.tests_report:
                tests = _read_inside(tree, config.review.tests_report, TESTS_REPORT_MAX_BYTES)
        return runs, report, tests

    # carrying out ---------------------------------------------------------------------------

    def act(
        self,
        me: str,
        installation_id: int,
        actions: Sequence[Action],
        config: Config | None = None,
    ) -> list[str]:
        """Carry out the core's actions, one step each (a crash resumes after the last);
        with the configuration, each task move also moves the project card."""
        outcomes: list[str] = []
        for action in with_cards(actions, config) if config is not None else actions:
            outcome = self.execute(me, installation_id, ACTION_ADAPTER.dump_python(action))
            outcomes.append(outcome)
            if outcome == "conflict":
                break  # what follows depended on a task move that did not happen
        return outcomes

    @DBOS.step(
        name="nightshift.review.execute",
        retries_allowed=True,
        max_attempts=4,
        interval_seconds=2.0,
        backoff_rate=2.0,
    )
    def execute(self, me: str, installation_id: int, action: dict[str, Any]) -> str:
        parsed = ACTION_ADAPTER.validate_python(action)
        return self.executor.execute(Context(me, installation_id), parsed)

    def _github(self) -> GitHubPort:
        if self.github is None:
            raise GitError("no GitHub App credentials: a review cannot read the pull request")
        return self.github


def _env(name: str) -> str | None:
    """A variable the configuration passes into the sandbox, from Nightshift's environment.

    Never one of Nightshift's own settings: they hold its webhook secret and App key.
    """
    if name.upper().startswith("NIGHTSHIFT_"):
        return None
    return os.environ.get(name)


def _redacted(run: CommandRun, values: Iterable[str]) -> CommandRun:
    """The run with the values passed in hidden from its log tail (which GitHub shows)."""
    tail = run.output_tail
    for value in sorted(values, key=len, reverse=True):
        if len(value) >= 4:
            tail = tail.replace(value, "***")
    return dataclasses.replace(run, output_tail=tail)


def _read_inside(tree: Any, relative: str, limit: int) -> bytes | None:
    """A file the commands wrote inside the worktree; never one outside it (symlinks)."""
    root = tree.resolve()
    target = (tree / relative).resolve()
    if root not in target.parents or not target.is_file():
        return None
    with target.open("rb") as handle:
        data: bytes = handle.read(limit + 1)
    return data


def _dump(result: GateResult) -> dict[str, Any]:
    dumped: dict[str, Any] = _RESULT.dump_python(result, mode="json")
    return dumped


_ENGINE: list[ReviewEngine] = []


def review_engine() -> ReviewEngine:
    """The process's one review engine instance, created on first use (before launch)."""
    if not _ENGINE:
        _ENGINE.append(ReviewEngine())
    return _ENGINE[0]
