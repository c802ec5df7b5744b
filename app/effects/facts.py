"""Facts the core asks for before it decides, read through the GitHub port."""

from __future__ import annotations

import dataclasses
import json
from typing import Any
from urllib.parse import quote

from app.core import ci_log
from app.core.review_facts import CheckResult, LogExcerpt
from app.core.rules.review import FAILED_CONCLUSIONS as FAILED
from app.core.rules.review import RedRun
from app.effects import secrets
from app.effects.github import GitHubError, GitHubPort, GitHubRequest


def permission(
    github: GitHubPort | None, installation_id: int | None, repo: str, login: str
) -> str | None:
    """The user's permission on the repository (`admin`, `maintain`, `write`, `triage`,
    `read` or `none`), from the collaborator-permission API; None when it cannot be asked.

    https://docs.github.com/en/rest/collaborators/collaborators#get-repository-permissions-for-a-user
    """
    if github is None or installation_id is None:
        return None
    request = GitHubRequest("GET", f"/repos/{repo}/collaborators/{quote(login)}/permission")
    try:
        response = github.send(installation_id, request)
    except GitHubError as exc:
        if exc.status == 404:  # not a collaborator
            return "none"
        raise
    data = response.data if isinstance(response.data, dict) else {}
    # role_name tells maintain and triage apart; permission folds them into write and read
    role = data.get("role_name")
    value = role if role in ("admin", "maintain", "write", "triage", "read") else None
    value = value or data.get("permission")
    return str(value) if value else "none"


def get(github: GitHubPort, installation_id: int, path: str, **params: Any) -> Any:
    """One GET through the port; the answer's JSON."""
    return github.send(installation_id, GitHubRequest("GET", path, params=params or None)).data


def checks_for(
    github: GitHubPort, installation_id: int, repo: str, sha: str, *, ignore_prefix: str
) -> list[CheckResult]:
    """What CI reported for the commit: check runs (latest per name) and commit statuses.

    https://docs.github.com/en/rest/checks/runs#list-check-runs-for-a-git-reference
    https://docs.github.com/en/rest/commits/statuses#get-the-combined-status-for-a-specific-reference
    """
    found: list[CheckResult] = []
    page = 1
    while True:
        data = get(
            github,
            installation_id,
            f"/repos/{repo}/commits/{sha}/check-runs",
            filter="latest",
            per_page=100,
            page=page,
        )
        runs = data.get("check_runs", []) if isinstance(data, dict) else []
        for run in runs:
            name = str(run.get("name", ""))
            if name.startswith(ignore_prefix):
                continue  # our own check runs are not CI
            found.append(
                CheckResult(
                    name=name,
                    head_sha=str(run.get("head_sha", "")),
                    status=str(run.get("status", "")),
                    conclusion=run.get("conclusion"),
                    details_url=run.get("details_url") or run.get("html_url"),
                )
            )
        if len(runs) < 100:
            break
        page += 1
    data = get(github, installation_id, f"/repos/{repo}/commits/{sha}/status", per_page=100)
    statuses = data.get("statuses", []) if isinstance(data, dict) else []
    for status in statuses:
        state = str(status.get("state", ""))
        found.append(
            CheckResult(
                name=str(status.get("context", "")),
                head_sha=sha,
                status="in_progress" if state == "pending" else "completed",
                conclusion=None if state == "pending" else _STATUS_CONCLUSION.get(state, state),
                details_url=status.get("target_url"),
            )
        )
    return found


_STATUS_CONCLUSION = {"success": "success", "failure": "failure", "error": "failure"}


def failing_log(
    github: GitHubPort | None, installation_id: int | None, repo: str, run: RedRun
) -> tuple[LogExcerpt, ...]:
    """Why a red CI result failed, for the comment that blocks the pull request and for its
    agent: the log excerpts of the run's failed jobs (GitHub Actions), or the output of the
    suite's failed check runs (another CI app), at most ci_log.JOBS_READ of them.

    GitHub's errors never fail the delivery (the block matters more than its detail): an
    excerpt then says what could not be read and why. Nothing when GitHub cannot be asked.
    """
    if github is None or installation_id is None:
        return ()
    if run.kind == "workflow_run":
        return _job_logs(github, installation_id, repo, run)
    return _check_outputs(github, installation_id, repo, run)


