"""The morning report, as durable workflows: one rolling issue per repository.

A report run (`nightshift.report`, one workflow per repository and run) gathers the period's
records (app.effects.records), lets the core render them (app.core.report) and publishes:

1. nothing to report: no new issue; at most one line on the previous report, once;
2. otherwise a new issue `Autonomous Operation Report — YYYY-MM-DD`, labelled
   `nightshift:report`, opened through the executor with the key `report:{repo}:{date}`
   (so a re-run finds it instead of opening a second; a second run on the same date
   refreshes that issue's body);
3. the previous report is told where the new one is, and closed;
4. the run is recorded (`reports`): the next period starts where this one ended.

The schedule: one DBOS schedule (`nightshift-report-tick`, every minute, shared by every
worker: DBOS starts each minute's tick once) runs `nightshift.report.tick`, which asks,
for each repository with tasks, whether its `report.schedule` (cron, in its
`report.timezone`) fired since its last report run, and starts that repository's run with
the workflow id `report:{repo}:{fire time}`: a restart, a late tick or a second worker
starts the same workflow, which runs once.

`render_report` is the same report, from the store alone, for `nightshift report`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from dbos import DBOS, DBOSConfiguredInstance

from app.core import labels
from app.core import report as core
from app.core.actions import ACTION_ADAPTER, Comment, OpenIssue
from app.core.report import ReportData
from app.effects import facts
from app.effects.executor import Context, Executor
from app.effects.github import GitHubError, GitHubPort, GitHubRequest, marker
from app.effects.records import DEFAULT_TRIGGER_LABEL, Records, ReportRun, build_report
from app.effects.repo_config import ConfigSource
from app.effects.store import AuditEntry, Store
from app.engine.starter import Starter

log = logging.getLogger("nightshift.report")

REPORT_QUEUE = "nightshift-reports"
REPORT_WORKFLOW = "nightshift.report"
TICK_WORKFLOW = "nightshift.report.tick"
TICK_SCHEDULE = "nightshift-report-tick"
TICK_CRON = "* * * * *"
SCHEDULE_CACHE_SECONDS = 600.0  # a changed `report.schedule` counts within ten minutes
MAX_PULL_STATS = 50  # pull requests whose size is read from GitHub for one report


def report_id(repo: str, run_key: str) -> str:
    """The workflow id: one run per repository and fire time (or command)."""
    return f"report:{repo}:{run_key}"


def fire_key(at: float) -> str:
    """A fire time as a run key: ISO 8601 in UTC, e.g. `2026-01-02T06:00:00+00:00`."""
    return datetime.fromtimestamp(at, tz=UTC).isoformat()


def issue_key(repo: str, date: str) -> str:
    """The report issue's key: one issue per repository and date."""
    return f"report:{repo}:{date}"


def render_report(
    store: Store,
    repo: str,
    since: float | None,
    until: float,
    *,
    timezone: str = "UTC",
    trigger_label: str = DEFAULT_TRIGGER_LABEL,
) -> str:
    """The report's markdown from the store alone (no GitHub: pull request sizes, which a
    published report reads from GitHub, are left out)."""
    data = build_report(
        Records(store), repo, since, until, timezone=timezone, trigger_label=trigger_label
    )
    return core.render(data)


