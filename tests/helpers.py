"""Small helpers shared by the tests: real payloads, signed as GitHub signs them."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from githubkit.webhooks import sign

from app.effects.github import GitHubApp
from app.effects.store import NewDelivery
from tests.fakes.github import FakeGitHub

PAYLOADS = Path(__file__).parent / "payloads"


def payload(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((PAYLOADS / f"{name}.json").read_text())
    return data


def body_of(data: Mapping[str, Any] | bytes) -> bytes:
    return data if isinstance(data, bytes) else json.dumps(dict(data)).encode()


def signed_headers(
    body: bytes, secret: str, event: str, delivery: str | None = None
) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "x-github-event": event,
        "x-github-delivery": delivery or str(uuid.uuid4()),
        "x-hub-signature-256": sign(secret, body),
    }


def labeled_issue(
    *,
    number: int = 1,
    repo: str = "octo/repo",
    label: str = "autonomous",
    body: str | None = "## Acceptance criteria\n- [ ] it works",
    state: str = "open",
    installation: int = 77,
    **issue: Any,
) -> dict[str, Any]:
    """A real `issues.labeled` payload with the fields a scenario needs changed."""
    data = payload("issues.labeled")
    data["label"] = {**data["label"], "name": label}
    data["issue"] = {
        **data["issue"],
        "number": number,
        "body": body,
        "state": state,
        "labels": [{**data["label"], "name": label}],
        "assignees": [],
        "assignee": None,
        **issue,
    }
    data["repository"] = {**data["repository"], "full_name": repo}
    data["installation"] = {
        "id": installation,
        "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uNzc=",
    }
    return data


def command_comment(
    body: str,
    *,
    login: str = "octocat",
    user_type: str = "User",
    number: int = 1,
    repo: str = "octo/repo",
    labels: tuple[str, ...] = ("autonomous",),
    installation: int = 77,
) -> dict[str, Any]:
    """A real `issue_comment.created` payload with the comment and the issue a test needs."""
    data = payload("issue_comment.created")
    user = {**data["sender"], "login": login, "type": user_type}
    data["comment"] = {**data["comment"], "body": body, "user": user}
    data["sender"] = user
    data["issue"] = {
        **data["issue"],
        "number": number,
        "labels": [{**data["issue"]["labels"][0], "name": name} for name in labels]
        if data["issue"].get("labels")
        else [{"name": name} for name in labels],
    }
    data["repository"] = {**data["repository"], "full_name": repo}
    data["installation"] = {**data.get("installation", {}), "id": installation}
    return data


def app_client(fake: FakeGitHub, *, server_error_retries: int = 3) -> GitHubApp:
    """Nightshift's real GitHub adapter, talking in-process to the shared fake."""
    return GitHubApp(
        fake.app_id,
        fake.private_key,
        "https://api.github.com",
        write_interval=0,
        server_error_retries=server_error_retries,
        transport=fake.transport(),
    )


def pull_request_event(
    action: str,
    *,
    number: int,
    head_sha: str,
    body: str,
    head_ref: str = "feature",
    author: str = "agent-bot",
    fork: bool = False,
    draft: bool = False,
    repo: str = "octo/repo",
    installation: int = 77,
) -> dict[str, Any]:
    """A real `pull_request` payload with the pull request a test needs."""
    data = payload("pull_request.opened")
    pull = data["pull_request"]
    source = f"fork-owner/{repo.split('/')[1]}" if fork else repo
    user = {**pull["user"], "login": author}
    data["action"] = action
    data["number"] = number
    data["pull_request"] = {
        **pull,
        "number": number,
        "body": body,
        "draft": draft,
        "state": "open",
        "user": user,
        "head": {
            **pull["head"],
            "ref": head_ref,
            "sha": head_sha,
            "repo": {**pull["head"]["repo"], "full_name": source},
        },
        "base": {
            **pull["base"],
            "ref": "main",
            "repo": {**pull["base"]["repo"], "full_name": repo},
        },
    }
    data["repository"] = {**data["repository"], "full_name": repo}
    data["installation"] = {**data["installation"], "id": installation}
    data["sender"] = user
    return data


def workflow_run_event(
    *,
    run_id: int,
    head_sha: str,
    conclusion: str = "failure",
    name: str = "CI",
    attempt: int = 1,
    head_branch: str = "feature",
    repo: str = "octo/repo",
    installation: int = 77,
) -> dict[str, Any]:
    """A `workflow_run.completed` payload with the fields the CI rules read."""
    return {
        "action": "completed",
        "workflow_run": {
            "id": run_id,
            "name": name,
            "head_sha": head_sha,
            "head_branch": head_branch,
            "status": "completed",
            "conclusion": conclusion,
            "run_attempt": attempt,
            "html_url": f"https://github.com/{repo}/actions/runs/{run_id}",
        },
        "repository": {"full_name": repo, "name": repo.split("/")[1], "default_branch": "main"},
        "installation": {"id": installation},
        "sender": {"login": "github-actions[bot]", "type": "Bot"},
    }


def new_delivery(
    delivery_id: str, body: bytes | None = None, received_at: float | None = None
) -> NewDelivery:
    """A verified `issues.labeled` delivery as the ingress hands it to the inbox."""
    if body is None:
        body = b'{"action": "labeled", "id": "%b"}' % delivery_id.encode()
    return NewDelivery(
        id=delivery_id,
        event="issues",
        action="labeled",
        repository="octo/repo",
        installation_id=7,
        body=body,
        received_at=received_at,
    )


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until `check()` holds (another thread or task gets there), at most `timeout`."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)
