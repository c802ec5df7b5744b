"""The morning report: one rolling issue that says what happened, what waits for a person,
and how each agent did (DESIGN.md §4, the seeds' "Completion Report").

Rendered from `ReportData`, which the effects layer gathers from the store
(app.effects.records); deciding what to recommend is a fixed list of rules over that data.
Issue titles, reasons and summaries are data, never markdown: every piece of such text goes
through `safe`, so it cannot break a table, open a link, hide a marker or mention anyone.

Pure: the data carries the times, and the schedule is computed from a given `now`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from statistics import median
from typing import Literal
from zoneinfo import ZoneInfo

from croniter import croniter  # type: ignore[import-untyped]

from app.core.estimates import Estimate, describe, format_duration, record_score

TITLE = "Autonomous Operation Report — {date}"
HEADING = "# Autonomous Operation Report"
SUPERSEDED = "Superseded by #{number}, the report of {date}."
NOTHING_NEW = (
    "Nothing new to report on {date}: no task moved, nothing was merged and nothing was "
    "escalated since this report."
)
NO_TASKS = "_No task was active in this period._"
NO_ISSUES = "_None._"
NO_DECISIONS = "_None._"
NO_AGENTS = "_No agent worked on a task in this period._"
NOTHING_TO_DO = "Nothing needs your attention."
ALL_DONE = (
    "All {count} task(s) were completed and merged after passing both review gates; "
    "nothing needs your attention."
)
# thresholds of the recommendations
FLAKY_CI_RETRIES = 3  # re-runs in one period, over all pull requests
FLAKY_CI_PER_PULL = 2  # re-runs of one pull request
MANY_FIX_ROUNDS = 3  # one agent's fix rounds in one period
TITLE_LIMIT = 120
TEXT_LIMIT = 300
# GitHub refuses an issue body over 65,536 characters; room is left for the hidden marker
BODY_LIMIT = 65_000
TRUNCATED = (
    "\n\n_The report is too long for one issue and was cut here: `nightshift report` "
    "prints it in full._\n"
)

COMPLETE = frozenset({"merged", "done"})
STATUS_WORDS = {
    "proposed": "PROPOSED",
    "awaiting_approval": "AWAITING APPROVAL",
    "queued": "QUEUED",
    "assigned": "ASSIGNED",
    "in_progress": "IN PROGRESS",
    "in_review": "IN REVIEW",
    "changes_requested": "CHANGES REQUESTED",
    "merged": "COMPLETE",
    "done": "COMPLETE",
    "blocked": "BLOCKED",
    "escalated": "ESCALATED",
    "paused": "PAUSED",
    "cancelled": "CANCELLED",
    "rejected": "REJECTED",
}
# what each level of a block's escalation path did (app.core.dispatch)
LEVEL_WORDS = {
    1: "no peer or backup could take it",
    2: "the lead was asked",
    3: "an urgent escalation is open",
}
CONTINUING = frozenset({"assigned", "in_progress", "in_review", "changes_requested"})

ProblemKind = Literal["ci", "fix-rounds", "failover", "blocked", "escalation"]


@dataclass(frozen=True)
class TaskLine:
    """One task's status, as the report shows it; None: not known (the line is left out)."""

    number: int
    title: str
    state: str
    agent: str | None = None  # its roster name (or GitHub login)
    pull: int | None = None
    pull_merged: bool = False
    files_changed: int | None = None
    additions: int | None = None
    deletions: int | None = None
    tests_passed: int | None = None
    tests_failed: int | None = None
    progress: int | None = None  # percent done, from the agent's last heartbeat
    waiting: str | None = None  # why it waits or is blocked, as told on the issue
    level: int = 0  # blocked: the escalation level its block reached (1 peer, 2 lead, 3 urgent)
    estimate: Estimate | None = None  # for work not finished
    took: float | None = None  # finished: seconds from its assignment to its merge


@dataclass(frozen=True)
class Problem:
    """Something that went wrong in the period, with what became of it."""

    kind: ProblemKind
    at: float
    task: int | None = None
    pull: int | None = None
    count: int = 1  # CI re-runs, fix rounds
    detail: str = ""  # the recorded reason or summary (untrusted pieces in it are escaped)
    agent: str | None = None  # whose task it was (failover: the agent that lost it)
    to_agent: str | None = None  # failover: the agent that got the task
    level: str | None = None  # escalation: immediate | deferred
    category: str | None = None  # escalation: security, conflict, ...
    resolved_at: float | None = None  # unblocked, or the escalation resolved
    outcome: str | None = None  # the task's state now (merged, blocked, ...)


