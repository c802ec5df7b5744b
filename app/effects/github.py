"""GitHub access: App (JWT) and installation auth through githubkit, throttled writes, retries.

Writes go through the executor (and the reconciler's redelivery requests) only; the reads
the core needs before deciding (the configuration file, a commenter's permission) are made
in the workflow's plan step (repo_config.py, facts.py). All of it through `GitHubPort`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncGenerator, Generator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

import anyio
import httpx
from githubkit import AppAuthStrategy, GitHub
from githubkit.cache import MemCacheStrategy
from githubkit.exception import GitHubException, RequestFailed
from githubkit.retry import RetryChainDecision, RetryRateLimit, RetryServerError
from githubkit.throttling import BaseThrottler
from githubkit.typing import RetryDecisionFunc, RetryOption

from app.core.actions import (
    AddLabels,
    Comment,
    GitHubAction,
    Merge,
    OpenIssue,
    PublishCheck,
    RemoveLabel,
    RerequestCheckSuite,
    RerunFailedJobs,
    SubmitReview,
)
from app.metrics import observe_rate_limit

WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})


@dataclass(frozen=True)
class GitHubRequest:
    """One REST request, as sent and as recorded in dry-run."""

    method: str
    path: str
    json: Mapping[str, Any] | None = None
    params: Mapping[str, Any] | None = field(default=None)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method, "path": self.path}
        if self.json is not None:
            out["json"] = dict(self.json)
        if self.params:
            out["params"] = dict(self.params)
        return out


@dataclass(frozen=True)
class GitHubResponse:
    status: int
    data: Any
    headers: Mapping[str, str] = field(default_factory=dict)


class GitHubError(Exception):
    """GitHub answered with an error status after retries, or could not be reached."""

    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(f"{status or 'no response'}: {message}")
        self.status = status
        self.message = message

    def __reduce__(self) -> tuple[type[GitHubError], tuple[int | None, str]]:
        return (type(self), (self.status, self.message))  # the engine pickles step errors

    @property
    def transient(self) -> bool:
        """Worth trying again later: GitHub had a server error or could not be reached."""
        return self.status is None or self.status >= 500


class GitHubPort(Protocol):
    """The narrow interface the executor and reconciler need."""

    def send(self, installation_id: int, request: GitHubRequest) -> GitHubResponse: ...

    def send_as_app(self, request: GitHubRequest) -> GitHubResponse: ...


# -- actions as requests --------------------------------------------------------------------

MARKER = "<!-- nightshift:{key} -->"


def marker(key: str) -> str:
    return MARKER.format(key=key)


def find_marked(
    github: GitHubPort,
    installation_id: int,
    path: str,
    key: str,
    *,
    params: Mapping[str, Any] | None = None,
    bots_only: bool = False,
) -> dict[str, Any] | None:
    """The item of the listing at `path` (comments, reviews, issues) whose body carries
    `key`'s hidden marker, paging through all of it; with `bots_only`, only one a bot wrote
    (a person cannot then suppress a message by pasting a marker)."""
    wanted = marker(key)
    page = 1
    while True:
        response = github.send(
            installation_id,
            GitHubRequest("GET", path, params={"per_page": 100, "page": page, **(params or {})}),
        )
        found = response.data if isinstance(response.data, list) else []
        for item in found:
            if not isinstance(item, dict) or wanted not in str(item.get("body") or ""):
                continue
            user = item.get("user")
            if bots_only and not (isinstance(user, dict) and user.get("type") == "Bot"):
                continue
            return item
        if len(found) < 100:
            return None
        page += 1


def request_for(action: GitHubAction) -> GitHubRequest:
    """The exact REST request an action becomes."""
    repo = action.repo
    if isinstance(action, AddLabels):
        return GitHubRequest(
            "POST",
            f"/repos/{repo}/issues/{action.number}/labels",
            {"labels": list(action.labels)},
        )
    if isinstance(action, RemoveLabel):
        return GitHubRequest(
            "DELETE", f"/repos/{repo}/issues/{action.number}/labels/{quote(action.label, safe='')}"
        )
    if isinstance(action, Comment):
        return GitHubRequest(
            "POST",
            f"/repos/{repo}/issues/{action.number}/comments",
            {"body": f"{action.body}\n\n{marker(action.key)}"},
        )
    if isinstance(action, PublishCheck):
        # https://docs.github.com/en/rest/checks/runs#create-a-check-run
        return GitHubRequest("POST", f"/repos/{repo}/check-runs", check_run_body(action, True))
    if isinstance(action, SubmitReview):
        # https://docs.github.com/en/rest/pulls/reviews#create-a-review-for-a-pull-request
        return GitHubRequest(
            "POST",
            f"/repos/{repo}/pulls/{action.number}/reviews",
            {
                "commit_id": action.commit_id,
                "event": action.event,
                "body": f"{action.body}\n\n{marker(action.key)}",
            },
        )
    if isinstance(action, Merge):
        # `sha`: GitHub refuses (409) when the head is no longer the commit we reviewed
        # https://docs.github.com/en/rest/pulls/pulls#merge-a-pull-request
        body: dict[str, Any] = {"sha": action.sha, "merge_method": action.method}
        if action.title:
            body["commit_title"] = action.title
        return GitHubRequest("PUT", f"/repos/{repo}/pulls/{action.number}/merge", body)
    if isinstance(action, RerunFailedJobs):
        return GitHubRequest(
            "POST", f"/repos/{repo}/actions/runs/{action.run_id}/rerun-failed-jobs"
        )
    if isinstance(action, RerequestCheckSuite):
        return GitHubRequest("POST", f"/repos/{repo}/check-suites/{action.suite_id}/rerequest")
    if isinstance(action, OpenIssue):
        return GitHubRequest(
            "POST",
            f"/repos/{repo}/issues",
            {
                "title": action.title,
                "body": f"{action.body}\n\n{marker(action.key)}",
                "labels": list(action.labels),
            },
        )
    raise TypeError(f"no request for {type(action).__name__}")


def check_run_body(action: PublishCheck, create: bool) -> dict[str, Any]:
    """A check run's fields; `external_id` (the key) finds it again after a crash."""
    body: dict[str, Any] = {"status": action.status}
    if create:
        body |= {"name": action.name, "head_sha": action.head_sha, "external_id": action.key}
    if action.conclusion is not None:
        body["conclusion"] = action.conclusion
    if action.output is not None:
        body["output"] = dict(action.output)
    return body


