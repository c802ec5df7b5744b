"""What the store remembers, read back as the report's data and the agents' records.

Everything here is derived from tables other parts of Nightshift keep anyway: the history of
every task move (`transitions`), the pull requests (`pulls`), CI re-runs (`ci_retries`),
escalations, the tasks and the agents' last heartbeats; plus `reports`, one row per report
run, which this module writes. So the records persist as long as that history does.

Periods are half-open, [since, until): `since` None means from the first record.

Sessions: a session is the autonomous work between two reports; it starts with the first
task accepted (intake, or `/nightshift approve`) after the last published report.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from app.core import estimates
from app.core import report as core
from app.core.estimates import NEUTRAL_SCORE, Sample
from app.core.report import AgentRecord, Pending, Problem, ReportData, TaskLine
from app.core.tasks import State
from app.effects.store import Store
from app.effects.tables import (
    agents,
    ci_retries,
    escalations,
    pulls,
    reports,
    tasks,
    transitions,
)

ACCEPTING = ("accept", "approve")  # the moves that put a task in the queue for the first time
ACKNOWLEDGING = ("acknowledge", "open_pr")  # a pull request is an acknowledgement too
COMPLETE = frozenset({State.MERGED.value, State.DONE.value})
NOT_REPORTED = frozenset({State.PROPOSED.value, State.REJECTED.value})
FINAL = frozenset({State.DONE.value, State.CANCELLED.value, State.REJECTED.value})
DEPARTURES = frozenset({State.ASSIGNED.value, State.IN_PROGRESS.value})
DEFAULT_TRIGGER_LABEL = "autonomous"


@dataclass(frozen=True)
class ReportRun:
    """One row of `reports`."""

    repo: str
    run_key: str
    period_end: float
    created_at: float
    period_start: float | None = None
    session: str | None = None
    session_start: float | None = None
    issue_number: int | None = None  # None: nothing to report
    report_date: str | None = None
    timezone: str | None = None


@dataclass(frozen=True)
class _Move:
    id: int
    repo: str
    number: int
    event: str
    from_state: str | None
    to_state: str
    agent: str | None
    at: float
    reason: str


@dataclass
class _Tally:
    completed: int = 0
    merged: int = 0
    clean: int = 0
    fix_rounds: int = 0
    ci_retries: int = 0
    escalations: int = 0
    lost: int = 0
    merge_seconds: list[float] = field(default_factory=list)
    ack_seconds: list[float] = field(default_factory=list)

    def record(self, agent: str) -> AgentRecord:
        return AgentRecord(
            agent=agent,
            tasks_completed=self.completed,
            prs_merged=self.merged,
            clean_merges=self.clean,
            fix_rounds=self.fix_rounds,
            ci_retries=self.ci_retries,
            escalations=self.escalations,
            lost=self.lost,
            merge_seconds=tuple(self.merge_seconds),
            ack_seconds=tuple(self.ack_seconds),
        )


@dataclass(frozen=True)
class _Completion:
    repo: str
    number: int
    agent: str | None
    at: float
    took: float | None  # from its last assignment
    clean: bool  # no fix round before it


@dataclass(frozen=True)
class _Failover:
    repo: str
    number: int
    lost_by: str | None
    to_agent: str | None
    at: float
    reason: str


def _inside(at: float, since: float | None, until: float | None) -> bool:
    return (since is None or at >= since) and (until is None or at < until)


class _History:
    """One repository's (or every repository's) records, read once, then looked at."""

    def __init__(self, store: Store, repo: str | None) -> None:
        def where(query: Any, table: sa.Table) -> Any:
            return query if repo is None else query.where(table.c.repo == repo)

        with store.engine.connect() as connection:
            rows = connection.execute(
                where(sa.select(transitions), transitions).order_by(
                    transitions.c.repo, transitions.c.number, transitions.c.at, transitions.c.id
                )
            ).all()
            self.tasks = {
                (str(r.repo), int(r.number)): r
                for r in connection.execute(where(sa.select(tasks), tasks)).all()
            }
            self.pulls = list(connection.execute(where(sa.select(pulls), pulls)).all())
            self.retries = list(
                connection.execute(
                    where(sa.select(ci_retries), ci_retries).order_by(ci_retries.c.at)
                ).all()
            )
            self.escalations = list(
                connection.execute(
                    where(sa.select(escalations), escalations).order_by(
                        escalations.c.created_at, escalations.c.key
                    )
                ).all()
            )
        self.timelines: dict[tuple[str, int], list[_Move]] = defaultdict(list)
        for r in rows:
            self.timelines[(str(r.repo), int(r.number))].append(
                _Move(
                    int(r.id),
                    str(r.repo),
                    int(r.number),
                    str(r.event),
                    r.from_state,
                    str(r.to_state),
                    r.agent,
                    float(r.at),
                    str(r.reason or ""),
                )
            )
        self.pulls_of: dict[tuple[str, int], list[Any]] = defaultdict(list)
        self.pull_by_head: dict[tuple[str, str], Any] = {}
        for p in sorted(self.pulls, key=lambda p: (p.updated_at, p.number)):
            self.pulls_of[(str(p.repo), int(p.task))].append(p)
            self.pull_by_head[(str(p.repo), str(p.head_sha))] = p
            if p.merged_sha:
                self.pull_by_head.setdefault((str(p.repo), str(p.merged_sha)), p)
        self.completions: list[_Completion] = []
        self.failovers: list[_Failover] = []
        self.acks: list[tuple[str, float, float]] = []  # agent, assigned at, seconds
        for timeline in self.timelines.values():
            self._walk(timeline)

    def _walk(self, timeline: list[_Move]) -> None:
        agent: str | None = None
        assigned: tuple[float, str | None] | None = None
        reworked = False
        for move in timeline:
            before = agent
            agent = move.agent
            if move.event in ("assign", "hand_over"):
                # a hand-over (a block held too long, escalation level 1) is a loss too
                left = move.event == "hand_over" or move.from_state in DEPARTURES
                if left and before and before != move.agent:
                    self.failovers.append(
                        _Failover(move.repo, move.number, before, move.agent, move.at, move.reason)
                    )
                assigned = (move.at, move.agent)
            elif move.event == "requeue":
                if before:
                    self.failovers.append(
                        _Failover(move.repo, move.number, before, None, move.at, move.reason)
                    )
                assigned = None
            elif move.event in ACKNOWLEDGING and move.from_state == State.ASSIGNED.value:
                if assigned is not None and assigned[1]:
                    self.acks.append((assigned[1], assigned[0], move.at - assigned[0]))
            elif move.event == "request_changes":
                reworked = True
            if move.to_state in COMPLETE and (move.from_state or "") not in COMPLETE:
                took = move.at - assigned[0] if assigned is not None else None
                self.completions.append(
                    _Completion(move.repo, move.number, move.agent, move.at, took, not reworked)
                )

    # looking up -----------------------------------------------------------------------------

    def agent_at(self, repo: str, number: int | None, at: float) -> str | None:
        """The task's agent (roster name) just after its last move at or before `at`."""
        if number is None:
            return None
        found: str | None = None
        for move in self.timelines.get((repo, number), ()):
            if move.at > at:
                break
            found = move.agent
        return found

    def pull_of(self, repo: str, number: int) -> Any | None:
        """The task's pull request: the merged one, else the latest."""
        found = self.pulls_of.get((repo, number), [])
        merged = [p for p in found if p.merged_sha]
        return (merged or found or [None])[-1]

    def merged_pulls(self, repo: str, number: int) -> int:
        return sum(1 for p in self.pulls_of.get((repo, number), ()) if p.merged_sha)

    def retry_task(self, repo: str, head_sha: str) -> tuple[int | None, int | None]:
        """(task, pull) of a CI re-run, when its commit is one Nightshift tracks."""
        pull = self.pull_by_head.get((repo, head_sha))
        return (int(pull.task), int(pull.number)) if pull is not None else (None, None)

    # figures ----------------------------------------------------------------------------------

    def agent_records(self, since: float | None, until: float | None) -> dict[str, AgentRecord]:
        tally: dict[str, _Tally] = defaultdict(_Tally)
        for done in self.completions:
            if done.agent and _inside(done.at, since, until):
                entry = tally[done.agent]
                entry.completed += 1
                entry.merged += max(1, self.merged_pulls(done.repo, done.number))
                entry.clean += int(done.clean)
                if done.took is not None:
                    entry.merge_seconds.append(done.took)
        for lost in self.failovers:
            if lost.lost_by and _inside(lost.at, since, until):
                tally[lost.lost_by].lost += 1
        for name, assigned_at, seconds in self.acks:
            if _inside(assigned_at, since, until):
                tally[name].ack_seconds.append(seconds)
        for timeline in self.timelines.values():
            for move in timeline:
                if (
                    move.event == "request_changes"
                    and move.agent
                    and _inside(move.at, since, until)
                ):
                    tally[move.agent].fix_rounds += 1
        for retry in self.retries:
            if not _inside(float(retry.at), since, until):
                continue
            task, _pull = self.retry_task(str(retry.repo), str(retry.head_sha))
            holder = self.agent_at(str(retry.repo), task, float(retry.at))
            if holder:
                tally[holder].ci_retries += 1
        for raised in self.escalations:
            if not _inside(float(raised.created_at), since, until):
                continue
            holder = self.agent_at(str(raised.repo), raised.number, float(raised.created_at))
            if holder:
                tally[holder].escalations += 1
        return {name: entry.record(name) for name, entry in sorted(tally.items())}

    def samples(self) -> list[Sample]:
        found = []
        for done in self.completions:
            if done.agent and done.took is not None:
                row = self.tasks.get((done.repo, done.number))
                labels = frozenset(row.labels or ()) if row is not None else frozenset()
                found.append(Sample(done.agent, labels, done.took))
        return found