@dataclass(frozen=True)
class Pending:
    """An escalation not resolved yet: a decision for review (deferred) or an urgent one."""

    level: str
    category: str
    summary: str
    at: float
    task: int | None = None
    meanwhile: str | None = None  # what was done meanwhile
    reversible: bool | None = None


@dataclass(frozen=True)
class AgentRecord:
    """One agent's figures over a period (or over all its history)."""

    agent: str
    tasks_completed: int = 0
    prs_merged: int = 0
    clean_merges: int = 0  # tasks completed whose pull request needed no fix round
    fix_rounds: int = 0
    ci_retries: int = 0
    escalations: int = 0
    lost: int = 0  # tasks taken from it (no acknowledgement, no heartbeats, unreachable)
    merge_seconds: tuple[float, ...] = ()  # assigned -> merged, per task completed
    ack_seconds: tuple[float, ...] = ()  # assigned -> acknowledged, per assignment

    @property
    def median_merge(self) -> float | None:
        return float(median(self.merge_seconds)) if self.merge_seconds else None

    @property
    def median_ack(self) -> float | None:
        return float(median(self.ack_seconds)) if self.ack_seconds else None

    @property
    def score(self) -> float:
        """The scheduler's tie-break (app.core.estimates.record_score)."""
        return record_score(self.tasks_completed, self.clean_merges, self.lost)


@dataclass(frozen=True)
class ReportData:
    repo: str
    until: float  # the end of the period (the schedule's fire time, or when asked)
    since: float | None  # its start: the previous report run (None: all history)
    timezone: str = "UTC"
    session: str = ""
    tasks: tuple[TaskLine, ...] = ()
    problems: tuple[Problem, ...] = ()
    decisions: tuple[Pending, ...] = ()  # deferred escalations not resolved
    urgent: tuple[Pending, ...] = ()  # immediate escalations not resolved
    agents: tuple[AgentRecord, ...] = ()
    moves: int = 0  # task transitions in the period
    merged_pulls: int = 0  # pull requests merged in the period
    previous: int | None = None  # the previous report's issue
    notes: tuple[str, ...] = field(default_factory=tuple)  # extra lines for the header


# -- text ------------------------------------------------------------------------------------

_MENTION = re.compile(r"@(?=[A-Za-z0-9_-])")
_SPECIAL = re.compile(r"([\\`*_\[\]|])")
_PREFIX = re.compile(r"^[a-z][a-z-]*: ")  # "dispatch: ", "review: ": which rule wrote it


def safe(text: str | None, limit: int = TEXT_LIMIT) -> str:
    """Untrusted text as one inert line of markdown: no table breaks (`|`), no links or
    emphasis, no HTML (so no hidden markers), no @-mentions (a zero-width joiner after `@`)."""
    flat = " ".join((text or "").split())
    if len(flat) > limit:
        flat = flat[: limit - 1].rstrip() + "…"
    flat = flat.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    flat = _SPECIAL.sub(r"\\\1", flat)
    return _MENTION.sub("@\u200d", flat)


def plain_reason(text: str) -> str:
    """A recorded reason without the name of the rule that wrote it."""
    return _PREFIX.sub("", text.strip(), count=1)


def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def local(ts: float, timezone: str) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC).astimezone(_zone(timezone))


def clock(ts: float, timezone: str) -> str:
    """`2026-01-02 06:00 CET`."""
    return local(ts, timezone).strftime("%Y-%m-%d %H:%M %Z")


def report_date(ts: float, timezone: str) -> str:
    return local(ts, timezone).strftime("%Y-%m-%d")


def title(data: ReportData) -> str:
    return TITLE.format(date=report_date(data.until, data.timezone))


def session_label(date: str, ordinal: int) -> str:
    """`2025-12-30-session-01`: the date the session started, and which of that day's."""
    return f"{date}-session-{ordinal:02d}"


def _plural(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else (many or one + 's')}"


def _times(count: int) -> str:
    return {1: "once", 2: "twice"}.get(count, f"{count} times")


# -- the schedule ----------------------------------------------------------------------------