def _job_logs(
    github: GitHubPort, installation_id: int, repo: str, run: RedRun
) -> tuple[LogExcerpt, ...]:
    """The failed jobs of the run's attempt that failed, each with the part of its log
    around the first error.

    https://docs.github.com/en/rest/actions/workflow-jobs#list-jobs-for-a-workflow-run-attempt
    https://docs.github.com/en/rest/actions/workflow-jobs#download-job-logs-for-a-workflow-run
    (a 302 to a short-lived download URL, which the client follows without the token)
    """
    path = f"/repos/{repo}/actions/runs/{run.id}/attempts/{run.attempt}/jobs"
    try:
        jobs = _failed(get(github, installation_id, path, per_page=100), "jobs")
    except GitHubError as exc:
        return (LogExcerpt(name=run.name, error=_unreadable(exc)),)
    if not jobs:
        return (LogExcerpt(name=run.name, error=ci_log.NO_FAILED_JOB),)
    found: list[LogExcerpt] = []
    for job in jobs[: ci_log.JOBS_READ]:
        steps = job.get("steps") or []
        failed = [s for s in steps if isinstance(s, dict) and s.get("conclusion") in FAILED]
        where = LogExcerpt(
            name=str(job.get("name") or run.name),
            url=_str(job.get("html_url")),
            step=_str(failed[0].get("name")) if failed else None,
        )
        request = GitHubRequest("GET", f"/repos/{repo}/actions/jobs/{job.get('id')}/logs")
        try:
            data = github.send(installation_id, request).data
        except GitHubError as exc:
            found.append(dataclasses.replace(where, error=_unreadable(exc)))
            continue
        text = data if isinstance(data, str) else "" if data is None else json.dumps(data)
        found.append(dataclasses.replace(where, text=_quotable(text)))
    return tuple(found)


def _check_outputs(
    github: GitHubPort, installation_id: int, repo: str, run: RedRun
) -> tuple[LogExcerpt, ...]:
    """The suite's failed check runs, each with its output (title, summary, text): another
    CI app's way of saying what failed.

    https://docs.github.com/en/rest/checks/runs#list-check-runs-in-a-check-suite
    """
    path = f"/repos/{repo}/check-suites/{run.id}/check-runs"
    try:
        listed = get(github, installation_id, path, filter="latest", per_page=100)
        runs = _failed(listed, "check_runs")
    except GitHubError as exc:
        return (LogExcerpt(name=run.name, error=_unreadable(exc)),)
    if not runs:
        return (LogExcerpt(name=run.name, error=ci_log.NO_FAILED_JOB),)
    found: list[LogExcerpt] = []
    for check in runs[: ci_log.JOBS_READ]:
        output = check.get("output")
        said = output if isinstance(output, dict) else {}
        parts = [str(said[key]) for key in ("title", "summary", "text") if said.get(key)]
        found.append(
            LogExcerpt(
                name=str(check.get("name") or run.name),
                url=_str(check.get("details_url")) or _str(check.get("html_url")),
                text=_quotable("\n\n".join(parts)),
            )
        )
    return tuple(found)


def _failed(data: Any, key: str) -> list[dict[str, Any]]:
    items = data.get(key) if isinstance(data, dict) else None
    return [
        item for item in items or [] if isinstance(item, dict) and item.get("conclusion") in FAILED
    ]


def _quotable(text: str) -> str:
    """The excerpt of a log, with the lines the secret scanner flags withheld."""
    cut = ci_log.excerpt(text)
    flagged = secrets.flagged_lines(cut)
    return "\n".join(
        ci_log.WITHHELD.format(kind=flagged[number]) if number in flagged else line
        for number, line in enumerate(cut.splitlines(), 1)
    )


def _unreadable(exc: GitHubError) -> str:
    if exc.status is None:
        return ci_log.GITHUB_UNREACHABLE.format(message=exc.message)
    return ci_log.GITHUB_ANSWERED.format(status=exc.status, message=exc.message)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def contents_token(github: GitHubPort, repo: str, installation_id: int) -> str:
    """A short-lived token that can only read this repository's contents (for git fetch).

    Narrower than the installation's own token: a leak of it could not write anything.
    https://docs.github.com/en/rest/apps/apps#create-an-installation-access-token-for-an-app
    """
    response = github.send_as_app(
        GitHubRequest(
            "POST",
            f"/app/installations/{installation_id}/access_tokens",
            {"repositories": [repo.split("/", 1)[1]], "permissions": {"contents": "read"}},
        )
    )
    data = response.data if isinstance(response.data, dict) else {}
    return str(data["token"])


def dependencies(
    github: GitHubPort | None, installation_id: int | None, repo: str, number: int
) -> frozenset[int] | None:
    """The issue's native dependencies: the issues blocking it and its sub-issues (a parent
    is done when its parts are). Issues of other repositories are left out (a task depends
    on issues of its own repository). None when they cannot be asked; a GitHub without these
    APIs (older Enterprise Server: 404) has none.

    https://docs.github.com/en/rest/issues/issue-dependencies#list-dependencies-an-issue-is-blocked-by
    https://docs.github.com/en/rest/issues/sub-issues#list-sub-issues
    """
    if github is None or installation_id is None:
        return None
    found: set[int] = set()
    for kind in ("dependencies/blocked_by", "sub_issues"):
        try:
            items = get(
                github, installation_id, f"/repos/{repo}/issues/{number}/{kind}", per_page=100
            )
        except GitHubError as exc:
            if exc.status in (404, 410):
                continue
            raise
        for item in items if isinstance(items, list) else ():
            url = str(item.get("repository_url") or "") if isinstance(item, dict) else ""
            if isinstance(item, dict) and url.lower().endswith(f"/repos/{repo.lower()}"):
                found.add(int(item["number"]))
    return frozenset(found)