@DBOS.dbos_class()
class ReportEngine(DBOSConfiguredInstance):
    """The report workflows, bound to this process's ports (one instance per process)."""

    store: Store
    records: Records
    executor: Executor
    github: GitHubPort | None
    configs: ConfigSource

    def __init__(self) -> None:
        super().__init__(config_name="reports")
        self.starter = Starter()
        self._schedules: dict[str, tuple[float, str, str]] = {}
        self._schedules_lock = threading.Lock()
        self.clock: Callable[[], float] = time.time

    def bind(
        self,
        store: Store,
        executor: Executor,
        github: GitHubPort | None,
        configs: ConfigSource,
        *,
        system_database_url: str,
        version: str,
        clock: Callable[[], float] = time.time,
    ) -> ReportEngine:
        self.store = store
        self.records = Records(store)
        self.executor = executor
        self.github = github
        self.configs = configs
        self.starter.bind(system_database_url, version)
        self.clock = clock
        with self._schedules_lock:
            self._schedules.clear()
        return self

    def launch(
        self, *, concurrency: int = 2, schedule: bool = True, polling_interval: float = 1.0
    ) -> None:
        """After `DBOS.launch()`: the report queue (one run per repository at a time) and,
        unless `schedule` is off, the minute tick's schedule (created once; every worker
        shares it, and DBOS starts each minute's tick once)."""
        DBOS.register_queue(
            REPORT_QUEUE,
            worker_concurrency=concurrency,
            partition_concurrency=1,
            polling_interval_sec=polling_interval,
        )
        if not schedule:
            return
        existing = DBOS.get_schedule(TICK_SCHEDULE)
        if (
            existing is None
            or existing["schedule"] != TICK_CRON
            or existing["workflow_name"] != TICK_WORKFLOW
            or existing["status"] != "ACTIVE"
        ):
            DBOS.apply_schedules(
                [
                    {
                        "schedule_name": TICK_SCHEDULE,
                        "workflow_fn": report_tick,
                        "schedule": TICK_CRON,
                    }
                ]
            )

    # starting -----------------------------------------------------------------------------

    def start_report(self, installation_id: int, repo: str, run_key: str, until: float) -> str:
        """Enqueue the report run `run_key` of the repository (idempotent: a second start of
        the same run returns the first). From outside a workflow, or from a step (the
        executor's, for `/nightshift report`, with `run_key` `command:<delivery>`)."""
        return self.starter.enqueue(
            self,
            REPORT_WORKFLOW,
            REPORT_QUEUE,
            report_id(repo, run_key),
            installation_id,
            repo,
            run_key,
            until,
            partition=repo,
        )

    def close(self) -> None:
        self.starter.close()

    # the schedule -------------------------------------------------------------------------

    def tick(self, now: float) -> list[str]:
        """Start the runs due at `now` (called by the tick workflow, so each is a step)."""
        started = []
        for item in self.due(now):
            started.append(
                self.start(item["installation_id"], item["repo"], item["run_key"], item["until"])
            )
        return started

    @DBOS.step(name="nightshift.report.due", retries_allowed=True, max_attempts=3)
    def due(self, now: float) -> list[dict[str, Any]]:
        """The repositories whose schedule fired since their last report run."""
        found = []
        for repo in self.records.repos_with_tasks():
            try:
                item = self._due(repo, now)
            except Exception:  # one repository's trouble (its configuration unreadable, ...)
                log.exception("report: cannot tell whether %s is due", repo)
                continue
            if item is not None:
                found.append(item)
        return found

    def _due(self, repo: str, now: float) -> dict[str, Any] | None:
        if self.store.is_paused(repo):
            return None
        installation = self.store.installation_of(repo)
        if installation is None:
            return None
        schedule, timezone = self._schedule(installation, repo)
        last = self.records.last_run(repo)
        after = last.period_end if last is not None else self.records.first_activity(repo)
        fired = core.due_fire(schedule, timezone, now, after)
        if fired is None:
            return None
        return {
            "installation_id": installation,
            "repo": repo,
            "run_key": fire_key(fired),
            "until": fired,
        }

    def _schedule(self, installation_id: int, repo: str) -> tuple[str, str]:
        """The repository's `report.schedule` and `report.timezone`, read at most every ten
        minutes (the tick runs every minute, for every repository)."""
        now = time.monotonic()
        with self._schedules_lock:
            cached = self._schedules.get(repo)
        if cached is not None and now - cached[0] < SCHEDULE_CACHE_SECONDS:
            return cached[1], cached[2]
        config = self.configs.load(installation_id, repo).config
        found = (config.report.schedule, config.report.timezone)
        with self._schedules_lock:
            self._schedules[repo] = (now, *found)
        return found

    @DBOS.step(name="nightshift.report.start", retries_allowed=True, max_attempts=4)
    def start(self, installation_id: int, repo: str, run_key: str, until: float) -> str:
        return self.start_report(installation_id, repo, run_key, until)

    # the workflow -------------------------------------------------------------------------

    @DBOS.workflow(name=REPORT_WORKFLOW)
    def publish(self, installation_id: int, repo: str, run_key: str, until: float) -> str:
        me = DBOS.workflow_id or report_id(repo, run_key)
        plan = self.prepare(installation_id, repo, run_key, until)
        if plan.get("skip"):
            return str(plan["skip"])
        previous: int | None = plan["previous"]
        if plan["nothing"]:
            if previous is not None:
                note = Comment(
                    repo=repo,
                    number=previous,
                    body=core.NOTHING_NEW.format(date=plan["date"]),
                    key=f"report-idle:{repo}#{previous}",
                    reason="report: nothing new to report since this one",
                )
                self.execute(me, installation_id, ACTION_ADAPTER.dump_python(note))
            self.remember(repo, run_key, plan, None)
            return "nothing to report"
        key = issue_key(repo, plan["date"])
        opened = OpenIssue(
            repo=repo,
            title=plan["title"],
            body=plan["body"],
            labels=(labels.REPORT_LABEL,),
            key=key,
            reason=f"report: the report of {plan['date']}",
        )
        outcome = self.execute(me, installation_id, ACTION_ADAPTER.dump_python(opened))
        number = self.opened(key) if outcome in ("sent", "skipped") else None
        if number is None:
            return outcome  # dry-run (recorded), or GitHub refused (failed): nothing more
        if outcome == "skipped":
            # today's report exists (asked for earlier, or a re-run): it shows the newest
            body = f"{plan['body']}\n\n{marker(key)}"
            self.patch_issue(me, installation_id, repo, number, {"body": body}, "refreshed")
        if previous is not None and previous != number:
            told = Comment(
                repo=repo,
                number=previous,
                body=core.SUPERSEDED.format(number=number, date=plan["date"]),
                key=f"report-superseded:{repo}#{previous}",
                reason=f"report: superseded by #{number}",
            )
            self.execute(me, installation_id, ACTION_ADAPTER.dump_python(told))
            closing = {"state": "closed", "state_reason": "completed"}
            self.patch_issue(me, installation_id, repo, previous, closing, "closed")
        self.remember(repo, run_key, plan, number)
        return f"published #{number}"

    @DBOS.step(
        name="nightshift.report.prepare",
        retries_allowed=True,
        max_attempts=4,
        interval_seconds=2.0,
        backoff_rate=2.0,
    )
    def prepare(
        self, installation_id: int, repo: str, run_key: str, until: float
    ) -> dict[str, Any]:
        """Gather and render; the rendered report is this step's checkpointed result."""
        if self.store.is_paused(repo):
            return {"skip": "paused"}
        if self.records.run(repo, run_key) is not None:
            return {"skip": "already run"}
        config = self.configs.load(installation_id, repo).config
        timezone = config.report.timezone
        last = self.records.last_run(repo, before=until)
        since = last.period_end if last is not None else None
        session, session_start = self.records.session(repo, until, timezone)
        data = build_report(
            self.records,
            repo,
            since,
            until,
            timezone=timezone,
            trigger_label=config.trigger_label,
        )
        nothing = core.nothing_to_report(data)
        if not nothing:
            data = self._with_pull_sizes(installation_id, data)
        return {
            "nothing": nothing,
            "title": core.title(data),
            "body": core.fit(core.render(data)),
            "date": core.report_date(until, timezone),
            "previous": data.previous,
            "since": since,
            "until": until,
            "session": session or None,
            "session_start": session_start,
            "timezone": timezone,
        }

    def _with_pull_sizes(self, installation_id: int, data: ReportData) -> ReportData:
        """Files and lines each pull request changes, as GitHub counts them."""
        if self.github is None:
            return data
        tasks = []
        for index, task in enumerate(data.tasks):
            if task.pull is None or index >= MAX_PULL_STATS:
                tasks.append(task)
                continue
            try:
                pull = facts.get(
                    self.github, installation_id, f"/repos/{data.repo}/pulls/{task.pull}"
                )
            except GitHubError as exc:
                log.warning("report: cannot read %s#%s: %s", data.repo, task.pull, exc)
                tasks.append(task)
                continue
            tasks.append(
                replace(
                    task,
                    files_changed=_int(pull.get("changed_files")),
                    additions=_int(pull.get("additions")),
                    deletions=_int(pull.get("deletions")),
                )
            )
        return replace(data, tasks=tuple(tasks))

    # steps: carrying out ------------------------------------------------------------------

    @DBOS.step(
        name="nightshift.report.execute",
        retries_allowed=True,
        max_attempts=4,
        interval_seconds=2.0,
        backoff_rate=2.0,
    )
    def execute(self, me: str, installation_id: int, action: dict[str, Any]) -> str:
        parsed = ACTION_ADAPTER.validate_python(action)
        return self.executor.execute(Context(me, installation_id), parsed)

    @DBOS.step(name="nightshift.report.opened", retries_allowed=True, max_attempts=4)
    def opened(self, key: str) -> int | None:
        """The number of the issue opened with `key` (the executor remembers it)."""
        value = self.store.effect_result(key)
        return int(value) if value is not None and value.isdigit() else None

    @DBOS.step(
        name="nightshift.report.patch-issue",
        retries_allowed=True,
        max_attempts=4,
        interval_seconds=2.0,
        backoff_rate=2.0,
    )
    def patch_issue(
        self,
        me: str,
        installation_id: int,
        repo: str,
        number: int,
        fields: dict[str, Any],
        what: str,
    ) -> str:
        """Update an issue (the executor has no action for it): refresh a report's body, or
        close the previous report. Idempotent: the same PATCH again changes nothing.

        https://docs.github.com/en/rest/issues/issues#update-an-issue
        """
        request = GitHubRequest("PATCH", f"/repos/{repo}/issues/{number}", fields)
        entry = AuditEntry(
            kind="action",
            what=f"{repo}#{number}:{what}",
            why=f"report: {what} the report issue",
            delivery_id=me,
            repository=repo,
            detail={"request": {"method": request.method, "path": request.path}},
        )
        if self.executor.dry_run or self.executor.github is None:
            self.store.record(replace(entry, kind="dry-run", why=f"{entry.why} (dry-run)"))
            return "recorded"
        try:
            self.executor.github.send(installation_id, request)
        except GitHubError as exc:
            self.store.record(replace(entry, kind="error", why=f"{entry.why}: {exc}"))
            if exc.transient:
                raise  # the step runs again, with back-off
            return "failed"  # deleted, locked, no permission: the report stands anyway
        self.store.record(entry)
        return "sent"

    @DBOS.step(name="nightshift.report.remember", retries_allowed=True, max_attempts=4)
    def remember(self, repo: str, run_key: str, plan: dict[str, Any], number: int | None) -> bool:
        """Record the run (not in dry-run: then Nightshift's own state does not change)."""
        if self.executor.dry_run:
            return False
        return self.records.record_run(
            ReportRun(
                repo=repo,
                run_key=run_key,
                period_start=plan["since"],
                period_end=float(plan["until"]),
                created_at=self.clock(),
                session=plan["session"] if number is not None else None,
                session_start=plan["session_start"] if number is not None else None,
                issue_number=number,
                report_date=plan["date"],
                timezone=plan["timezone"],
            )
        )


@DBOS.workflow(name=TICK_WORKFLOW)
def report_tick(scheduled_at: datetime, context: Any) -> None:
    """Every minute (the `nightshift-report-tick` schedule): start the report runs due."""
    report_engine().tick(scheduled_at.timestamp())


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


_ENGINE: list[ReportEngine] = []


def report_engine() -> ReportEngine:
    """The process's one report engine instance, created on first use (before launch)."""
    if not _ENGINE:
        _ENGINE.append(ReportEngine())
    return _ENGINE[0]
