"""Dispatch passes and their timers, as durable workflows; the watchdog that starts passes.

A pass (`nightshift.dispatch`) gathers one repository's facts, lets the core decide
(app.core.dispatch) and carries out each action as a step. Passes run on a queue
partitioned by repository (one pass per repository at a time); each cause starts its own
pass (the workflow id names the cause, so the same cause twice is one pass), and a pass
with nothing to do decides nothing and costs a few reads.

Deadlines (an acknowledgement, the moment an agent would count as offline, the next level
of a block's escalation path) are durable timers: rows in the store that every worker's
timer loop turns into passes when they are due (`fire_due`, about once a second). A
sleeping workflow per timer would hold a thread of the engine's pool for the whole wait and
keep a stopping process alive until it woke; a row costs nothing while it waits, survives
restarts, and two workers firing the same timer queue one pass (the pass's workflow id
names the timer's cause).

The watchdog (a background job of every worker) queues passes when heartbeats say
something may have changed: an agent's heartbeats stopped or came back, or a heartbeat
names a task waiting for its acknowledgement.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from dbos import DBOS, DBOSConfiguredInstance

from app.core import dispatch as core
from app.core.actions import ACTION_ADAPTER, ACTIONS_ADAPTER, Dispatch
from app.core.state import TaskFacts
from app.core.tasks import State
from app.effects import facts as github_facts
from app.effects.executor import Context, Executor
from app.effects.github import GitHubError, GitHubPort
from app.effects.records import Records
from app.effects.repo_config import ConfigSource
from app.effects.store import AuditEntry, Store
from app.engine.starter import Starter

log = logging.getLogger("nightshift.dispatch")

DISPATCH_QUEUE = "nightshift-dispatch"
TIMER_QUEUE = "nightshift-timers"
DISPATCH_WORKFLOW = "nightshift.dispatch"
TIMER_WORKFLOW = "nightshift.dispatch.timer"
MAX_ROUNDS = 3  # a pass whose sends failed looks again (the failed agent is now excluded)
WATCH_STALE_SECONDS = 60.0  # heartbeats older than this make the watchdog ask for a pass


def web_url_for(api_url: str) -> str:
    """github.com, or the Enterprise Server of the API URL."""
    base = api_url.rstrip("/")
    return (
        "https://github.com" if base == "https://api.github.com" else base.removesuffix("/api/v3")
    )


@DBOS.dbos_class()
class DispatchEngine(DBOSConfiguredInstance):
    """The dispatch workflows, bound to this process's ports (one instance per process)."""

    store: Store
    executor: Executor
    github: GitHubPort | None
    configs: ConfigSource

    def __init__(self) -> None:
        super().__init__(config_name="dispatch")
        self.starter = Starter()
        self.web_url = "https://github.com"
        self.heartbeat_url: str | None = None
        self.clock: Callable[[], float] = lambda: 0.0

    def bind(
        self,
        store: Store,
        executor: Executor,
        github: GitHubPort | None,
        configs: ConfigSource,
        *,
        system_database_url: str,
        version: str,
        clock: Callable[[], float],
        web_url: str = "https://github.com",
        public_url: str | None = None,
    ) -> DispatchEngine:
        self.store = store
        self.executor = executor
        self.github = github
        self.configs = configs
        self.starter.bind(system_database_url, version)
        self.clock = clock
        self.web_url = web_url
        self.heartbeat_url = (
            f"{public_url.rstrip('/')}/agents/{{agent}}/heartbeat" if public_url else None
        )
        return self

    # starting (the executor's Dispatcher port, and the watchdog) ---------------------------

    def start_dispatch(self, installation_id: int, action: Dispatch) -> str:
        """Queue a pass now, or set a timer that queues one after `delay_seconds`.

        Called from workflow steps, where DBOS does not let a workflow start another: so
        through a DBOS client. Idempotent: by workflow id, and by (repo, cause) for timers."""
        if action.delay_seconds > 0:
            due = self.clock() + action.delay_seconds
            self.store.add_timer(action.repo, action.cause, installation_id, due)
            return f"timer:{action.repo}:{action.cause}"
        return self.queue_pass(installation_id, action.repo, action.cause)

    def fire_due(self) -> int:
        """Queue the pass of every timer that is due; returns how many."""
        now = self.clock()
        fired = 0
        for repo, cause, installation_id in self.store.due_timers(now):
            self.queue_pass(installation_id, repo, cause)
            self.store.fired_timer(repo, cause, now)
            fired += 1
        return fired

    def queue_pass(self, installation_id: int, repo: str, cause: str) -> str:
        # no deduplication id: DBOS holds one until the workflow ends, so a change made while
        # a pass runs (after it read its facts) would find its own pass refused
        return self.starter.enqueue(
            self,
            DISPATCH_WORKFLOW,
            DISPATCH_QUEUE,
            f"dispatch:{repo}:{cause}",
            installation_id,
            repo,
            partition=repo,
        )

    def close(self) -> None:
        self.starter.close()

    # the workflows ----------------------------------------------------------------------

    @DBOS.workflow(name=TIMER_WORKFLOW)
    def timer(self, installation_id: int, repo: str, cause: str, seconds: float) -> str:
        """A timer of the earlier kind (a workflow that slept), still queued or pending from
        before an upgrade: it becomes a row, due `seconds` from now (late, never early)."""
        return self.fire(installation_id, repo, cause, seconds)

    @DBOS.step(name="nightshift.dispatch.fire", retries_allowed=True, max_attempts=5)
    def fire(self, installation_id: int, repo: str, cause: str, seconds: float) -> str:
        self.store.add_timer(repo, cause, installation_id, self.clock() + seconds)
        return f"timer:{repo}:{cause}"

    @DBOS.workflow(name=DISPATCH_WORKFLOW)
    def dispatch(self, installation_id: int, repo: str) -> str:
        me = DBOS.workflow_id or f"dispatch:{repo}"
        done = 0
        for round_number in range(MAX_ROUNDS):
            planned = self.plan(me, installation_id, repo, round_number)
            conflicted: set[int] = set()
            undelivered = False
            for action in planned:
                number = action.get("number")
                if isinstance(number, int) and number in conflicted:
                    continue  # this task moved since the decision: its other actions wait
                outcome = self.execute(me, installation_id, action)
                done += 1
                if outcome == "conflict" and isinstance(number, int):
                    conflicted.add(number)
                if action.get("kind") == "send_to_agent" and outcome == "failed":
                    undelivered = True
            if not undelivered:
                break
        return f"{done} action(s)"

    @DBOS.step(
        name="nightshift.dispatch.plan",
        retries_allowed=True,
        max_attempts=4,
        interval_seconds=2.0,
        backoff_rate=2.0,
    )
    def plan(self, me: str, installation_id: int, repo: str, round_number: int) -> list[Any]:
        """Gather the repository's facts and decide; the decision is this step's result."""
        if self.store.is_paused(repo):
            return []
        loaded = self.configs.load(installation_id, repo)
        if loaded.error is not None:
            return []  # the delivery rules tell the maintainers; nothing moves meanwhile
        config = loaded.config
        roster = self.configs.roster(installation_id, repo, config.roster_path)
        if roster is not None:
            self.store.remember_roster(repo, roster.agents)
        tasks = tuple(self.store.dispatch_tasks(repo))
        names = {a.name for a in roster.agents} if roster is not None else set()
        names |= {f.task.agent_name for f in tasks if f.task.agent_name}
        is_open, count = self.store.open_escalations(repo, f"all-offline:{repo}:")
        records = Records(self.store)
        facts = core.DispatchFacts(
            repo=repo,
            now=self.clock(),
            roster=roster,
            tasks=tasks,
            statuses=self.store.agent_statuses(names),
            loads=self.store.agent_loads(),
            finished=frozenset(self._finished(installation_id, repo, tasks)),
            records=records.scores(sorted(names)),
            history=tuple(records.history(repo)),
            all_offline_open=is_open,
            all_offline_count=count,
            web_url=self.web_url,
            heartbeat_url=self.heartbeat_url,
            roster_path=config.roster_path,
        )
        actions = core.decide(facts, config)
        if actions:
            self.store.record(
                AuditEntry(
                    kind="decision",
                    what=f"dispatch pass {round_number + 1}: {len(actions)} action(s)",
                    why="rules: dispatch",
                    delivery_id=me,
                    repository=repo,
                    detail={"actions": [a.describe() for a in actions]},
                )
            )
        dumped: list[Any] = ACTIONS_ADAPTER.dump_python(list(actions), mode="json")
        return dumped

    def _finished(self, installation_id: int, repo: str, tasks: tuple[TaskFacts, ...]) -> set[int]:
        """Dependencies of queued tasks that are satisfied: tasks merged or done, and other
        issues closed on GitHub."""
        wanted = {
            n for f in tasks if f.task.state in (State.QUEUED, State.BLOCKED) for n in f.depends_on
        }
        finished = self.store.finished_tasks(repo, wanted)
        active = {f.task.number for f in tasks}
        for number in sorted(wanted - finished - active):
            if self.github is None:
                break
            try:
                issue = github_facts.get(
                    self.github, installation_id, f"/repos/{repo}/issues/{number}"
                )
            except GitHubError as exc:
                if exc.status in (404, 410):
                    continue  # no such issue: the dependency cannot be met; it waits
                raise
            if isinstance(issue, dict) and issue.get("state") == "closed":
                finished.add(number)
        return finished

    @DBOS.step(
        name="nightshift.dispatch.execute",
        retries_allowed=True,
        max_attempts=4,
        interval_seconds=2.0,
        backoff_rate=2.0,
    )
    def execute(self, me: str, installation_id: int, action: dict[str, Any]) -> str:
        parsed = ACTION_ADAPTER.validate_python(action)
        return self.executor.execute(Context(me, installation_id), parsed)

    # the watchdog -------------------------------------------------------------------------

    def watch(self) -> list[str]:
        """Queue passes where heartbeats may have changed something; returns the repos.

        A pass is wanted where an agent holding a task has heartbeats that stopped (and it
        is not marked offline yet), where a heartbeat names a task still waiting for its
        acknowledgement, and, for an agent whose heartbeats came back after it was marked
        offline or unreachable, in the repositories where it holds tasks or whose roster
        lists it and tasks wait."""
        now = self.clock()
        rows = self.store.watch_list()
        statuses = self.store.agent_statuses()
        queued_repos = {repo for repo, _, state, _ in rows if state == "queued"}
        repos: set[str] = set()
        for repo, number, state, name in rows:
            status = statuses.get(name or "")
            if status is None or status.last_heartbeat is None:
                continue
            stale = now - status.last_heartbeat > WATCH_STALE_SECONDS
            if stale and status.offline_since is None:
                repos.add(repo)
            if state == "assigned" and status.task == core.task_id(repo, number):
                repos.add(repo)
        for name, status in statuses.items():
            marked = max(status.offline_since or 0.0, status.unreachable_since or 0.0)
            if marked and status.last_heartbeat is not None and status.last_heartbeat > marked:
                repos.update(r for r in self.store.rostered_in(name) if r in queued_repos)
                repos.update(repo for repo, _, _, holder in rows if holder == name)
        started = []
        for repo in sorted(repos):
            installation = self.store.installation_of(repo)
            if installation is None:
                continue
            self.queue_pass(installation, repo, f"watch:{int(now)}")
            started.append(repo)
        return started


_ENGINE: list[DispatchEngine] = []


def dispatch_engine() -> DispatchEngine:
    """The process's one dispatch engine instance, created on first use (before launch)."""
    if not _ENGINE:
        _ENGINE.append(DispatchEngine())
    return _ENGINE[0]
