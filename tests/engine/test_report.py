"""The report, end to end: the schedule's tick on the real engine (with a controlled fire
time), the report workflow, the executor and the shared fake GitHub receiving the issue."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from dbos import DBOS

from app.core import labels
from app.core import report as core
from app.effects.github import marker
from app.effects.records import Records, ReportRun
from app.effects.store import NewDelivery
from app.engine.delivery import ENGINE_VERSION
from app.engine.report import (
    TICK_CRON,
    TICK_SCHEDULE,
    TICK_WORKFLOW,
    ReportEngine,
    fire_key,
    issue_key,
    report_engine,
    report_id,
    report_tick,
)
from app.engine.runtime import Runtime, engine_database_url
from app.settings import Settings
from tests.effects.night import REPO, Recorder, at, seed_night
from tests.fakes.github import FakeGitHub
from tests.helpers import app_client

TITLE = "Autonomous Operation Report — 2026-01-02"


@dataclass
class Scene:
    runtime: Runtime
    engine: ReportEngine
    fake: FakeGitHub
    records: Records

    def tick(self, when: float) -> None:
        """The schedule's tick, as DBOS starts it at `when`."""
        moment = datetime.fromtimestamp(when, tz=UTC)
        DBOS.start_workflow(report_tick, moment, None).get_result()

    def result(self, run_key: str) -> str:
        """Wait for the report run and return how it ended."""
        workflow_id = report_id(REPO, run_key)
        deadline = time.monotonic() + 30
        while not DBOS.list_workflows(workflow_ids=[workflow_id], load_input=False):
            assert time.monotonic() < deadline, f"{workflow_id} never started"
            time.sleep(0.05)
        return str(DBOS.retrieve_workflow(workflow_id).get_result())

    def opened(self) -> list[str]:
        return [e for e in self.fake.effects if ":opened:" in e]

    def previous_report(self, number: int = 90) -> None:
        """Report #90, published for the 1st (an issue on GitHub, a row in the store)."""
        issue = self.fake.issue(REPO, number)
        issue.title, issue.labels = (
            "Autonomous Operation Report — 2026-01-01",
            [labels.REPORT_LABEL],
        )
        self.records.record_run(
            ReportRun(
                repo=REPO,
                run_key=fire_key(at(1, 6)),
                period_end=at(1, 6),
                created_at=at(1, 6),
                issue_number=number,
                session="2025-12-31-session-01",
                report_date="2026-01-01",
                timezone="UTC",
            )
        )


@pytest.fixture
def scene(settings: Settings, fake_github: FakeGitHub, tmp_path: Path) -> Iterator[Scene]:
    config = {"report": {"schedule": "0 6 * * *", "timezone": "UTC"}}
    fake_github.files[(REPO, ".github/nightshift.yml")] = yaml.safe_dump(config)
    for number in (147, 148, 149, 150):  # the night's pull requests
        fake_github.pull(REPO, number, title=f"PR {number}")
    runtime = Runtime(settings, github=app_client(fake_github))
    runtime.launch(workers=True)
    engine = report_engine().bind(
        runtime.store,
        runtime.executor,
        runtime.github,
        runtime.configs,
        system_database_url=engine_database_url(settings.database_url),
        version=ENGINE_VERSION,
    )
    # no minute schedule here (the runtime may have created it): the tests start each tick
    # themselves, at a chosen time, and no tick of the real clock may start a report
    engine.launch(schedule=False)
    if DBOS.get_schedule(TICK_SCHEDULE) is not None:
        DBOS.delete_schedule(TICK_SCHEDULE)
    for tick in DBOS.list_workflows(workflow_id_prefix=f"sched-{TICK_SCHEDULE}-"):
        DBOS.cancel_workflow(tick.workflow_id)
    # the repository's installation, as its deliveries tell it
    delivery = NewDelivery("d0", "issues", "labeled", REPO, 77, b"{}", status="ignored")
    runtime.store.insert_deliveries([delivery])
    try:
        yield Scene(runtime, engine, fake_github, Records(runtime.store))
    finally:
        engine.close()
        runtime.shutdown()


def test_the_morning_report_is_published_once_and_the_previous_one_closed(scene: Scene) -> None:
    scene.previous_report(90)
    seed_night(scene.runtime.settings.database_url)
    run = fire_key(at(2, 6))

    scene.tick(at(2, 5, 59))  # not yet
    assert not DBOS.list_workflows(workflow_ids=[report_id(REPO, run)], load_input=False)
    scene.tick(at(2, 6))
    assert scene.result(run) == "published #151"

    assert scene.opened() == [f"{REPO}#151:opened:{TITLE}"]
    issue = scene.fake.issues[(REPO, 151)]
    assert issue.labels == [labels.REPORT_LABEL]
    for section in (
        "## Summary",
        "## Task Status",
        "## Issues Encountered",
        "## Recommendations",
        "## Decisions Awaiting Review",
        "## Agent Performance",
    ):
        assert f"\n{section}\n" in issue.body
    assert "- Tasks Completed: 2/6" in issue.body
    assert "- **Scope**: 5 files modified, 100 lines added, 3 lines removed" in issue.body
    assert "**Previous report**: #90" in issue.body
    assert marker(issue_key(REPO, "2026-01-02")) in issue.body
    # the previous report points at the new one, and is closed
    previous = scene.fake.issues[(REPO, 90)]
    assert previous.state == "closed"
    assert [c["body"].split("\n\n")[0] for c in previous.comments] == [
        core.SUPERSEDED.format(number=151, date="2026-01-02")
    ]
    assert f"{REPO}#90:closed" in scene.fake.effects
    recorded = scene.records.run(REPO, run)
    assert recorded is not None
    assert (recorded.issue_number, recorded.session) == (151, "2026-01-01-session-01")
    assert (recorded.period_start, recorded.period_end) == (at(1, 6), at(2, 6))

    # a later tick, a tick again at the same minute, or the same run started again: nothing
    effects = list(scene.fake.effects)
    scene.tick(at(2, 6))
    scene.tick(at(2, 6, 1))
    assert scene.engine.start_report(77, REPO, run, at(2, 6)) == report_id(REPO, run)
    assert scene.result(run) == "published #151"
    assert scene.fake.effects == effects