def due_fire(schedule: str, timezone: str, now: float, after: float | None) -> float | None:
    """The latest time the cron `schedule` (read in `timezone`) fired at or before `now`,
    if that is later than `after` (the previous report run); else None.

    Runs missed while Nightshift was down collapse into one: the latest.
    """
    start = local(now, timezone) + timedelta(seconds=1)
    fired: datetime = croniter(schedule, start).get_prev(datetime)
    at = fired.timestamp()
    if at > now or (after is not None and at <= after):
        return None
    return at


# -- deciding --------------------------------------------------------------------------------


def nothing_to_report(data: ReportData) -> bool:
    """True when nothing happened in the period: no task moved, nothing was merged, nothing
    went wrong, nothing was escalated (a report would only repeat the previous one)."""
    return data.moves == 0 and data.merged_pulls == 0 and not data.problems


def completed(data: ReportData) -> int:
    return sum(1 for task in data.tasks if task.state in COMPLETE)


def recommendations(data: ReportData) -> list[str]:
    """Deterministic advice, most urgent first."""
    advice: list[str] = []
    if data.urgent:
        what = ", ".join(_pending_ref(p) for p in data.urgent)
        advice.append(
            f"Read the urgent escalation first ({what}): it has its own `nightshift:urgent` issue."
            if len(data.urgent) == 1
            else f"Read the {len(data.urgent)} urgent escalations first ({what}): each has its "
            "own `nightshift:urgent` issue."
        )
    for task in data.tasks:
        if task.state == "blocked":
            why = f" ({safe(task.waiting)})" if task.waiting else ""
            advice.append(f"#{task.number} is blocked{why}: it needs a person to unblock it.")
    ci = [p for p in data.problems if p.kind == "ci"]
    reruns = sum(p.count for p in ci)
    if reruns >= FLAKY_CI_RETRIES or any(p.count >= FLAKY_CI_PER_PULL for p in ci):
        pulls = len({p.pull or p.task or 0 for p in ci})
        advice.append(
            f"CI needed {_plural(reruns, 're-run')} across {_plural(pulls, 'pull request')}: "
            "look for flaky tests or an unstable CI before the next session."
        )
    for record in data.agents:
        if record.fix_rounds >= MANY_FIX_ROUNDS:
            advice.append(
                f"{safe(record.agent)} needed {_plural(record.fix_rounds, 'fix round')}: make "
                "the acceptance criteria of its tasks more explicit, or prefer another agent "
                "for such work."
            )
    for record in data.agents:
        if record.lost:
            advice.append(
                f"{safe(record.agent)} lost {_plural(record.lost, 'task')} (no acknowledgement, "
                "no heartbeats, or unreachable): check that it is running."
            )
    waiting = [t for t in data.tasks if t.state == "queued" and _on_dependency(t.waiting)]
    if waiting:
        listed = ", ".join(f"#{t.number} ({safe(t.waiting)})" for t in waiting)
        one = len(waiting) == 1
        advice.append(
            f"{_plural(len(waiting), 'task')} {'waits' if one else 'wait'} on dependencies: "
            f"{listed}; finishing those first lets {'it' if one else 'them'} start."
        )
    going = [t for t in data.tasks if t.state in CONTINUING]
    if going:
        listed = ", ".join(f"#{t.number} ({_short_status(t)})" for t in going)
        verb = "continues" if len(going) == 1 else "continue"
        advice.append(f"{_plural(len(going), 'task')} {verb} into the next session: {listed}.")
    if data.decisions:
        advice.append(
            f"{_plural(len(data.decisions), 'decision')} await your review (below)."
            if len(data.decisions) > 1
            else "1 decision awaits your review (below)."
        )
    if not advice:
        done = completed(data)
        if data.tasks and done == len(data.tasks):
            advice.append(ALL_DONE.format(count=done))
        else:
            advice.append(NOTHING_TO_DO)
    return advice


def _on_dependency(waiting: str | None) -> bool:
    return bool(waiting) and str(waiting).lower().startswith("waiting for")


def _short_status(task: TaskLine) -> str:
    if task.state == "in_progress" and task.progress is not None:
        return f"{task.progress}%"
    return task.state.replace("_", " ")


def _pending_ref(pending: Pending) -> str:
    where = f" on #{pending.task}" if pending.task is not None else ""
    return f"{safe(pending.category, 60)}{where}"


# -- rendering -------------------------------------------------------------------------------


