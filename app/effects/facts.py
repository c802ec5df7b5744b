"""Facts the core asks for before it decides, read through the GitHub port."""

from __future__ import annotations

from urllib.parse import quote

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
