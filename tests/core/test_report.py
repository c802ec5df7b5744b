"""The report's rendering (table-driven), its rules, escaping, the schedule, and the
`report:` configuration."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from app.core import config
from app.core import report as core
from app.core.config import ConfigError
from app.core.estimates import Estimate
from app.core.report import AgentRecord, Pending, Problem, ReportData, TaskLine


def ts(day: int, hour: int, minute: int = 0) -> float:
    return datetime(2026, 1, day, hour, minute, tzinfo=UTC).timestamp()


UNTIL = ts(2, 6)
EMPTY = ReportData(repo="octo/repo", until=UNTIL, since=ts(1, 6))

EMPTY_MARKDOWN = """\
# Autonomous Operation Report
**Repository**: octo/repo
**Period**: 2026-01-01 06:00 UTC to 2026-01-02 06:00 UTC
**Generated**: 2026-01-02 06:00 UTC

## Summary
- Tasks Completed: 0/0
- PRs Merged: 0
- Issues Encountered: 0
- Escalations: 0

## Task Status

_No task was active in this period._

## Issues Encountered

_None._

## Recommendations

1. Nothing needs your attention.

## Decisions Awaiting Review

_None._

## Agent Performance

_No agent worked on a task in this period._
"""


def test_an_empty_period_renders_every_section() -> None:
    assert core.render(EMPTY) == EMPTY_MARKDOWN
    assert core.nothing_to_report(EMPTY)
    assert core.title(EMPTY) == "Autonomous Operation Report — 2026-01-02"


MIXED = ReportData(
    repo="octo/repo",
    until=UNTIL,
    since=ts(1, 6),
    session="2026-01-01-session-01",
    previous=90,
    tasks=(
        TaskLine(
            101,
            "User Authentication",
            "done",
            agent="dev-agent-1",
            pull=147,
            pull_merged=True,
            files_changed=3,
            additions=247,
            deletions=1,
            tests_passed=47,
            tests_failed=0,
            took=7200,
        ),
        TaskLine(
            103,
            "Session Management",
            "in_progress",
            agent="dev-agent-1",
            progress=70,
            estimate=Estimate(3600, 2, "agent-labels", "dev-agent-1"),
        ),
        TaskLine(106, "Docs", "queued", waiting="waiting for #103"),
    ),
    problems=(Problem(kind="ci", at=ts(1, 19), task=101, pull=147, count=1, outcome="done"),),
    agents=(
        AgentRecord(
            "dev-agent-1", tasks_completed=1, prs_merged=1, ci_retries=1, merge_seconds=(7200,)
        ),
    ),
    moves=7,
    merged_pulls=1,
)

MIXED_MARKDOWN = f"""\
# Autonomous Operation Report
**Repository**: octo/repo
**Session**: 2026-01-01-session-01
**Period**: 2026-01-01 06:00 UTC to 2026-01-02 06:00 UTC
**Generated**: 2026-01-02 06:00 UTC
**Previous report**: #90

## Summary
- Tasks Completed: 1/3
- PRs Merged: 1
- Issues Encountered: 1
- Escalations: 0

## Task Status

### #101: User Authentication
- **Status**: COMPLETE
- **Agent**: dev-agent-1
- **PR**: #147 (merged)
- **Scope**: 3 files modified, 247 lines added, 1 line removed
- **Tests**: 47 passed, 0 failed
- **Time to merge**: 2h