def render(data: ReportData) -> str:
    """The report issue's body (markdown)."""
    tz = data.timezone
    lines = [HEADING, f"**Repository**: {safe(data.repo)}"]
    if data.session:
        lines.append(f"**Session**: {safe(data.session)}")
    start = clock(data.since, tz) if data.since is not None else "the first record"
    lines.append(f"**Period**: {start} to {clock(data.until, tz)}")
    lines.append(f"**Generated**: {clock(data.until, tz)}")
    if data.previous is not None:
        lines.append(f"**Previous report**: #{data.previous}")
    lines.extend(data.notes)
    lines += ["", "## Summary", *_summary(data), "", "## Task Status", ""]
    if data.tasks:
        for task in data.tasks:
            lines += _task(task, tz)
    else:
        lines += [NO_TASKS, ""]
    lines += ["## Issues Encountered", ""]
    if data.problems:
        for index, problem in enumerate(data.problems, 1):
            lines += _problem(index, problem, tz)
    else:
        lines += [NO_ISSUES, ""]
    lines += ["## Recommendations", ""]
    lines += [f"{index}. {text}" for index, text in enumerate(recommendations(data), 1)]
    lines += ["", "## Decisions Awaiting Review", ""]
    if data.decisions:
        for index, pending in enumerate(data.decisions, 1):
            lines += _decision(index, pending, tz)
    else:
        lines += [NO_DECISIONS, ""]
    lines += ["## Agent Performance", "", *_agents(data.agents)]
    return "\n".join(lines).rstrip() + "\n"


def fit(body: str, limit: int = BODY_LIMIT) -> str:
    """The body cut at a line boundary to fit an issue, saying so when it was cut."""
    if len(body) <= limit:
        return body
    room = limit - len(TRUNCATED)
    cut = body.rfind("\n", 0, room)
    return body[: cut if cut > 0 else room] + TRUNCATED


def _summary(data: ReportData) -> list[str]:
    raised = [p for p in data.problems if p.kind == "escalation"]
    escalations = str(len(raised))
    if raised:
        immediate = sum(1 for p in raised if p.level == "immediate")
        escalations += f" ({immediate} immediate, {len(raised) - immediate} deferred)"
    return [
        f"- Tasks Completed: {completed(data)}/{len(data.tasks)}",
        f"- PRs Merged: {data.merged_pulls}",
        f"- Issues Encountered: {len(data.problems)}",
        f"- Escalations: {escalations}",
    ]


def _task(task: TaskLine, tz: str) -> list[str]:
    status = STATUS_WORDS.get(task.state, safe(task.state.upper(), 40))
    if task.state == "in_progress" and task.progress is not None:
        status += f" ({task.progress}%)"
    lines = [f"### #{task.number}: {safe(task.title, TITLE_LIMIT) or '(no title)'}"]
    lines.append(f"- **Status**: {status}")
    lines.append(f"- **Agent**: {safe(task.agent) if task.agent else 'none yet'}")
    if task.pull is not None:
        lines.append(f"- **PR**: #{task.pull} ({'merged' if task.pull_merged else 'open'})")
    scope = _scope(task)
    if scope:
        lines.append(f"- **Scope**: {scope}")
    if task.tests_passed is not None or task.tests_failed is not None:
        lines.append(
            f"- **Tests**: {task.tests_passed or 0} passed, {task.tests_failed or 0} failed"
        )
    if task.state in ("blocked", "escalated", "paused"):
        blocker = safe(task.waiting) if task.waiting else "not recorded"
        if task.state == "blocked" and task.level in LEVEL_WORDS:
            blocker += f" (escalation level {task.level}: {LEVEL_WORDS[task.level]})"
        lines.append(f"- **Blocker**: {blocker}")
    elif task.state in ("queued", "awaiting_approval") and task.waiting:
        lines.append(f"- **Waiting**: {safe(task.waiting)}")
    elif task.state in CONTINUING:
        lines.append("- **Blocker**: None")
    if task.state == "in_progress" and task.progress is not None:
        lines.append(
            f"- **Remaining**: ~{max(0, 100 - task.progress)}% (the agent's last heartbeat)"
        )
    if task.took is not None and task.state in COMPLETE:
        lines.append(f"- **Time to merge**: {format_duration(task.took)}")
    elif task.estimate is not None and task.state not in COMPLETE | {"cancelled", "rejected"}:
        lines.append(f"- **Estimate**: {safe(describe(task.estimate))}")
    return [*lines, ""]


def _scope(task: TaskLine) -> str:
    parts = []
    if task.files_changed is not None:
        parts.append(_plural(task.files_changed, "file") + " modified")
    if task.additions is not None:
        parts.append(_plural(task.additions, "line") + " added")
    if task.deletions is not None:
        parts.append(_plural(task.deletions, "line") + " removed")
    return ", ".join(parts)


