"""Reading the failing CI's log through Nightshift's real GitHub adapter and the shared fake:
which jobs, which part of their logs, what is never repeated, and GitHub's errors.

Secret-looking values are assembled at run time, so that this file does not itself trip a
secret scanner.
"""

from __future__ import annotations

import pytest

from app.core import ci_log
from app.core.review_facts import LogExcerpt
from app.core.rules.review import RedRun
from app.effects.facts import failing_log
from tests.fakes.github import FakeGitHub
from tests.helpers import app_client

REPO = "octo/repo"
SHA = "c" * 40
RUN = RedRun(kind="workflow_run", id=900, attempt=2, name="CI")
STAMP = "2024-05-01T02:03:04.1234567Z "
AWS_KEY = "AKIA" + "Q3EGRX7KZ2P5M4NB"
GHS = "ghs_" + "a1B2c3D4e5" * 4
TEST_LOG = "".join(
    f"{STAMP}{line}\n"
    for line in [
        "##[group]Run pytest -q",
        "pytest -q",
        "##[endgroup]",
        f"E   AssertionError: got {GHS}",
        f"aws_access_key_id = {AWS_KEY}",
        "##[error]Process completed with exit code 1.",
        "Post job cleanup.",
    ]
)


def job_url(job_id: int) -> str:
    return f"https://github.com/{REPO}/actions/runs/900/job/{job_id}"


def test_the_failed_jobs_of_the_failed_attempt_with_their_logs(fake_github: FakeGitHub) -> None:
    test = fake_github.add_job(REPO, 900, "test", attempt=2, log=TEST_LOG, failed_step="Run pytest")
    fake_github.add_job(REPO, 900, "lint", "success", attempt=2, log="fine")
    fake_github.add_job(REPO, 900, "test", attempt=1, log="the first attempt")
    build = fake_github.add_job(REPO, 900, "build", "timed_out", attempt=2, log="slow\n")

    found = failing_log(app_client(fake_github), 77, REPO, RUN)

    assert found == (
        LogExcerpt(
            name="test",
            url=job_url(test),
            step="Run pytest",
            text="\n".join(
                [
                    "##[group]Run pytest -q",
                    "pytest -q",
                    "##[endgroup]",
                    "E   AssertionError: got ***",
                    ci_log.WITHHELD.format(kind="AWS Access Key"),
                    "##[error]Process completed with exit code 1.",
                    "Post job cleanup.",
                ]
            ),
        ),
        LogExcerpt(name="build", url=job_url(build), text="slow"),
    )
    downloads = [r for r in fake_github.requests if r.path.endswith("/signedlogcontent")]
    assert len(downloads) == 2
    assert all(r.auth == "" for r in downloads)  # the token stays with api.github.com


def test_at_most_three_failed_jobs_are_read(fake_github: FakeGitHub) -> None:
    for n in range(5):
        fake_github.add_job(REPO, 900, f"shard {n}", attempt=2, log=f"shard {n} failed")
    found = failing_log(app_client(fake_github), 77, REPO, RUN)
    assert [f.name for f in found] == ["shard 0", "shard 1", "shard 2"]
    assert len([r for r in fake_github.requests if r.path.endswith("/logs")]) == 3


@pytest.mark.parametrize(
    ("status", "message", "error"),
    [
        pytest.param(410, "Gone", "GitHub answered 410 (Gone)", id="expired"),
        pytest.param(404, "Not Found", "GitHub answered 404 (Not Found)", id="gone"),
        pytest.param(502, "Bad Gateway", "GitHub answered 502 (Bad Gateway)", id="server-error"),
    ],
)
def test_a_log_github_does_not_give_is_said_to_be_unreadable(
    fake_github: FakeGitHub, status: int, message: str, error: str
) -> None:
    first = fake_github.add_job(REPO, 900, "test", attempt=2, log="boom")
    second = fake_github.add_job(REPO, 900, "e2e", attempt=2, log="bang")
    fake_github.fail(
        "GET", rf"/repos/{REPO}/actions/jobs/{first}/logs", status, body={"message": message}
    )
    github = app_client(fake_github, server_error_retries=0)
    assert failing_log(github, 77, REPO, RUN) == (
        LogExcerpt(name="test", url=job_url(first), error=error),
        LogExcerpt(name="e2e", url=job_url(second), text="bang"),
    )


def test_a_jobs_list_github_does_not_give_is_said_to_be_unreadable(
    fake_github: FakeGitHub,
) -> None:
    fake_github.fail("GET", r"/repos/.+/actions/runs/900/attempts/2/jobs", 503)
    github = app_client(fake_github, server_error_retries=0)
    assert failing_log(github, 77, REPO, RUN) == (
        LogExcerpt(name="CI", error="GitHub answered 503 (fake error)"),
    )


def test_a_run_without_a_failed_job_says_so(fake_github: FakeGitHub) -> None:
    fake_github.add_job(REPO, 900, "test", "cancelled", attempt=2)
    assert failing_log(app_client(fake_github), 77, REPO, RUN) == (
        LogExcerpt(name="CI", error=ci_log.NO_FAILED_JOB),
    )


def test_another_ci_apps_failed_check_runs_say_what_failed(fake_github: FakeGitHub) -> None:
    output = {"title": "2 tests failed", "summary": "test_a, test_b", "text": f"token {GHS}"}
    fake_github.add_check(REPO, SHA, "ci/test", conclusion="failure", app="circleci", output=output)
    fake_github.add_check(REPO, SHA, "ci/lint", app="circleci")
    suite = RedRun(
        kind="check_suite",
        id=fake_github.check_suite_id(REPO, SHA, "circleci"),
        attempt=1,
        name="CircleCI",
    )
    (found,) = failing_log(app_client(fake_github), 77, REPO, suite)
    assert found.name == "ci/test"
    assert found.text == "2 tests failed\n\ntest_a, test_b\n\ntoken ***"
    assert found.url is not None and found.url.startswith(f"https://github.com/{REPO}/runs/")


def test_nothing_is_read_without_github(fake_github: FakeGitHub) -> None:
    assert failing_log(None, 77, REPO, RUN) == ()
    assert failing_log(app_client(fake_github), None, REPO, RUN) == ()
    assert fake_github.requests == []