def update_check_run(action: PublishCheck, check_run_id: int) -> GitHubRequest:
    # https://docs.github.com/en/rest/checks/runs#update-a-check-run
    return GitHubRequest(
        "PATCH", f"/repos/{action.repo}/check-runs/{check_run_id}", check_run_body(action, False)
    )


# -- throttling -----------------------------------------------------------------------------


class SpacedWriteThrottler(BaseThrottler):
    """Few requests in flight, and content-creating requests spaced out.

    GitHub's secondary limits allow at most 80 content-creating requests a minute and
    advise against concurrent requests:
    https://docs.github.com/en/rest/using-the-rest-api/best-practices-for-using-the-rest-api#avoid-concurrent-requests
    """

    def __init__(self, max_concurrency: int = 4, write_interval: float = 1.0) -> None:
        self.write_interval = write_interval
        self._semaphore = threading.BoundedSemaphore(max_concurrency)
        self._max = max_concurrency
        self._write_lock = threading.Lock()
        self._next_write = 0.0
        self._async_semaphore: anyio.Semaphore | None = None

    def _wait_for_write_slot(self, request: httpx.Request) -> float:
        if request.method not in WRITE_METHODS or self.write_interval <= 0:
            return 0.0
        with self._write_lock:
            now = time.monotonic()
            start = max(now, self._next_write)
            self._next_write = start + self.write_interval
        return start - now

    @contextmanager
    def acquire(self, request: httpx.Request) -> Generator[None, Any, Any]:
        with self._semaphore:
            delay = self._wait_for_write_slot(request)
            if delay > 0:
                time.sleep(delay)
            yield

    @asynccontextmanager
    async def async_acquire(self, request: httpx.Request) -> AsyncGenerator[None, Any]:
        if self._async_semaphore is None:
            self._async_semaphore = anyio.Semaphore(self._max)
        async with self._async_semaphore:
            delay = self._wait_for_write_slot(request)
            if delay > 0:
                await anyio.sleep(delay)
            yield