def describe_problem(problem: Problem, tz: str) -> tuple[str, str, str]:
    """(title, description, resolution) of one problem."""
    pull = f"PR #{problem.pull}" if problem.pull is not None else "its pull request"
    outcome = problem.outcome or ""
    if problem.kind == "ci":
        heading = "CI re-runs"
        where = pull if problem.pull is not None else (safe(problem.detail) or "a commit")
        text = f"CI failed on {where} and was re-run {_times(problem.count)}"
        if outcome in COMPLETE:
            resolution = "passed on a re-run; the PR was merged"
        elif outcome == "blocked":
            resolution = "still failing after the re-runs: blocked, and the agent was told"
        else:
            resolution = "re-run; waiting for the result or a fix"
    elif problem.kind == "fix-rounds":
        heading = "Fix rounds"
        text = f"the review asked for changes {_times(problem.count)} on {pull}"
        if outcome in COMPLETE:
            resolution = "fixed, then merged"
        elif outcome in ("blocked", "escalated"):
            resolution = "not fixed within the limit: blocked for a person"
        else:
            resolution = "waiting for the agent's fix"
    elif problem.kind == "failover":
        heading = "Agent lost a task"
        who = safe(problem.agent) if problem.agent else "its agent"
        text = f"taken from {who}: {safe(plain_reason(problem.detail))}"
        resolution = (
            f"reassigned to {safe(problem.to_agent)}"
            if problem.to_agent
            else "back in the queue for another agent"
        )
    elif problem.kind == "blocked":
        heading = "Blocked"
        text = safe(plain_reason(problem.detail)) or "blocked"
        if problem.resolved_at is not None:
            resolution = f"unblocked at {clock(problem.resolved_at, tz)}"
        else:
            resolution = "still blocked: it needs a person"
    else:
        level = problem.level or "deferred"
        heading = f"Escalation ({safe(level, 20)}): {safe(problem.category or 'other', 60)}"
        text = safe(problem.detail)
        if problem.resolved_at is not None:
            resolution = f"resolved at {clock(problem.resolved_at, tz)}"
        elif level == "immediate":
            resolution = "open: see its `nightshift:urgent` issue"
        else:
            resolution = "waiting for your decision (see Decisions Awaiting Review)"
    return heading, text, resolution


def _problem(index: int, problem: Problem, tz: str) -> list[str]:
    heading, text, resolution = describe_problem(problem, tz)
    lines = [f"### Issue {index}: {heading}"]
    if problem.task is not None:
        pull = f" (PR #{problem.pull})" if problem.pull is not None else ""
        lines.append(f"- **Task**: #{problem.task}{pull}")
    lines += [
        f"- **Occurrence**: {clock(problem.at, tz)}",
        f"- **Description**: {text}",
        f"- **Resolution**: {resolution}",
        "",
    ]
    return lines


def _decision(index: int, pending: Pending, tz: str) -> list[str]:
    where = f" (#{pending.task})" if pending.task is not None else ""
    lines = [
        f"### Decision {index}: {safe(pending.category, 60)}{where}",
        f"- **Raised**: {clock(pending.at, tz)}",
        f"- **Question**: {safe(pending.summary)}",
    ]
    if pending.meanwhile:
        lines.append(f"- **Done meanwhile**: {safe(pending.meanwhile)}")
    if pending.reversible is not None:
        lines.append(f"- **Reversible**: {'yes' if pending.reversible else 'no'}")
    return [*lines, ""]


AGENT_HEADER = (
    "| Agent | Tasks Completed | PRs Merged | Fix Rounds | CI Retries | Median Time to Merge "
    "| Escalations |"
)
AGENT_RULE = "|-------|-----------------|------------|------------|------------|" + (
    "----------------------|-------------|"
)


def _agents(records: Iterable[AgentRecord]) -> list[str]:
    rows = [
        f"| {safe(r.agent, 60)} | {r.tasks_completed} | {r.prs_merged} | {r.fix_rounds} "
        f"| {r.ci_retries} | {_duration(r.median_merge)} | {r.escalations} |"
        for r in records
    ]
    if not rows:
        return [NO_AGENTS]
    return [AGENT_HEADER, AGENT_RULE, *rows]


def _duration(seconds: float | None) -> str:
    return format_duration(seconds) if seconds is not None else "-"