def test_a_second_start_of_the_same_fire_time_opens_no_second_issue(scene: Scene) -> None:
    seed_night(scene.runtime.settings.database_url)
    run = fire_key(at(2, 6))
    first = scene.engine.start_report(77, REPO, run, at(2, 6))
    second = scene.engine.start_report(77, REPO, run, at(2, 6))
    assert first == second == report_id(REPO, run)
    assert scene.result(run) == "published #151"
    assert scene.opened() == [f"{REPO}#151:opened:{TITLE}"]
    assert len(DBOS.list_workflows(workflow_id_prefix=f"report:{REPO}:", load_input=False)) == 1
    # no previous report: nothing closed
    assert not any(e.endswith(":closed") for e in scene.fake.effects)


def test_a_report_asked_for_later_that_day_refreshes_that_days_issue(scene: Scene) -> None:
    scene.previous_report(90)
    seed_night(scene.runtime.settings.database_url)
    scene.tick(at(2, 6))
    assert scene.result(fire_key(at(2, 6))) == "published #151"
    recorder = Recorder(scene.runtime.settings.database_url)
    recorder.move(103, at(2, 9), ("blocked", "in_review"), "unblock", "review: rebased")
    recorder.close()

    scene.engine.start_report(77, REPO, "command:d7", at(2, 10))
    assert scene.result("command:d7") == "published #151"
    assert scene.opened() == [f"{REPO}#151:opened:{TITLE}"]  # still one issue for the day
    assert f"{REPO}#151:edited" in scene.fake.effects
    body = scene.fake.issues[(REPO, 151)].body
    assert "**Period**: 2026-01-02 06:00 UTC to 2026-01-02 10:00 UTC" in body
    assert "**Previous report**: #90" in body
    assert marker(issue_key(REPO, "2026-01-02")) in body  # a re-run still finds it
    assert scene.fake.issues[(REPO, 151)].state == "open"  # never closed as its own previous
    assert scene.fake.effects.count(f"{REPO}#90:closed") == 1


def test_nothing_to_report_opens_no_issue_and_says_so_once(scene: Scene) -> None:
    scene.previous_report(90)
    recorder = Recorder(scene.runtime.settings.database_url)
    recorder.task(5, at(1, 5), "Old work", ["autonomous"])  # before the last report
    recorder.close()

    scene.tick(at(2, 6))
    assert scene.result(fire_key(at(2, 6))) == "nothing to report"
    scene.tick(at(3, 6))
    assert scene.result(fire_key(at(3, 6))) == "nothing to report"

    assert scene.opened() == []
    assert scene.fake.effects == [f"{REPO}#90:comment:{core.NOTHING_NEW.format(date='2026-01-02')}"]
    assert scene.fake.issues[(REPO, 90)].state == "open"
    last = scene.records.last_run(REPO)
    assert last is not None and (last.run_key, last.issue_number) == (fire_key(at(3, 6)), None)
    assert scene.records.last_published(REPO) is not None
    assert scene.records.last_published(REPO).issue_number == 90  # type: ignore[union-attr]


def test_a_paused_repository_gets_no_report(scene: Scene) -> None:
    seed_night(scene.runtime.settings.database_url)
    scene.runtime.store.pause(REPO, by="test")
    scene.tick(at(2, 6))
    assert not DBOS.list_workflows(workflow_id_prefix=f"report:{REPO}:", load_input=False)
    assert scene.fake.effects == []


def test_the_schedule_is_read_in_the_repositorys_time_zone(scene: Scene) -> None:
    config = {"report": {"schedule": "0 7 * * *", "timezone": "Europe/Berlin"}}
    scene.fake.files[(REPO, ".github/nightshift.yml")] = yaml.safe_dump(config)
    scene.runtime.configs.forget(REPO)
    seed_night(scene.runtime.settings.database_url)
    scene.tick(at(2, 5, 59))  # 06:59 in Berlin
    assert not DBOS.list_workflows(workflow_id_prefix=f"report:{REPO}:", load_input=False)
    scene.tick(at(2, 6))  # 07:00 in Berlin
    assert scene.result(fire_key(at(2, 6))) == "published #151"
    body = scene.fake.issues[(REPO, 151)].body
    assert "**Generated**: 2026-01-02 07:00 CET" in body


def test_the_minute_tick_is_scheduled_once(scene: Scene) -> None:
    scene.engine.launch()
    first = DBOS.get_schedule(TICK_SCHEDULE)
    assert first is not None
    assert (first["schedule"], first["workflow_name"]) == (TICK_CRON, TICK_WORKFLOW)
    scene.engine.launch()  # a second worker, or a restart
    again = DBOS.get_schedule(TICK_SCHEDULE)
    assert again is not None and again["schedule_id"] == first["schedule_id"]
    DBOS.delete_schedule(TICK_SCHEDULE)