class Records:
    """Queries over the store's database: the report's data, the agents' records, sessions,
    and the `reports` table."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # report runs --------------------------------------------------------------------------

    def runs(self, repo: str) -> list[ReportRun]:
        """The repository's report runs, oldest first."""
        with self.store.engine.connect() as connection:
            rows = connection.execute(
                sa.select(reports)
                .where(reports.c.repo == repo)
                .order_by(reports.c.period_end, reports.c.created_at)
            ).all()
        return [_run(row) for row in rows]

    def run(self, repo: str, run_key: str) -> ReportRun | None:
        with self.store.engine.connect() as connection:
            row = connection.execute(
                sa.select(reports).where(reports.c.repo == repo).where(reports.c.run_key == run_key)
            ).first()
        return _run(row) if row is not None else None

    def last_run(self, repo: str, before: float | None = None) -> ReportRun | None:
        """The latest run (published or not), optionally one that ended before `before`."""
        found = [r for r in self.runs(repo) if before is None or r.period_end < before]
        return found[-1] if found else None

    def last_published(self, repo: str, before: float | None = None) -> ReportRun | None:
        found = [
            r
            for r in self.runs(repo)
            if r.issue_number is not None and (before is None or r.period_end < before)
        ]
        return found[-1] if found else None

    def previous_report(self, repo: str, date: str) -> ReportRun | None:
        """The latest published report of another date than `date` (a report asked for
        again on the same date refreshes that date's issue: it is not its own previous)."""
        found = [r for r in self.runs(repo) if r.issue_number is not None and r.report_date != date]
        return found[-1] if found else None

    def record_run(self, run: ReportRun) -> bool:
        """Remember a run once; False when this run was recorded already."""
        dialect = sqlite if self.store.is_sqlite else postgresql
        statement = (
            dialect.insert(reports)
            .values(
                repo=run.repo,
                run_key=run.run_key,
                period_start=run.period_start,
                period_end=run.period_end,
                session=run.session,
                session_start=run.session_start,
                issue_number=run.issue_number,
                report_date=run.report_date,
                timezone=run.timezone,
                created_at=run.created_at,
            )
            .on_conflict_do_nothing(index_elements=["repo", "run_key"])
            .returning(reports.c.run_key)
        )
        with self.store.engine.begin() as connection:
            return connection.execute(statement).first() is not None

    # sessions -----------------------------------------------------------------------------

    def session_start(self, repo: str, before: float | None = None) -> float | None:
        """When the current session started: the first task accepted after the last
        published report (None: none accepted since)."""
        last = self.last_published(repo, before)
        query = (
            sa.select(sa.func.min(transitions.c.at))
            .where(transitions.c.repo == repo)
            .where(transitions.c.event.in_(ACCEPTING))
        )
        if last is not None:
            query = query.where(transitions.c.at >= last.period_end)
        if before is not None:
            query = query.where(transitions.c.at < before)
        with self.store.engine.connect() as connection:
            value = connection.execute(query).scalar_one_or_none()
        return float(value) if value is not None else None

    def session(self, repo: str, until: float, timezone: str) -> tuple[str, float | None]:
        """The session a report ending at `until` covers: (its label, when it started).

        A session that started since the last published report is new, numbered within
        the day it started; otherwise the work continues the previous report's session.
        """
        start = self.session_start(repo, until)
        if start is None:
            last = self.last_published(repo, until)
            return (last.session or "" if last is not None else ""), None
        date = core.report_date(start, timezone)
        prefix = f"{date}-session-"
        seen = {r.session for r in self.runs(repo) if r.session and r.session.startswith(prefix)}
        return core.session_label(date, len(seen) + 1), start

    # repositories -------------------------------------------------------------------------

    def repos_with_tasks(self) -> list[str]:
        with self.store.engine.connect() as connection:
            rows = connection.execute(sa.select(tasks.c.repo).distinct()).all()
        return sorted(str(r) for (r,) in rows)

    def first_activity(self, repo: str) -> float | None:
        """When Nightshift first recorded a task of the repository."""
        with self.store.engine.connect() as connection:
            value = connection.execute(
                sa.select(sa.func.min(tasks.c.created_at)).where(tasks.c.repo == repo)
            ).scalar_one_or_none()
        return float(value) if value is not None else None

    # the agents' records --------------------------------------------------------------------

    def agent_records(
        self, repo: str | None = None, since: float | None = None, until: float | None = None
    ) -> dict[str, AgentRecord]:
        """Per agent (roster name): tasks completed, PRs merged, fix rounds, CI retries,
        escalations, tasks lost, times to acknowledge and to merge; `repo` None: all."""
        return _History(self.store, repo).agent_records(since, until)

    def history(self, repo: str | None = None) -> list[Sample]:
        """Past tasks merged (agent, labels, assigned -> merged), for estimates."""
        return _History(self.store, repo).samples()

    def estimate(
        self,
        repo: str,
        agent: str | None,
        labels: Iterable[str],
        *,
        ignore: Iterable[str] = (),
    ) -> estimates.Estimate:
        """The estimate for a new task (app.core.estimates), from this repository's past."""
        return estimates.estimate(self.history(repo), agent, labels, ignore=ignore)

    def scores(
        self, names: Iterable[str] | None = None, repo: str | None = None
    ) -> dict[str, float]:
        """Each agent's record score (higher is better), over all repositories unless
        `repo`; agents in `names` without a record get the neutral score."""
        records = self.agent_records(repo)
        found = {name: record.score for name, record in records.items()}
        for name in names or ():
            found.setdefault(name, NEUTRAL_SCORE)
        return found

    # the report ---------------------------------------------------------------------------

    def report_data(
        self,
        repo: str,
        since: float | None,
        until: float,
        *,
        timezone: str = "UTC",
        session: str = "",
        previous: int | None = None,
        ignore_labels: Sequence[str] = ("autonomous",),
    ) -> ReportData:
        """Everything the report of [since, until) shows (task states are as they are now)."""
        seen = _History(self.store, repo)
        inside = [
            move
            for timeline in seen.timelines.values()
            for move in timeline
            if _inside(move.at, since, until)
        ]
        moved = {move.number for move in inside}
        state = {number: str(row.state) for (_, number), row in seen.tasks.items()}
        numbers = sorted(
            number
            for number, now in state.items()
            if now not in NOT_REPORTED and (number in moved or now not in FINAL)
        )
        history = seen.samples()
        completion = {c.number: c for c in seen.completions if c.at < until}
        progress = self._progress(repo)
        lines = [
            self._task_line(
                seen, repo, number, history, completion.get(number), progress, ignore_labels
            )
            for number in numbers
        ]
        problems = self._problems(seen, repo, since, until, state)
        decisions, urgent = _pending(seen, until)
        records = seen.agent_records(since, until)
        for line in lines:
            if line.agent and line.agent not in records and line.state not in FINAL:
                records[line.agent] = AgentRecord(agent=line.agent)
        merged = sum(
            max(1, seen.merged_pulls(repo, c.number))
            for c in seen.completions
            if _inside(c.at, since, until)
        )
        return ReportData(
            repo=repo,
            until=until,
            since=since,
            timezone=timezone,
            session=session,
            tasks=tuple(lines),
            problems=tuple(problems),
            decisions=decisions,
            urgent=urgent,
            agents=tuple(records[name] for name in sorted(records)),
            moves=len(inside),
            merged_pulls=merged,
            previous=previous,
        )

    def _progress(self, repo: str) -> dict[tuple[str, str], int]:
        """(agent, task id) -> percent done, from the agents' last heartbeats."""
        with self.store.engine.connect() as connection:
            rows = connection.execute(
                sa.select(agents.c.name, agents.c.task, agents.c.progress).where(
                    agents.c.progress.is_not(None)
                )
            ).all()
        return {
            (str(n), str(t)): max(0, min(100, int(p)))
            for n, t, p in rows
            if str(t).startswith(f"{repo}#")
        }

    def _task_line(
        self,
        seen: _History,
        repo: str,
        number: int,
        history: Sequence[Sample],
        done: _Completion | None,
        progress: dict[tuple[str, str], int],
        ignore_labels: Sequence[str],
    ) -> TaskLine:
        row = seen.tasks[(repo, number)]
        now = str(row.state)
        agent = row.agent_name or row.agent or (done.agent if done is not None else None)
        pull = seen.pull_of(repo, number)
        waiting = row.waiting
        if now in ("blocked", "escalated", "paused") and not waiting:
            into = [m for m in seen.timelines.get((repo, number), ()) if m.to_state == now]
            waiting = core.plain_reason(into[-1].reason) if into and into[-1].reason else None
        line = TaskLine(
            number=number,
            title=str(row.title or ""),
            state=now,
            agent=str(agent) if agent else None,
            pull=int(pull.number) if pull is not None else None,
            pull_merged=bool(pull is not None and pull.merged_sha),
            # its latest review's test report (`review.tests_report`), when one was read
            tests_passed=pull.tests_passed if pull is not None else None,
            tests_failed=pull.tests_failed if pull is not None else None,
            progress=progress.get((str(row.agent_name), f"{repo}#{number}"))
            if now == State.IN_PROGRESS.value
            else None,
            waiting=waiting,
            level=int(row.level or 0) if now == State.BLOCKED.value else 0,
        )
        if now in COMPLETE:
            return replace(line, took=done.took if done is not None else None)
        if now in FINAL:
            return line
        chosen = str(row.agent_name) if row.agent_name else None
        value = estimates.estimate(history, chosen, row.labels or (), ignore=ignore_labels)
        return replace(line, estimate=value)

    def _problems(
        self,
        seen: _History,
        repo: str,
        since: float | None,
        until: float,
        state: dict[int, str],
    ) -> list[Problem]:
        found: list[Problem] = []
        # CI re-runs, per pull request (or per commit Nightshift does not track)
        ci: dict[tuple[int | None, str], list[Any]] = defaultdict(list)
        for retry in seen.retries:
            if _inside(float(retry.at), since, until):
                _task, pull = seen.retry_task(repo, str(retry.head_sha))
                ci[(pull, str(retry.head_sha) if pull is None else "")].append(retry)
        for (pull, head), runs in ci.items():
            task, _ = seen.retry_task(repo, str(runs[0].head_sha))
            found.append(
                Problem(
                    kind="ci",
                    at=float(runs[0].at),
                    task=task,
                    pull=pull,
                    count=len(runs),
                    detail=f"commit {head[:7]}" if head else "",
                    agent=seen.agent_at(repo, task, float(runs[0].at)),
                    outcome=state.get(task) if task is not None else None,
                )
            )
        # fix rounds, per task
        rounds: dict[int, list[_Move]] = defaultdict(list)
        for (_, number), timeline in seen.timelines.items():
            for move in timeline:
                if move.event == "request_changes" and _inside(move.at, since, until):
                    rounds[number].append(move)
        for number, moves in rounds.items():
            pull = seen.pull_of(repo, number)
            found.append(
                Problem(
                    kind="fix-rounds",
                    at=moves[0].at,
                    task=number,
                    pull=int(pull.number) if pull is not None else None,
                    count=len(moves),
                    agent=moves[0].agent,
                    outcome=state.get(number),
                )
            )
        # agents that lost tasks
        for lost in seen.failovers:
            if not _inside(lost.at, since, until):
                continue
            to_agent = lost.to_agent
            if to_agent is None:  # requeued: who took it later, if anyone
                later = [
                    m
                    for m in seen.timelines.get((repo, lost.number), ())
                    if m.event in ("assign", "hand_over") and lost.at < m.at < until
                ]
                to_agent = later[0].agent if later else None
            found.append(
                Problem(
                    kind="failover",
                    at=lost.at,
                    task=lost.number,
                    detail=lost.reason,
                    agent=lost.lost_by,
                    to_agent=to_agent,
                    outcome=state.get(lost.number),
                )
            )
        # blocks (conflicts, limits exhausted, dependency cycles, ...)
        for (_, number), timeline in seen.timelines.items():
            for index, move in enumerate(timeline):
                if move.to_state != State.BLOCKED.value or not _inside(move.at, since, until):
                    continue
                after = [
                    m
                    for m in timeline[index + 1 :]
                    if m.from_state == State.BLOCKED.value and m.at < until
                ]
                found.append(
                    Problem(
                        kind="blocked",
                        at=move.at,
                        task=number,
                        detail=move.reason,
                        agent=move.agent,
                        resolved_at=after[0].at if after else None,
                        outcome=state.get(number),
                    )
                )
        # escalations raised
        for raised in seen.escalations:
            at = float(raised.created_at)
            if not _inside(at, since, until):
                continue
            resolved = raised.resolved_at
            found.append(
                Problem(
                    kind="escalation",
                    at=at,
                    task=raised.number,
                    detail=str(raised.summary),
                    agent=seen.agent_at(repo, raised.number, at),
                    level=str(raised.level),
                    category=str(raised.category),
                    resolved_at=float(resolved)
                    if resolved is not None and resolved < until
                    else None,
                    outcome=state.get(raised.number) if raised.number is not None else None,
                )
            )
        order = {"escalation": 0, "blocked": 1, "failover": 2, "fix-rounds": 3, "ci": 4}
        return sorted(found, key=lambda p: (p.at, order[p.kind], p.task or 0))