### #103: Session Management
- **Status**: IN PROGRESS (70%)
- **Agent**: dev-agent-1
- **Blocker**: None
- **Remaining**: ~30% (the agent's last heartbeat)
- **Estimate**: ~1h (median of 2 past tasks by dev-agent-1 with these labels)

### #106: Docs
- **Status**: QUEUED
- **Agent**: none yet
- **Waiting**: waiting for #103

## Issues Encountered

### Issue 1: CI re-runs
- **Task**: #101 (PR #147)
- **Occurrence**: 2026-01-01 19:00 UTC
- **Description**: CI failed on PR #147 and was re-run once
- **Resolution**: passed on a re-run; the PR was merged

## Recommendations

1. 1 task waits on dependencies: #106 (waiting for #103); finishing those first lets it start.
2. 1 task continues into the next session: #103 (70%).

## Decisions Awaiting Review

_None._

## Agent Performance

{core.AGENT_HEADER}
{core.AGENT_RULE}
| dev-agent-1 | 1 | 1 | 0 | 1 | 2h | 0 |
"""


def test_mixed_states_follow_the_seed_layout() -> None:
    assert core.render(MIXED) == MIXED_MARKDOWN
    assert not core.nothing_to_report(MIXED)


@pytest.mark.parametrize(
    ("level", "blocker"),
    [
        (0, ""),
        (1, " (escalation level 1: no peer or backup could take it)"),
        (2, " (escalation level 2: the lead was asked)"),
        (3, " (escalation level 3: an urgent escalation is open)"),
    ],
)
def test_a_blocked_task_says_how_far_up_the_escalation_path_it_went(
    level: int, blocker: str
) -> None:
    task = TaskLine(number=4, title="t", state="blocked", waiting="conflict with main", level=level)
    data = ReportData(repo="octo/repo", until=UNTIL, since=ts(1, 6), tasks=(task,))
    assert f"- **Blocker**: conflict with main{blocker}" in core.render(data).splitlines()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("plain title", "plain title", id="plain"),
        pytest.param("a | b", "a \\| b", id="pipe"),
        pytest.param("ping @octocat and @org/team", "ping @\u200doctocat and @\u200dorg/team",
                     id="mentions"),
        pytest.param("mail me@example.com", "mail me@\u200dexample.com", id="email-too"),
        pytest.param("<!-- nightshift:report:x -->", "&lt;!-- nightshift:report:x --&gt;",
                     id="hidden-marker"),
        pytest.param("[click](http://evil)", "\\[click\\](http://evil)", id="link"),
        pytest.param("**bold** `code` _em_", "\\*\\*bold\\*\\* \\`code\\` \\_em\\_", id="emphasis"),
        pytest.param("line\nbreak\r\n| row |", "line break \\| row \\|", id="newlines"),
        pytest.param("R&D", "R&amp;D", id="ampersand"),
        pytest.param("back\\slash", "back\\\\slash", id="backslash"),
        pytest.param("x" * 400, "x" * 299 + "…", id="long"),
    ],
)  # fmt: skip
def test_untrusted_text_is_inert(text: str, expected: str) -> None:
    assert core.safe(text) == expected


def test_a_hostile_title_breaks_no_table_and_mentions_nobody() -> None:
    hostile = "Fix | it @admin <b>now</b>\n## injected"
    data = ReportData(
        repo="octo/repo",
        until=UNTIL,
        since=None,
        tasks=(TaskLine(7, hostile, "queued", agent="x|y"),),
        agents=(AgentRecord("bad|agent @root"),),
        moves=1,
    )
    text = core.render(data)
    assert "### #7: Fix \\| it @\u200dadmin &lt;b&gt;now&lt;/b&gt; ## injected" in text
    assert "\n## injected" not in text
    assert "@admin" not in text and "@root" not in text and "<b>" not in text
    row = next(line for line in text.splitlines() if line.startswith("| bad"))
    header = next(line for line in text.splitlines() if line.startswith("| Agent"))
    cells = re.compile(r"(?<!\\)\|")  # the pipes that are not escaped
    assert len(cells.findall(row)) == len(cells.findall(header)) == 8
    assert "**Period**: the first record to 2026-01-02 06:00 UTC" in text


PROBLEMS = [
    pytest.param(
        Problem(kind="ci", at=0, pull=None, count=3, detail="commit abc1234", outcome="blocked"),
        (
            "CI re-runs",
            "CI failed on commit abc1234 and was re-run 3 times",
            "still failing after the re-runs: blocked, and the agent was told",
        ),
        id="ci-blocked",
    ),
    pytest.param(
        Problem(kind="ci", at=0, pull=7, count=2, outcome="in_review"),
        ("CI re-runs", "CI failed on PR #7 and was re-run twice",
         "re-run; waiting for the result or a fix"),
        id="ci-pending",
    ),
    pytest.param(
        Problem(kind="fix-rounds", at=0, pull=8, count=5, outcome="blocked"),
        ("Fix rounds", "the review asked for changes 5 times on PR #8",
         "not fixed within the limit: blocked for a person"),
        id="fix-rounds-exhausted",
    ),
    pytest.param(
        Problem(kind="fix-rounds", at=0, pull=8, count=1, outcome="changes_requested"),
        ("Fix rounds", "the review asked for changes once on PR #8",
         "waiting for the agent's fix"),
        id="fix-rounds-pending",
    ),
    pytest.param(
        Problem(kind="failover", at=0, agent="a", detail="dispatch: a stopped sending heartbeats"),
        ("Agent lost a task", "taken from a: a stopped sending heartbeats",
         "back in the queue for another agent"),
        id="failover-queued",
    ),
    pytest.param(
        Problem(kind="blocked", at=0, detail="review: conflicts", resolved_at=ts(1, 7)),
        ("Blocked", "conflicts", "unblocked at 2026-01-01 07:00 UTC"),
        id="unblocked",
    ),
    pytest.param(
        Problem(kind="escalation", at=0, level="immediate", category="security", detail="leak"),
        ("Escalation (immediate): security", "leak", "open: see its `nightshift:urgent` issue"),
        id="urgent-open",
    ),
    pytest.param(
        Problem(kind="escalation", at=0, level="deferred", category="arch", detail="q",
                resolved_at=ts(1, 8)),
        ("Escalation (deferred): arch", "q", "resolved at 2026-01-01 08:00 UTC"),
        id="deferred-resolved",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("problem", "expected"), PROBLEMS)
def test_problems_are_described_with_their_resolution(
    problem: Problem, expected: tuple[str, str, str]
) -> None:
    assert core.describe_problem(problem, "UTC") == expected


def task(number: int, state: str, **fields: object) -> TaskLine:
    return TaskLine(number, f"task {number}", state, **fields)  # type: ignore[arg-type]


RECOMMENDATIONS = [
    pytest.param(EMPTY, [core.NOTHING_TO_DO], id="nothing"),
    pytest.param(
        ReportData(repo="r", until=UNTIL, since=None, tasks=(task(1, "done"), task(2, "merged"))),
        [core.ALL_DONE.format(count=2)],
        id="all-done",
    ),
    pytest.param(
        ReportData(
            repo="r",
            until=UNTIL,
            since=None,
            problems=(
                Problem(kind="ci", at=0, pull=1, count=1),
                Problem(kind="ci", at=0, pull=2, count=1),
                Problem(kind="ci", at=0, pull=3, count=1),
            ),
        ),
        ["CI needed 3 re-runs across 3 pull requests: look for flaky tests or an unstable CI "
         "before the next session."],
        id="flaky-ci",
    ),
    pytest.param(
        ReportData(repo="r", until=UNTIL, since=None,
                   problems=(Problem(kind="ci", at=0, pull=1, count=1),)),
        [core.NOTHING_TO_DO],
        id="one-ci-rerun-is-no-pattern",
    ),
    pytest.param(
        ReportData(repo="r", until=UNTIL, since=None,
                   agents=(AgentRecord("ada", fix_rounds=3), AgentRecord("bob", fix_rounds=2))),
        ["ada needed 3 fix rounds: make the acceptance criteria of its tasks more explicit, or "
         "prefer another agent for such work."],
        id="many-fix-rounds",
    ),
    pytest.param(
        ReportData(
            repo="r",
            until=UNTIL,
            since=None,
            tasks=(task(3, "blocked", waiting="conflict"),
                   task(4, "queued", waiting="waiting for #3"),
                   task(5, "queued", waiting="no agent has the capabilities"),
                   task(6, "in_review")),
            urgent=(Pending("immediate", "security", "leak", 0, task=3),
                    Pending("immediate", "infrastructure", "all offline", 0)),
            decisions=(Pending("deferred", "arch", "q1", 0), Pending("deferred", "deps", "q2", 0)),
            agents=(AgentRecord("cy", lost=2),),
        ),
        [
            "Read the 2 urgent escalations first (security on #3, infrastructure): each has its "
            "own `nightshift:urgent` issue.",
            "#3 is blocked (conflict): it needs a person to unblock it.",
            "cy lost 2 tasks (no acknowledgement, no heartbeats, or unreachable): check that it "
            "is running.",
            "1 task waits on dependencies: #4 (waiting for #3); finishing those first lets it "
            "start.",
            "1 task continues into the next session: #6 (in review).",
            "2 decisions await your review (below).",
        ],
        id="attention",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("data", "expected"), RECOMMENDATIONS)
def test_recommendations(data: ReportData, expected: list[str]) -> None:
    assert core.recommendations(data) == expected


@pytest.mark.parametrize(
    ("data", "nothing"),
    [
        pytest.param(EMPTY, True, id="empty"),
        pytest.param(
            ReportData(repo="r", until=UNTIL, since=None, tasks=(task(1, "in_progress"),)),
            True,
            id="active-but-nothing-moved",
        ),
        pytest.param(ReportData(repo="r", until=UNTIL, since=None, moves=1), False, id="a-move"),
        pytest.param(
            ReportData(repo="r", until=UNTIL, since=None, merged_pulls=1), False, id="a-merge"
        ),
        pytest.param(
            ReportData(
                repo="r", until=UNTIL, since=None, problems=(Problem(kind="blocked", at=0),)
            ),
            False,
            id="a-problem",
        ),
    ],
)
def test_nothing_to_report(data: ReportData, nothing: bool) -> None:
    assert core.nothing_to_report(data) is nothing


def test_dates_and_times_are_in_the_repositorys_time_zone() -> None:
    late = ts(1, 23, 30)  # 00:30 the next day in Berlin
    data = ReportData(repo="r", until=late, since=ts(1, 6), timezone="Europe/Berlin")
    assert core.title(data) == "Autonomous Operation Report — 2026-01-02"
    assert "**Generated**: 2026-01-02 00:30 CET" in core.render(data)


@pytest.mark.parametrize(
    ("schedule", "zone", "now", "after", "fired"),
    [
        pytest.param("0 6 * * *", "UTC", ts(2, 6), ts(1, 6), ts(2, 6), id="on-the-minute"),
        pytest.param("0 6 * * *", "UTC", ts(2, 6, 1), ts(1, 6), ts(2, 6), id="a-late-tick"),
        pytest.param("0 6 * * *", "UTC", ts(2, 5, 59), ts(1, 6), None, id="not-yet"),
        pytest.param("0 6 * * *", "UTC", ts(2, 6, 1), ts(2, 6), None, id="already-run"),
        pytest.param("0 6 * * *", "UTC", ts(4, 9), ts(1, 6), ts(4, 6), id="missed-runs-collapse"),
        pytest.param("0 6 * * *", "UTC", ts(2, 6), None, ts(2, 6), id="first-run"),
        pytest.param("0 6 * * *", "Europe/Berlin", ts(2, 5), ts(1, 5), ts(2, 5), id="berlin"),
        pytest.param("0 6 * * *", "Europe/Berlin", ts(2, 6), ts(2, 5), None, id="berlin-not-utc"),
        pytest.param("30 5 * * 1-5", "UTC", ts(3, 12), ts(1, 6), ts(2, 5, 30),
                     id="weekdays-only"),  # 2026-01-03 is a Saturday
    ],
)  # fmt: skip
def test_due_fire(
    schedule: str, zone: str, now: float, after: float | None, fired: float | None
) -> None:
    assert core.due_fire(schedule, zone, now, after) == fired


def test_session_label() -> None:
    assert core.session_label("2025-12-30", 1) == "2025-12-30-session-01"


def test_the_report_configuration() -> None:
    assert config.DEFAULT_CONFIG.report.schedule == "0 6 * * *"
    assert config.DEFAULT_CONFIG.report.timezone == "UTC"
    parsed = config.parse("report:\n  schedule: '30  5 * * 1-5'\n  timezone: Europe/Berlin\n")
    assert (parsed.report.schedule, parsed.report.timezone) == ("30 5 * * 1-5", "Europe/Berlin")


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        pytest.param("report: {schedule: '61 * * * *'}", "report.schedule", "is not a cron",
                     id="bad-minute"),
        pytest.param("report: {schedule: '0 6 * * * *'}", "report.schedule", "five fields",
                     id="seconds-field"),
        pytest.param("report: {schedule: daily}", "report.schedule", "is not a cron", id="word"),
        pytest.param("report: {timezone: Mars/Olympus}", "report.timezone",
                     "not a known time zone", id="unknown-zone"),
        pytest.param("report: {timezone: Europe}", "report.timezone", "not a known time zone",
                     id="a-directory"),
        pytest.param("report: {timezone: ../../etc/passwd}", "report.timezone",
                     "not a known time zone", id="a-path"),
        pytest.param("report: {when: 6}", "report.when", "unknown setting", id="typo"),
    ],
)  # fmt: skip
def test_a_bad_report_configuration_names_the_key(text: str, key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as raised:
        config.parse(text)
    assert raised.value.key == key
    assert problem in raised.value.problem


def test_a_report_too_long_for_an_issue_is_cut_at_a_line_and_says_so() -> None:
    body = "\n".join(f"line {n}" for n in range(20_000))
    cut = core.fit(body, 1000)
    assert len(cut) <= 1000 and cut.endswith(core.TRUNCATED)
    assert cut.removesuffix(core.TRUNCATED).splitlines()[-1].startswith("line ")
    assert core.fit("short") == "short"
