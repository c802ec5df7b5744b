"""`nightshift report`: the same markdown as the published report, printed locally."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from app.core import report as core
from app.effects.records import Records, ReportRun
from app.effects.store import Store
from app.report_cli import ReportError, parse_since, report
from app.settings import Settings
from tests.effects.night import REPO, Recorder, at, seed_night

NIGHT_REPORT = (Path(__file__).parent / "effects" / "night_report.md").read_text()
NOW = at(2, 6)


@pytest.fixture
def night(store: Store, database_url: str) -> Store:
    Records(store).record_run(
        ReportRun(
            repo=REPO,
            run_key="2026-01-01T06:00:00+00:00",
            period_end=at(1, 6),
            created_at=at(1, 6),
            issue_number=90,
            session="2025-12-31-session-01",
            report_date="2026-01-01",
            timezone="UTC",
        )
    )
    seed_night(database_url)
    return store


def run(
    settings: Settings, repo: str | None = None, since: str | None = None, as_json: bool = False
) -> str:
    out = io.StringIO()
    assert report(settings, repo, since, as_json, clock=lambda: NOW, out=out) == 0
    return out.getvalue()


@pytest.mark.parametrize(
    "since",
    [
        pytest.param(None, id="since-the-last-report"),
        pytest.param("24h", id="a-duration"),
        pytest.param("1d", id="days"),
        pytest.param("2026-01-01T06:00", id="iso-utc"),
        pytest.param("2026-01-01T07:00+01:00", id="iso-offset"),
    ],
)
def test_it_prints_the_report_the_schedule_would_publish(
    night: Store, settings: Settings, since: str | None
) -> None:
    assert run(settings, REPO, since) == NIGHT_REPORT


def test_json_and_every_repository(night: Store, settings: Settings, database_url: str) -> None:
    other = Recorder(database_url, repo="octo/other")
    other.task(1, at(1, 20), "Elsewhere", ["autonomous"])
    other.close()
    lines = [json.loads(line) for line in run(settings, as_json=True).splitlines()]
    assert [(x["repository"], x["title"]) for x in lines] == [
        ("octo/other", "Autonomous Operation Report — 2026-01-02"),
        (REPO, "Autonomous Operation Report — 2026-01-02"),
    ]
    assert lines[1]["markdown"] == NIGHT_REPORT
    assert lines[1]["since"] == "2026-01-01T06:00:00+00:00"
    assert lines[1]["nothing_to_report"] is False
    text = run(settings)
    assert text.count(core.HEADING) == 2 and "\n---\n" in text


def test_a_quiet_period(night: Store, settings: Settings) -> None:
    out = io.StringIO()
    report(settings, REPO, "2026-01-02T05:00", True, clock=lambda: NOW, out=out)
    assert json.loads(out.getvalue())["nothing_to_report"] is True


@pytest.mark.parametrize(
    ("repo", "since", "message"),
    [
        pytest.param("octo", None, "'octo' is not OWNER/NAME", id="bad-repo"),
        pytest.param(REPO, "yesterday", "--since 'yesterday'", id="bad-since"),
    ],
)
def test_bad_arguments_are_one_line_errors(
    store: Store, settings: Settings, repo: str, since: str | None, message: str
) -> None:
    with pytest.raises(ReportError, match=message):
        report(settings, repo, since, False, clock=lambda: NOW, out=io.StringIO())


def test_an_unmigrated_database_is_refused(tmp_path: Path, settings: Settings) -> None:
    bare = settings.model_copy(update={"database_url": f"sqlite:///{tmp_path}/empty.db"})
    with pytest.raises(ReportError, match="no Nightshift tables"):
        report(bare, None, None, False, clock=lambda: NOW, out=io.StringIO())


@pytest.mark.parametrize(
    ("text", "expected"),
    [("24h", NOW - 86400), ("90m", NOW - 5400), ("2w", NOW - 14 * 86400), ("30s", NOW - 30),
     ("2026-01-01", at(1, 0)), ("2026-01-01T06:00:00Z", at(1, 6))],
)  # fmt: skip
def test_parse_since(text: str, expected: float) -> None:
    assert parse_since(text, NOW) == expected