def build_report(
    records: Records,
    repo: str,
    since: float | None,
    until: float,
    *,
    timezone: str = "UTC",
    trigger_label: str = DEFAULT_TRIGGER_LABEL,
) -> ReportData:
    """The report of [since, until) from the store: its session and the previous report."""
    session, _start = records.session(repo, until, timezone)
    previous = records.previous_report(repo, core.report_date(until, timezone))
    return records.report_data(
        repo,
        since,
        until,
        timezone=timezone,
        session=session,
        previous=previous.issue_number if previous is not None else None,
        ignore_labels=(trigger_label,),
    )


def _pending(seen: _History, until: float) -> tuple[tuple[Pending, ...], tuple[Pending, ...]]:
    """(deferred, immediate) escalations raised before `until` and not resolved by then."""
    deferred: list[Pending] = []
    immediate: list[Pending] = []
    for raised in seen.escalations:
        at = float(raised.created_at)
        if at >= until or (raised.resolved_at is not None and raised.resolved_at < until):
            continue
        pending = Pending(
            level=str(raised.level),
            category=str(raised.category),
            summary=str(raised.summary),
            at=at,
            task=raised.number,
            meanwhile=raised.meanwhile,
            reversible=raised.reversible,
        )
        (immediate if raised.level == "immediate" else deferred).append(pending)
    return tuple(deferred), tuple(immediate)


def _run(row: Any) -> ReportRun:
    return ReportRun(
        repo=str(row.repo),
        run_key=str(row.run_key),
        period_start=row.period_start,
        period_end=float(row.period_end),
        session=row.session,
        session_start=row.session_start,
        issue_number=row.issue_number,
        report_date=row.report_date,
        timezone=row.timezone,
        created_at=float(row.created_at),
    )