# -- the real adapter -----------------------------------------------------------------------


class GitHubApp:
    """githubkit with App auth; installation tokens are fetched and refreshed by githubkit.

    githubkit caches an installation token until one minute before its `expires_at` and
    fetches a new one on the next request, so a long review never uses an expired token.
    Rate limits: githubkit waits for `retry-after`, else until `x-ratelimit-reset`, else a
    minute, and retries 5xx with a growing back-off.
    """

    def __init__(
        self,
        app_id: int,
        private_key: str,
        base_url: str = "https://api.github.com",
        *,
        write_interval: float = 1.0,
        rate_limit_retries: int = 3,
        server_error_retries: int = 3,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._app = GitHub(
            AppAuthStrategy(app_id, private_key),
            base_url=base_url + "/",
            user_agent="nightshift",
            http_cache=False,
            cache_strategy=MemCacheStrategy(),  # tokens of this App only, never a shared cache
            throttler=SpacedWriteThrottler(write_interval=write_interval),
            auto_retry=RetryChainDecision(
                RetryRateLimit(max_retry=rate_limit_retries),
                _NotForPost(RetryServerError(max_retry=server_error_retries)),
            ),
            transport=transport,
        )
        self._installations: dict[int, GitHub[Any]] = {}
        self._lock = threading.Lock()

    def _for_installation(self, installation_id: int) -> GitHub[Any]:
        with self._lock:
            client = self._installations.get(installation_id)
            if client is None:
                auth = self._app.auth
                assert isinstance(auth, AppAuthStrategy)
                client = self._app.with_auth(auth.as_installation(installation_id))
                self._installations[installation_id] = client
            return client

    def send(self, installation_id: int, request: GitHubRequest) -> GitHubResponse:
        return _send(self._for_installation(installation_id), request)

    def send_as_app(self, request: GitHubRequest) -> GitHubResponse:
        return _send(self._app, request)


class _NotForPost:
    """Retry server errors, except for POSTs.

    GitHub can create a comment and still answer 502; retrying the POST would post it twice.
    A failed POST goes back to the workflow step instead, whose re-run looks for the
    comment's marker before posting again.
    """

    def __init__(self, inner: RetryDecisionFunc) -> None:
        self.inner = inner

    def __call__(self, exc: GitHubException, retry_count: int) -> RetryOption:
        request = getattr(exc, "request", None)
        if isinstance(request, httpx.Request) and request.method == "POST":
            return RetryOption(False)
        return self.inner(exc, retry_count)


def _send(client: GitHub[Any], request: GitHubRequest) -> GitHubResponse:
    path = request.path.lstrip("/")
    if path == "graphql":
        # Enterprise Server serves GraphQL at /api/graphql, beside (not under) /api/v3
        base = str(client.config.base_url).rstrip("/")
        if base.endswith("/api/v3"):
            path = base.removesuffix("/v3") + "/graphql"
    try:
        response = client.request(
            request.method,
            path,
            json=dict(request.json) if request.json is not None else None,
            params=dict(request.params) if request.params else None,
        )
    except RequestFailed as exc:
        observe_rate_limit(exc.response.raw_response.headers)
        raise GitHubError(exc.response.status_code, _message(exc.response.raw_response)) from None
    except GitHubException as exc:
        # e.g. the installation token exchange failed inside the auth flow
        failed = getattr(exc, "response", None) or (exc.args[0] if exc.args else None)
        raw = getattr(failed, "raw_response", None)
        if isinstance(raw, httpx.Response):
            raise GitHubError(raw.status_code, _message(raw)) from None
        raise GitHubError(None, str(exc) or type(exc).__name__) from None
    raw = response.raw_response
    observe_rate_limit(raw.headers)
    data: Any = None
    if raw.content:
        try:
            data = raw.json()
        except ValueError:
            data = raw.text
    return GitHubResponse(raw.status_code, data, dict(raw.headers))


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    return str(body)[:200]


def link_next(headers: Mapping[str, str]) -> str | None:
    """The `next` URL of a paginated response's Link header."""
    link = headers.get("link") or headers.get("Link")
    if not link:
        return None
    for part in link.split(","):
        url, _, rel = part.partition(";")
        if 'rel="next"' in rel:
            return url.strip().strip("<>")
    return None
