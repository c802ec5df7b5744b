"""The records over a seeded store: the report of a recorded night, the agents' records,
estimates' history, sessions and the report runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core import report as core
from app.core.estimates import NEUTRAL_SCORE, Sample
from app.effects.records import Records, ReportRun, build_report
from app.effects.store import Store
from app.engine.report import render_report
from tests.effects.night import REPO, Recorder, at, seed_night

PREVIOUS = ReportRun(
    repo=REPO,
    run_key="2026-01-01T06:00:00+00:00",
    period_end=at(1, 6),
    created_at=at(1, 6),
    issue_number=90,
    session="2025-12-31-session-01",
    report_date="2026-01-01",
    timezone="UTC",
)

# the exact report of the recorded night (tests/effects/night.py)
NIGHT_REPORT = (Path(__file__).parent / "night_report.md").read_text()


@pytest.fixture
def night(store: Store, database_url: str) -> Records:
    records = Records(store)
    assert records.record_run(PREVIOUS)
    seed_night(database_url)
    return records


def test_a_recorded_night_produces_the_expected_report(night: Records, store: Store) -> None:
    data = build_report(night, REPO, at(1, 6), at(2, 6))
    assert core.render(data) == NIGHT_REPORT
    assert core.title(data) == "Autonomous Operation Report — 2026-01-02"
    assert render_report(store, REPO, at(1, 6), at(2, 6)) == NIGHT_REPORT
    assert not core.nothing_to_report(data)


def test_the_agents_records(night: Records) -> None:
    records = night.agent_records(REPO)
    one, two, three = records["dev-agent-1"], records["dev-agent-2"], records["dev-agent-3"]
    assert (one.tasks_completed, one.prs_merged, one.clean_merges) == (1, 1, 1)
    assert (one.fix_rounds, one.ci_retries, one.escalations, one.lost) == (0, 1, 1, 0)
    assert one.merge_seconds == (7200.0,)
    assert one.ack_seconds == (300.0, 120.0, 300.0)  # #101, #103, #105 (after the failover)
    assert one.median_ack == 300.0
    assert (two.tasks_completed, two.clean_merges, two.fix_rounds, two.escalations) == (1, 0, 1, 1)
    assert two.median_merge == 2 * 3600 + 55 * 60
    assert (three.tasks_completed, three.lost, three.ack_seconds) == (0, 1, ())
    assert night.agent_records() == records  # every repository: only this one has tasks


def test_records_over_a_window_count_what_happened_in_it(night: Records) -> None:
    records = night.agent_records(REPO, since=at(1, 20), until=at(1, 21))
    assert records["dev-agent-1"].tasks_completed == 1  # #101 at 20:05
    assert "dev-agent-2" not in records or records["dev-agent-2"].tasks_completed == 0
    later = night.agent_records(REPO, since=at(1, 21), until=at(2, 6))
    assert later["dev-agent-2"].tasks_completed == 1  # #102 at 21:00: [since, until)
    assert later["dev-agent-2"].fix_rounds == 0  # its fix round was at 19:40


def test_history_scores_and_estimates(night: Records) -> None:
    assert sorted(night.history(REPO), key=lambda s: s.agent) == [
        Sample("dev-agent-1", frozenset({"autonomous", "backend"}), 7200.0),
        Sample("dev-agent-2", frozenset({"autonomous", "backend"}), 10500.0),
    ]
    assert night.scores(["dev-agent-1", "newcomer"]) == {
        "dev-agent-1": pytest.approx(2 / 3),
        "dev-agent-2": pytest.approx(1 / 3),
        "dev-agent-3": pytest.approx(1 / 3),
        "newcomer": NEUTRAL_SCORE,
    }
    value = night.estimate(REPO, "dev-agent-1", ["autonomous", "backend"], ignore=["autonomous"])
    assert (value.seconds, value.samples, value.basis) == (7200.0, 1, "agent-labels")


def test_sessions_start_with_the_first_task_accepted_after_the_last_report(
    night: Records, database_url: str
) -> None:
    assert night.session_start(REPO) == at(1, 18)
    assert night.session(REPO, at(2, 6), "UTC") == ("2026-01-01-session-01", at(1, 18))
    assert night.record_run(
        ReportRun(
            repo=REPO,
            run_key="2026-01-02T06:00:00+00:00",
            period_start=at(1, 6),
            period_end=at(2, 6),
            created_at=at(2, 6),
            issue_number=91,
            session="2026-01-01-session-01",
            session_start=at(1, 18),
            report_date="2026-01-02",
            timezone="UTC",
        )
    )
    # nothing accepted since: the work continues the previous session
    assert night.session_start(REPO) is None
    assert night.session(REPO, at(3, 6), "UTC") == ("2026-01-01-session-01", None)
    recorder = Recorder(database_url)
    recorder.task(107, at(2, 10), "More", ["autonomous"])
    assert night.session(REPO, at(3, 6), "UTC") == ("2026-01-02-session-01", at(2, 10))
    assert night.record_run(
        ReportRun(
            repo=REPO,
            run_key="command:d1",
            period_start=at(2, 6),
            period_end=at(2, 12),
            created_at=at(2, 12),
            issue_number=92,
            session="2026-01-02-session-01",
            session_start=at(2, 10),
            report_date="2026-01-02",
            timezone="UTC",
        )
    )
    recorder.task(108, at(2, 20), "Even more", ["autonomous"])
    recorder.close()
    assert night.session(REPO, at(3, 6), "UTC") == ("2026-01-02-session-02", at(2, 20))
    # in Tokyo the session that started at 20:00 UTC started on the 3rd
    assert night.session(REPO, at(3, 6), "Asia/Tokyo") == ("2026-01-03-session-01", at(2, 20))


def test_report_runs_are_recorded_once(night: Records) -> None:
    idle = ReportRun(
        repo=REPO,
        run_key="2026-01-03T06:00:00+00:00",
        period_start=at(2, 6),
        period_end=at(3, 6),
        created_at=at(3, 6),
        report_date="2026-01-03",
        timezone="UTC",
    )
    assert night.record_run(idle)
    assert not night.record_run(idle)
    assert night.run(REPO, idle.run_key) == idle
    assert night.last_run(REPO) == idle
    assert night.last_published(REPO) == PREVIOUS  # nothing was published on the 3rd
    assert night.last_run(REPO, before=at(3, 6)) == PREVIOUS
    assert [r.run_key for r in night.runs(REPO)] == [PREVIOUS.run_key, idle.run_key]
    assert night.runs("other/repo") == []


def test_each_task_shows_the_tests_of_its_pull_requests_latest_review(
    night: Records, database_url: str
) -> None:
    recorder = Recorder(database_url)
    # #103's PR: a review read 12 passed and 1 failed; #104's: a review read no report
    assert recorder.at(at(1, 22, 20)).record_tests(REPO, 149, "c" * 40, 12, 1)
    assert recorder.at(at(1, 23, 5)).record_tests(REPO, 150, "d" * 40, 9, 0)
    assert recorder.at(at(1, 23, 6)).record_tests(REPO, 150, "d" * 40, None, None)
    recorder.close()
    data = build_report(night, REPO, at(1, 6), at(2, 6))
    assert {t.number: (t.tests_passed, t.tests_failed) for t in data.tasks} == {
        101: (47, 0),
        102: (32, 0),  # the merged head's, not the failing review of the head before
        103: (12, 1),
        104: (None, None),
        105: (None, None),  # no pull request yet
        106: (None, None),
    }
    assert "- **PR**: #149 (open)\n- **Tests**: 12 passed, 1 failed\n" in core.render(data)


def test_a_quiet_period_has_nothing_to_report(night: Records) -> None:
    data = build_report(night, REPO, at(2, 6), at(3, 6))
    assert core.nothing_to_report(data)
    assert data.moves == 0 and data.merged_pulls == 0 and not data.problems
    # what is still open is listed; what finished before the period is not
    assert [t.number for t in data.tasks] == [103, 104, 105, 106]
    assert [d.category for d in data.decisions] == ["architecture"]
    assert [u.category for u in data.urgent] == ["security"]


def test_proposed_and_rejected_tasks_are_not_reported(store: Store, database_url: str) -> None:
    recorder = Recorder(database_url)
    recorder.task(1, at(1, 18), "kept", ["autonomous"])
    recorder.at(at(1, 18)).transition(REPO, 2, None, "proposed", None, event="propose")
    recorder.at(at(1, 18)).transition(REPO, 3, None, "rejected", None, event="reject")
    recorder.close()
    data = Records(store).report_data(REPO, None, at(2, 6))
    assert [t.number for t in data.tasks] == [1]
    assert data.moves == 3
    assert Records(store).repos_with_tasks() == [REPO]
    assert Records(store).first_activity(REPO) == at(1, 18)


def test_a_blocked_task_handed_over_counts_as_lost_and_reports_its_level(
    store: Store, database_url: str
) -> None:
    recorder = Recorder(database_url)
    recorder.task(7, at(1, 18), "handed", ["autonomous"])
    recorder.move(7, at(1, 19), ("queued", "assigned"), "assign", agent="a-bot", agent_name="a")
    recorder.move(7, at(1, 20), ("assigned", "blocked"), "block", "commands: a is blocked: key",
                  previous="assigned")  # fmt: skip
    recorder.move(7, at(1, 21), ("blocked", "assigned"), "hand_over", "dispatch: level 1",
                  agent="b-bot", agent_name="b", exclude="a")  # fmt: skip
    recorder.move(7, at(1, 22), ("assigned", "blocked"), "block", "commands: b is blocked: key",
                  previous="assigned")  # fmt: skip
    assert recorder.store.record_level(REPO, 7, 2, at(1, 22))
    recorder.close()
    data = Records(store).report_data(REPO, None, at(2, 6))
    [lost] = [p for p in data.problems if p.kind == "failover"]
    assert (lost.agent, lost.to_agent, lost.task) == ("a", "b", 7)
    [line] = data.tasks
    assert (line.state, line.agent, line.level, line.waiting) == (
        "blocked",
        "b",
        2,
        "b is blocked: key",
    )
    assert Records(store).agent_records(REPO)["a"].lost == 1
