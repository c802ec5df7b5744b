"""Facts the core asks for before it decides, read through the GitHub port."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from app.core.review_facts import CheckResult
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
