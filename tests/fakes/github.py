"""The one shared fake GitHub: stateful, and recording what happened as readable strings.

Use it in-process as an httpx transport (`fake.transport()`), behind respx
(`respx_mock.route(...).mock(side_effect=fake.handle)`), or over real HTTP for a server
started as a subprocess (`with serve(fake) as url`). Effects read like Prow's fakegithub:

    "octo/repo#1:+nightshift:queued"            label added ("-" when removed)
    "octo/repo#1:comment:<first line>"          comment posted
    "octo/repo#12:opened:<title>"               issue opened
    "octo/repo#3:review:APPROVE"                review submitted (the event as sent)
    "octo/repo#3:merged@1a2b3c4:squash"         pull request merged (its head, the method)
    "octo/repo@1a2b3c4:check:nightshift:success" check run created or updated
    "octo/repo:rerun-failed-jobs:42"            "octo/repo:rerequest-check-suite:7"
    "octo/repo:ref:nightshift/revert-7"          branch created (POST /git/refs)
    "octo/repo#13:opened-pull:<title>"           pull request opened
    "redeliver:<guid>"                          "graphql:<operation>"

The Git Data API (blobs, trees, commits, refs) stores what it is sent, answered with git
object ids (a blob's is git's own hash of its content): tests read `blobs`, `trees`,
`commits` and `refs`, or the requests.

Tests set up the state GitHub would have (`issue`, `pull`, `push`, `add_check`,
`add_status`, `add_job`, `files`, `permissions`) and program failures with `fail`.

A job's log is served as GitHub serves it: `GET .../actions/jobs/{id}/logs` answers 302 to
a signed download URL on another host (`downloads`), which is storage, not the API: the
contract does not judge it, and it refuses a request that carries a token (a client must
not send its GitHub token to a host it was redirected to).

Every request it handles, and its answer, goes to its `contract` hook: in the tests, the
checks against GitHub's published API descriptions (tests/contract). Its answers carry the
fields GitHub documents, so that check holds them to GitHub's shapes too.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import itertools
import json
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote

import httpx
import jwt
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes.projects import FakeProjects
from tests.fakes.shapes import example, examples

Handler = Callable[["FakeGitHub", httpx.Request, re.Match[str]], httpx.Response]
Contract = Callable[[httpx.Request, httpx.Response], None]
DOCS = "https://docs.github.com/rest"


def make_app_key() -> tuple[str, str]:
    """A fresh RSA key pair for a test App: (private PEM, public PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


@dataclass
class Recorded:
    method: str
    path: str
    params: dict[str, str]
    json: Any
    auth: str


@dataclass
class FakeIssue:
    labels: list[str] = field(default_factory=list)
    comments: list[dict[str, Any]] = field(default_factory=list)
    title: str = ""
    body: str = ""
    state: str = "open"  # or "closed"
    user: str = "octocat"


@dataclass
class FakePull:
    """A pull request; its labels and comments live on its issue (`fake.issue`), as on GitHub.

    `mergeable` answers successive GETs: each takes the first answer off the queue unless it
    is the last, which then stays (GitHub computes mergeability lazily: `[None, True]` reads
    "not known yet", then "mergeable"). The merge endpoint looks at the current first answer.
    `reviews` are stored reviews: `user` (a login), `state`, `body`, `commit_id`, `id`."""

    number: int
    title: str = ""
    body: str = ""
    head_ref: str = ""
    head_sha: str = ""
    base_ref: str = "main"
    base_sha: str = ""
    author: str = "octocat"
    fork: bool = False  # the head is in `fork-owner/<name>`
    draft: bool = False
    state: str = "open"  # or "closed"
    merged: bool = False
    merge_commit_sha: str | None = None
    merges_as: str | None = None  # the commit a merge creates (a test may make it real)
    mergeable: list[bool | None] = field(default_factory=lambda: [True])
    reviews: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.head_ref = self.head_ref or f"topic-{self.number}"
        self.head_sha = self.head_sha or _digest("head", self.number)
        self.base_sha = self.base_sha or _digest("base", self.number)


@dataclass
class Programmed:
    method: str
    path: str
    status: int
    headers: dict[str, str]
    body: Any
    times: int
    after_doing_it: bool = False


class FakeGitHub:
    def __init__(
        self,
        *,
        app_id: int = 4242,
        public_key: str | None = None,
        token_ttl: float = 3600.0,
        latency: float = 0.0,
        path_prefix: str = "",
        contract: Contract | None = None,
    ) -> None:
        self.app_id = app_id
        if public_key is None:
            self.private_key, public_key = make_app_key()
        self.public_key = public_key
        self.token_ttl = token_ttl
        self.latency = latency
        self.path_prefix = path_prefix
        self.contract = contract
        self.graphql_answers: list[Any] = []
        self.effects: list[str] = []
        self.requests: list[Recorded] = []
        self.issues: dict[tuple[str, int], FakeIssue] = {}
        self.pulls: dict[tuple[str, int], FakePull] = {}
        # Projects (v2), answering POST /graphql when no answer is programmed; its issues
        # are these
        self.projects = FakeProjects(self.issues)
        # id -> {repo, head_sha, name, status, conclusion, output, external_id} (+ app slug,
        # details_url); the check runs of every app, Nightshift's own and CI's
        self.check_runs: dict[int, dict[str, Any]] = {}
        # (repo, sha) -> [(context, state)], oldest first: commit statuses
        self.statuses: dict[tuple[str, str], list[tuple[str, str]]] = {}
        # id -> {repo, run_id, attempt, name, conclusion, failed_step, log}: Actions' jobs
        self.jobs: dict[int, dict[str, Any]] = {}
        # where job logs are downloaded from (`serve` points it at itself)
        self.downloads = "https://pipelines.actions.githubusercontent.com"
        self.hook_deliveries: list[dict[str, Any]] = []
        # the Git Data API: (repo, sha) -> content / the request's body; (repo, ref) -> sha
        self.blobs: dict[tuple[str, str], bytes] = {}
        self.trees: dict[tuple[str, str], dict[str, Any]] = {}
        self.commits: dict[tuple[str, str], dict[str, Any]] = {}
        self.refs: dict[tuple[str, str], str] = {}
        self.files: dict[tuple[str, str], str] = {}  # (repo, path) on the default branch
        # (repo, login) -> admin | maintain | write | triage | read; others are no collaborator
        self.permissions: dict[tuple[str, str], str] = {}
        self.tokens: dict[str, tuple[int, float]] = {}
        self._programmed: list[Programmed] = []
        self._ids = itertools.count(1000)
        self._lock = threading.Lock()

    # test set-up ----------------------------------------------------------------------------

    def issue(self, repo: str, number: int) -> FakeIssue:
        return self.issues.setdefault((repo, number), FakeIssue())

    def pull(self, repo: str, number: int, **fields: Any) -> FakePull:
        """The pull request `number`, created with `fields` (the rest default) or updated."""
        known = {f.name for f in dataclasses.fields(FakePull)} - {"number"}
        if unknown := fields.keys() - known:
            raise TypeError(f"FakePull has no field {', '.join(sorted(unknown))}")
        with self._lock:
            found = self.pulls.get((repo, number))
            if found is None:
                fields.setdefault("head_sha", _digest(repo, number, "head"))
                fields.setdefault("base_sha", _digest(repo, "base"))
                found = self.pulls[(repo, number)] = FakePull(number, **fields)
            else:
                for name, value in fields.items():
                    setattr(found, name, value)
            return found

    def push(self, repo: str, number: int, new_sha: str) -> None:
        """Someone pushed to the pull request's branch: its head moves to `new_sha`."""
        with self._lock:
            self.pulls[(repo, number)].head_sha = new_sha

    def add_check(
        self,
        repo: str,
        sha: str,
        name: str,
        status: str = "completed",
        conclusion: str | None = "success",
        *,
        app: str = "github-actions",
        output: dict[str, str] | None = None,
    ) -> int:
        """A check run another app (CI) reports on `sha`, in the app's suite for that commit
        (`check_suite_id`), with its `output` (title, summary, text); its id. No conclusion
        unless `status` is completed."""
        with self._lock:
            run_id = next(self._ids)
            self.check_runs[run_id] = {
                "repo": repo,
                "head_sha": sha,
                "name": name,
                "status": status,
                "conclusion": conclusion if status == "completed" else None,
                "output": output,
                "external_id": "",
                "app": app,
            }
            return run_id

    @staticmethod
    def check_suite_id(repo: str, sha: str, app: str = "github-actions") -> int:
        """The id of the app's check suite on the commit, which holds its check runs."""
        return _id(repo, sha, app)

    def add_job(
        self,
        repo: str,
        run_id: int,
        name: str,
        conclusion: str = "failure",
        *,
        attempt: int = 1,
        log: str = "",
        failed_step: str | None = None,
    ) -> int:
        """A completed job of attempt `attempt` of workflow run `run_id`, and its `log`; its
        id. A failed job's steps end with `failed_step` failing, if it is given."""
        with self._lock:
            job_id = next(self._ids)
            self.jobs[job_id] = {
                "repo": repo,
                "run_id": run_id,
                "attempt": attempt,
                "name": name,
                "conclusion": conclusion,
                "failed_step": failed_step,
                "log": log,
            }
            return job_id

    def add_status(self, repo: str, sha: str, context: str, state: str = "success") -> None:
        """A commit status (error, failure, pending, success); the newest per context counts."""
        with self._lock:
            self.statuses.setdefault((repo, sha), []).append((context, state))

    def fail(
        self,
        method: str,
        path: str,
        status: int,
        *,
        headers: dict[str, str] | None = None,
        body: Any = None,
        times: int = 1,
        after_doing_it: bool = False,
    ) -> None:
        """Answer the next `times` requests matching method and path (a regex) with an error.

        With `after_doing_it`, the request takes effect first and only its answer is lost,
        as when GitHub creates a comment and the response becomes a 502 on the way back.
        A JSON object body gets GitHub's `documentation_url` unless it has one."""
        body = body or {"message": "fake error"}
        if isinstance(body, dict):
            body = {"documentation_url": DOCS, **body}
        self._programmed.append(
            Programmed(method, path, status, headers or {}, body, times, after_doing_it)
        )

    def answer_graphql(self, data: dict[str, Any]) -> None:
        """The `data` of the answer to the next POST /graphql (checked against the schema)."""
        self.graphql_answers.append(data)

    def add_hook_delivery(
        self, guid: str, status_code: int, delivered_at: datetime, event: str = "issues"
    ) -> int:
        delivery_id = next(self._ids)
        self.hook_deliveries.append(
            {
                "id": delivery_id,
                "guid": guid,
                "delivered_at": delivered_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "redelivery": False,
                "duration": 0.1,
                "status": "OK"
                if 200 <= status_code < 300
                else f"Invalid HTTP Response: {status_code}",
                "status_code": status_code,
                "event": event,
                "action": None,
                "installation_id": 1,
                "repository_id": 1,
            }
        )
        return delivery_id

    # readable views ------------------------------------------------------------------------

    def writes(self) -> list[str]:
        """The content-changing requests, as `METHOD path`."""
        return [f"{r.method} {r.path}" for r in self.requests if r.method != "GET"]

    # the HTTP side --------------------------------------------------------------------------

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        if self.latency:
            time.sleep(self.latency)
        with self._lock:
            download = _DOWNLOAD.fullmatch(request.url.path)
            if download is not None:
                # storage a 302 of the API sends a client to, not the API: nothing to judge
                auth = request.headers.get("authorization", "")
                self.requests.append(
                    Recorded("GET", request.url.path, dict(request.url.params), None, auth)
                )
                return self._download_log(request, int(download["id"]))
            try:
                response = self._handle(request)
            except Exception:
                # a request the fake cannot handle: was it a request GitHub documents?
                if self.contract is not None:
                    self.contract(request, _error(500, "the fake GitHub failed"))
                raise
            if self.contract is not None:
                self.contract(request, response)
            return response

    def _handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.raw_path.decode("ascii").partition("?")[0]
        if self.path_prefix and path.startswith(self.path_prefix):
            path = path[len(self.path_prefix) :]
        body = json.loads(request.content) if request.content else None
        auth = request.headers.get("authorization", "")
        self.requests.append(Recorded(request.method, path, dict(request.url.params), body, auth))
        for programmed in self._programmed:
            if programmed.method == request.method and re.fullmatch(programmed.path, path):
                programmed.times -= 1
                if programmed.times <= 0:
                    self._programmed.remove(programmed)
                if programmed.after_doing_it:
                    self._route(request, path, auth)
                return httpx.Response(
                    programmed.status, json=programmed.body, headers=programmed.headers
                )
        return self._route(request, path, auth)

    def _route(self, request: httpx.Request, path: str, auth: str) -> httpx.Response:
        for method, pattern, handler, needs in _ROUTES:
            match = re.fullmatch(pattern, path)
            if match and method == request.method:
                denied = self._authorize(auth, needs, match)
                return denied or handler(self, request, match)
        return _json(404, {"message": "Not Found", "documentation_url": DOCS})

    def _authorize(self, auth: str, needs: str, match: re.Match[str]) -> httpx.Response | None:
        if needs == "app":
            token = auth.removeprefix("Bearer ")
            try:
                claims = jwt.decode(token, self.public_key, algorithms=["RS256"])
            except jwt.PyJWTError as exc:
                return _error(401, f"A JSON web token could not be decoded: {exc}")
            if str(claims.get("iss")) != str(self.app_id):
                return _error(401, "'Issuer' claim ('iss') must be the App id")
            return None
        token = auth.removeprefix("token ").removeprefix("bearer ").removeprefix("Bearer ")
        issued = self.tokens.get(token)
        if issued is None or issued[1] < time.time():
            return _error(401, "Bad credentials")
        return None

    # handlers -------------------------------------------------------------------------------

    def _access_token(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        token = "ghs_" + secrets.token_hex(16)
        expires = time.time() + self.token_ttl
        self.tokens[token] = (int(match["id"]), expires)
        expires_at = datetime.fromtimestamp(expires, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return _json(
            201,
            {
                "token": token,
                "expires_at": expires_at,
                "permissions": {"issues": "write", "metadata": "read"},
                "repository_selection": "all",
            },
        )

    def _add_labels(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        issue = self.issue(match["repo"], int(match["n"]))
        body = json.loads(request.content)
        for name in body["labels"]:
            if name not in issue.labels:
                issue.labels.append(name)
            self.effects.append(f"{match['repo']}#{match['n']}:+{name}")
        return _json(200, [_label(match["repo"], name) for name in issue.labels])

    def _remove_label(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        issue = self.issue(match["repo"], int(match["n"]))
        name = unquote(match["name"])
        if name not in issue.labels:
            return _error(404, "Label does not exist")
        issue.labels.remove(name)
        self.effects.append(f"{match['repo']}#{match['n']}:-{name}")
        return _json(200, [_label(match["repo"], label) for label in issue.labels])

    def _create_comment(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        issue = self.issue(match["repo"], int(match["n"]))
        body = json.loads(request.content)["body"]
        comment = {
            "id": next(self._ids),
            "body": body,
            "user": {"login": "nightshift[bot]"},
            "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        issue.comments.append(comment)
        first = body.strip().splitlines()[0] if body.strip() else ""
        self.effects.append(f"{match['repo']}#{match['n']}:comment:{first}")
        return _json(201, _comment(match["repo"], int(match["n"]), comment))

    def _list_comments(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        issue = self.issue(match["repo"], int(match["n"]))
        per_page = int(request.url.params.get("per_page", 30))
        page = int(request.url.params.get("page", 1))
        comments = issue.comments[(page - 1) * per_page : page * per_page]
        return _json(200, [_comment(match["repo"], int(match["n"]), c) for c in comments])

    def _list_hook_deliveries(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        per_page = int(request.url.params.get("per_page", 30))
        start = int(request.url.params.get("cursor", 0))
        newest_first = sorted(self.hook_deliveries, key=lambda d: d["id"], reverse=True)
        page = newest_first[start : start + per_page]
        headers = {}
        if start + per_page < len(newest_first):
            following = (
                f"{request.url.copy_with(query=None)}?per_page={per_page}&cursor={start + per_page}"
            )
            headers["link"] = f'<{following}>; rel="next"'
        return _json(200, page, headers)

    def _get_contents(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        path = unquote(match["path"])
        text = self.files.get((match["repo"], path))
        if text is None:
            return _json(404, {"message": "Not Found"})
        raw = text.encode()
        api = f"https://api.github.com/repos/{match['repo']}"
        sha = hashlib.sha1(raw, usedforsecurity=False).hexdigest()
        return _json(
            200,
            {
                "type": "file",
                "encoding": "base64",
                "size": len(raw),
                "name": path.rsplit("/", 1)[-1],
                "path": path,
                "content": base64.b64encode(raw).decode(),
                "sha": sha,
                "url": f"{api}/contents/{path}",
                "git_url": f"{api}/git/blobs/{sha}",
                "html_url": f"https://github.com/{match['repo']}/blob/main/{path}",
                "download_url": f"https://raw.githubusercontent.com/{match['repo']}/main/{path}",
                "_links": {
                    "self": f"{api}/contents/{path}",
                    "git": f"{api}/git/blobs/{sha}",
                    "html": f"https://github.com/{match['repo']}/blob/main/{path}",
                },
            },
        )

    def _graphql(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        """GitHub answers 200 either way: with the `data` programmed by `answer_graphql`,
        else with what the Projects (v2) model (`projects`) answers, errors included."""
        payload = json.loads(request.content)
        named = re.search(r"\b(?:query|mutation)\s+(\w+)", str(payload.get("query", "")))
        operation = payload.get("operationName") or (named[1] if named else "query")
        self.effects.append(f"graphql:{operation}")
        if self.graphql_answers:
            return _json(200, {"data": self.graphql_answers.pop(0)})
        answer, effects = self.projects.answer(payload)
        self.effects.extend(effects)
        return _json(200, answer)

    def _permission(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        login = unquote(match["login"])
        role = self.permissions.get((match["repo"], login))
        if role is None:
            return _json(404, {"message": "Not Found", "documentation_url": DOCS})
        # `permission` folds maintain into write and triage into read; role_name keeps them
        folded = {"maintain": "write", "triage": "read"}.get(role, role)
        return _json(
            200,
            {"permission": folded, "role_name": role, "user": {**_user(login), "role_name": role}},
        )

    def _redeliver(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        original = next((d for d in self.hook_deliveries if d["id"] == int(match["id"])), None)
        if original is None:
            return _json(404, {"message": "Not Found"})
        self.effects.append(f"redeliver:{original['guid']}")
        return _json(202, {})

    # issues ------------------------------------------------------------------------------------

    def _issue_answer(self, repo: str, number: int) -> dict[str, Any] | None:
        """Issue `number` as GitHub answers it; a pull request is an issue too (`pull_request`)."""
        issue = self.issues.get((repo, number))
        pull = self.pulls.get((repo, number))
        if issue is None and pull is None:
            return None
        issue = issue or FakeIssue()
        if pull is None:
            title, body, state, login = issue.title, issue.body, issue.state, issue.user
        else:
            title, body, state, login = pull.title, pull.body, pull.state, pull.author
        url = f"{API}/repos/{repo}/issues/{number}"
        answer = example("issue") | {
            "id": _id(repo, "issue", number),
            "node_id": _node_id("I", repo, number),
            "url": url,
            "repository_url": f"{API}/repos/{repo}",
            "labels_url": f"{url}/labels{{/name}}",
            "comments_url": f"{url}/comments",
            "events_url": f"{url}/events",
            "html_url": f"https://github.com/{repo}/{'pull' if pull else 'issues'}/{number}",
            "number": number,
            "state": state,
            "state_reason": "completed",
            "title": title,
            "body": body or None,
            "user": _user(login),
            "labels": [_label(repo, name) for name in issue.labels],
            "assignee": None,
            "assignees": [],
            "milestone": None,
            "locked": False,
            "active_lock_reason": None,
            "comments": len(issue.comments),
            "created_at": CREATED,
            "updated_at": CREATED,
            "closed_at": CREATED if state == "closed" else None,
            "closed_by": None,
            "author_association": self._association(repo, login),
        }
        if state == "open":
            # GitHub sends null; the description's enum (nullable, without null) refuses it
            del answer["state_reason"]
        if pull is None:
            del answer["pull_request"]
        else:
            answer["pull_request"] = {
                "url": f"{API}/repos/{repo}/pulls/{number}",
                "html_url": f"https://github.com/{repo}/pull/{number}",
                "diff_url": f"https://github.com/{repo}/pull/{number}.diff",
                "patch_url": f"https://github.com/{repo}/pull/{number}.patch",
                "merged_at": CREATED if pull.merged else None,
            }
        return answer

    def _get_issue(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        answer = self._issue_answer(match["repo"], int(match["n"]))
        return _not_found() if answer is None else _json(200, answer)

    def _create_issue(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        repo = match["repo"]
        body = json.loads(request.content)
        taken = [n for r, n in itertools.chain(self.issues, self.pulls) if r == repo]
        number = max(taken, default=0) + 1
        labels: list[str] = []
        for label in body.get("labels") or []:
            name = label if isinstance(label, str) else label.get("name", "")
            if name and name not in labels:
                labels.append(name)
        self.issues[(repo, number)] = FakeIssue(
            labels=labels,
            title=str(body["title"]),
            body=body.get("body") or "",
            user="nightshift[bot]",
        )
        self.effects.append(f"{repo}#{number}:opened:{body['title']}")
        return _json(201, self._issue_answer(repo, number))

    def _list_issues(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        """Newest first; pull requests are listed too, as GitHub does."""
        repo, params = match["repo"], request.url.params
        state = params.get("state", "open")
        wanted = {n.strip().casefold() for n in params.get("labels", "").split(",") if n.strip()}
        numbers = sorted({n for r, n in itertools.chain(self.issues, self.pulls) if r == repo})
        found = []
        for number in reversed(numbers):
            answer = self._issue_answer(repo, number)
            assert answer is not None
            names = {label["name"].casefold() for label in answer["labels"]}
            if state in ("all", answer["state"]) and wanted <= names:
                found.append(answer)
        return _json(200, _page(request, found))

    def _update_issue(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        """PATCH an issue (or a pull request's issue): title, body, state. Effects:
        `octo/repo#12:closed`, `octo/repo#12:reopened`, `octo/repo#12:edited`."""
        repo, number = match["repo"], int(match["n"])
        if self._issue_answer(repo, number) is None:
            return _not_found()
        fields = json.loads(request.content) if request.content else {}
        target: FakeIssue | FakePull = self.pulls.get((repo, number)) or self.issue(repo, number)
        if "title" in fields or "body" in fields:
            target.title = str(fields.get("title", target.title))
            target.body = str(fields.get("body", target.body) or "")
            self.effects.append(f"{repo}#{number}:edited")
        state = fields.get("state")
        if state in ("open", "closed") and state != target.state:
            target.state = state
            self.effects.append(f"{repo}#{number}:{'closed' if state == 'closed' else 'reopened'}")
        return _json(200, self._issue_answer(repo, number))

    # pull requests ---------------------------------------------------------------------------

    def _get_pull(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        repo, number = match["repo"], int(match["n"])
        pull = self.pulls.get((repo, number))
        if pull is None:
            return _not_found()
        queue = pull.mergeable
        mergeable = queue.pop(0) if len(queue) > 1 else (queue[0] if queue else None)
        return _json(200, self._pull_answer(repo, pull, mergeable))

    def _pull_answer(self, repo: str, pull: FakePull, mergeable: bool | None) -> dict[str, Any]:
        """The pull request as GET /pulls/{n} answers it (`mergeable` as computed now)."""
        number = pull.number
        issue = self.issues.get((repo, number)) or FakeIssue()
        api, html = f"{API}/repos/{repo}", f"https://github.com/{repo}"
        pr = f"{api}/pulls/{number}"
        shape = example("pull-request")
        head_repo = f"fork-owner/{repo.partition('/')[2]}" if pull.fork else repo
        links = {
            "self": pr,
            "html": f"{html}/pull/{number}",
            "issue": f"{api}/issues/{number}",
            "comments": f"{api}/issues/{number}/comments",
            "review_comments": f"{pr}/comments",
            "review_comment": f"{api}/pulls/comments{{/number}}",
            "commits": f"{pr}/commits",
            "statuses": f"{api}/statuses/{pull.head_sha}",
        }
        answer = shape | {
            "url": pr,
            "id": _id(repo, "pull", number),
            "node_id": _node_id("PR", repo, number),
            "html_url": links["html"],
            "diff_url": f"{html}/pull/{number}.diff",
            "patch_url": f"{html}/pull/{number}.patch",
            "issue_url": links["issue"],
            "commits_url": links["commits"],
            "review_comments_url": links["review_comments"],
            "review_comment_url": links["review_comment"],
            "comments_url": links["comments"],
            "statuses_url": links["statuses"],
            "_links": {name: {"href": href} for name, href in links.items()},
            "number": number,
            "state": pull.state,
            "locked": False,
            "active_lock_reason": None,
            "title": pull.title,
            "user": _user(pull.author),
            "body": pull.body or None,
            "labels": [_label(repo, name) for name in issue.labels],
            "milestone": None,
            "created_at": CREATED,
            "updated_at": CREATED,
            "closed_at": CREATED if pull.state == "closed" else None,
            "merged_at": CREATED if pull.merged else None,
            "merge_commit_sha": pull.merge_commit_sha,
            "assignee": None,
            "assignees": [],
            "requested_reviewers": [],
            "requested_teams": [],
            "head": {
                "label": f"{head_repo.partition('/')[0]}:{pull.head_ref}",
                "ref": pull.head_ref,
                "sha": pull.head_sha,
                "user": _user(head_repo.partition("/")[0]),
                "repo": _repository(shape["head"]["repo"], head_repo, fork=pull.fork),
            },
            "base": {
                "label": f"{repo.partition('/')[0]}:{pull.base_ref}",
                "ref": pull.base_ref,
                "sha": pull.base_sha,
                "user": _user(repo.partition("/")[0]),
                "repo": _repository(shape["base"]["repo"], repo),
            },
            "author_association": self._association(repo, pull.author),
            "auto_merge": None,
            "draft": pull.draft,
            "merged": pull.merged,
            "mergeable": mergeable,
            "rebaseable": mergeable,
            "mergeable_state": {True: "clean", False: "dirty", None: "unknown"}[mergeable],
            "merged_by": _user("nightshift[bot]") if pull.merged else None,
            "comments": len(issue.comments),
            "review_comments": 0,
            "maintainer_can_modify": False,
        }
        return answer

    def _list_pulls(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        """Newest first, filtered by `state` (open, closed, all), `head` (owner:branch) and
        `base`, as pull-request-simple items."""
        repo, params = match["repo"], request.url.params
        state = params.get("state", "open")
        template = examples("pull-request-simple-items")[0]
        found = []
        for (r, _), pull in sorted(self.pulls.items(), reverse=True):
            answer = self._pull_answer(repo, pull, None) if r == repo else None
            if answer is None or state not in ("all", pull.state):
                continue
            if "head" in params and answer["head"]["label"] != params["head"]:
                continue
            if "base" in params and pull.base_ref != params["base"]:
                continue
            found.append({key: answer[key] for key in template if key in answer})
        return _json(200, _page(request, found))

    def _create_pull(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        """A pull request from a branch of this repository (`head`, created first) into
        `base`; 422 like GitHub when one is open already for the same head and base."""
        repo = match["repo"]
        body = json.loads(request.content)
        head, base = str(body["head"]), str(body["base"])
        sha = self.refs.get((repo, f"refs/heads/{head}"))
        if sha is None:
            return _validation_failed("PullRequest", "head", "invalid")
        owner = repo.partition("/")[0]
        for (r, _), pull in self.pulls.items():
            if (r, pull.head_ref, pull.base_ref, pull.state) == (repo, head, base, "open"):
                return _validation_failed(
                    "PullRequest",
                    None,
                    "custom",
                    f"A pull request already exists for {owner}:{head}.",
                )
        taken = [n for r, n in itertools.chain(self.issues, self.pulls) if r == repo]
        number = max(taken, default=0) + 1
        pull = self.pulls[(repo, number)] = FakePull(
            number,
            title=str(body.get("title") or ""),
            body=str(body.get("body") or ""),
            head_ref=head,
            head_sha=sha,
            base_ref=base,
            base_sha=self.refs.get((repo, f"refs/heads/{base}"), _digest(repo, "base")),
            author="nightshift[bot]",
            mergeable=[None, True],
        )
        self.effects.append(f"{repo}#{number}:opened-pull:{pull.title}")
        return _json(201, self._pull_answer(repo, pull, None))

    def _merge(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        """Refused like GitHub: 409 when `sha` is not the head, 405 when not mergeable."""
        repo, number = match["repo"], int(match["n"])
        pull = self.pulls.get((repo, number))
        if pull is None:
            return _not_found()
        body = json.loads(request.content) if request.content else {}
        sha, method = body.get("sha"), body.get("merge_method", "merge")
        if pull.merged or pull.state != "open":
            return _error(405, MERGE_NOT_MERGEABLE)
        if sha is not None and sha != pull.head_sha:
            return _error(409, MERGE_HEAD_MODIFIED)
        if pull.draft:
            return _error(405, MERGE_DRAFT)
        if pull.mergeable and pull.mergeable[0] is False:
            return _error(405, MERGE_NOT_MERGEABLE)
        pull.merged, pull.state = True, "closed"
        pull.merge_commit_sha = pull.merges_as or _digest(
            repo, number, pull.head_sha, method, "merged"
        )
        self.effects.append(f"{repo}#{number}:merged@{pull.head_sha[:7]}:{method}")
        answer = example("pull-request-merge-result-response-if-merge-was-successful")
        answer |= {"sha": pull.merge_commit_sha, "merged": True, "message": MERGED}
        return _json(200, answer)

    def _create_review(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        repo, number = match["repo"], int(match["n"])
        pull = self.pulls.get((repo, number))
        if pull is None:
            return _not_found()
        body = json.loads(request.content) if request.content else {}
        event = body.get("event")
        review = {
            "id": next(self._ids),
            "user": "nightshift[bot]",
            "body": body.get("body") or "",
            "state": REVIEW_STATES.get(event or "", "PENDING"),
            "commit_id": body.get("commit_id") or pull.head_sha,
            "submitted_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        pull.reviews.append(review)
        self.effects.append(f"{repo}#{number}:review:{event or 'PENDING'}")
        return _json(200, self._review(repo, pull, review))

    def _list_reviews(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        repo, number = match["repo"], int(match["n"])
        pull = self.pulls.get((repo, number))
        if pull is None:
            return _not_found()
        reviews = [self._review(repo, pull, review) for review in pull.reviews]
        return _json(200, _page(request, reviews))

    def _review(self, repo: str, pull: FakePull, stored: dict[str, Any]) -> dict[str, Any]:
        """A stored review (any of `id`, `user` (a login), `state`, `body`, `commit_id`)."""
        review_id = stored.get("id") or _id(repo, pull.number, "review", stored.get("body"))
        user = stored.get("user", "octocat")
        login = str(user["login"] if isinstance(user, dict) else user)
        html = f"https://github.com/{repo}/pull/{pull.number}#pullrequestreview-{review_id}"
        pr = f"{API}/repos/{repo}/pulls/{pull.number}"
        state = stored.get("state", "COMMENTED")
        return example("pull-request-review") | {
            "id": review_id,
            "node_id": _node_id("PRR", review_id),
            "user": _user(login),
            "body": stored.get("body", ""),
            "state": state,
            "html_url": html,
            "pull_request_url": pr,
            "_links": {"html": {"href": html}, "pull_request": {"href": pr}},
            "submitted_at": None if state == "PENDING" else stored.get("submitted_at", CREATED),
            "commit_id": stored.get("commit_id") or pull.head_sha,
            "author_association": self._association(repo, login),
        }

    # the Git Data API -------------------------------------------------------------------------

    def _create_blob(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        repo, body = match["repo"], json.loads(request.content)
        content = str(body["content"])
        if body.get("encoding", "utf-8") == "base64":
            data = base64.b64decode(content)
        else:
            data = content.encode()
        sha = hashlib.sha1(  # git's object id of a blob
            b"blob %d\0" % len(data) + data, usedforsecurity=False
        ).hexdigest()
        self.blobs[(repo, sha)] = data
        return _json(201, {"url": f"{API}/repos/{repo}/git/blobs/{sha}", "sha": sha})

    def _create_tree(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        """Stored as sent; the answer lists the entries given (GitHub lists the whole tree)."""
        repo, body = match["repo"], json.loads(request.content)
        sha = _digest(repo, "tree", request.content)
        self.trees[(repo, sha)] = body
        entries = [
            {
                "path": entry["path"],
                "mode": entry["mode"],
                "type": entry["type"],
                "sha": entry["sha"],
                "url": f"{API}/repos/{repo}/git/{entry['type']}s/{entry['sha']}",
            }
            for entry in body.get("tree", [])
            if entry.get("sha") is not None
        ]
        answer = example("git-tree") | {
            "sha": sha,
            "url": f"{API}/repos/{repo}/git/trees/{sha}",
            "tree": entries,
            "truncated": False,
        }
        return _json(201, answer)

    def _create_commit(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        repo, body = match["repo"], json.loads(request.content)
        sha = _digest(repo, "commit", request.content)
        self.commits[(repo, sha)] = body
        url = f"{API}/repos/{repo}/git/commits"
        shape = example("git-commit")
        person = {"name": "nightshift[bot]", "email": "nightshift[bot]@users.noreply.github.com"}
        answer = shape | {
            "sha": sha,
            "node_id": _node_id("C", repo, sha),
            "url": f"{url}/{sha}",
            "html_url": f"https://github.com/{repo}/commit/{sha}",
            "author": person | {"date": CREATED},
            "committer": person | {"date": CREATED},
            "message": body["message"],
            "tree": {"sha": body["tree"], "url": f"{API}/repos/{repo}/git/trees/{body['tree']}"},
            "parents": [
                {
                    "sha": parent,
                    "url": f"{url}/{parent}",
                    "html_url": f"https://github.com/{repo}/commit/{parent}",
                }
                for parent in body.get("parents", [])
            ],
        }
        return _json(201, answer)

    def _create_ref(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        repo, body = match["repo"], json.loads(request.content)
        ref, sha = str(body["ref"]), str(body["sha"])
        if (repo, ref) in self.refs:
            return _error(422, "Reference already exists")
        self.refs[(repo, ref)] = sha
        self.effects.append(f"{repo}:ref:{ref.removeprefix('refs/heads/')}")
        return _json(201, self._ref(repo, ref, sha))

    def _get_ref(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        repo, ref = match["repo"], "refs/" + unquote(match["ref"])
        sha = self.refs.get((repo, ref))
        return _not_found() if sha is None else _json(200, self._ref(repo, ref, sha))

    def _ref(self, repo: str, ref: str, sha: str) -> dict[str, Any]:
        return example("git-ref") | {
            "ref": ref,
            "node_id": _node_id("REF", repo, ref),
            "url": f"{API}/repos/{repo}/git/{ref}",
            "object": {
                "type": "commit",
                "sha": sha,
                "url": f"{API}/repos/{repo}/git/commits/{sha}",
            },
        }

    # checks and statuses ---------------------------------------------------------------------

    def _create_check_run(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        body = json.loads(request.content)
        run_id = next(self._ids)
        run = self.check_runs[run_id] = {
            "repo": match["repo"],
            "head_sha": body["head_sha"],
            "name": body["name"],
            "status": "queued",
            "conclusion": None,
            "output": None,
            "external_id": "",
            "app": "nightshift",
        }
        self._update_check_run(run_id, run, body)
        return _json(201, self._check_run(run_id, run))

    def _patch_check_run(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        run_id = int(match["id"])
        run = self.check_runs.get(run_id)
        if run is None or run["repo"] != match["repo"]:
            return _not_found()
        self._update_check_run(run_id, run, json.loads(request.content or b"{}"))
        return _json(200, self._check_run(run_id, run))

    def _update_check_run(self, run_id: int, run: dict[str, Any], body: dict[str, Any]) -> None:
        for key in ("name", "status", "conclusion", "output", "external_id", "details_url"):
            if key in body:
                run[key] = body[key]
        if body.get("conclusion") is not None:  # GitHub: a conclusion completes the run
            run["status"] = "completed"
        outcome = run["conclusion"] or run["status"]
        self.effects.append(f"{run['repo']}@{run['head_sha'][:7]}:check:{run['name']}:{outcome}")

    def _list_check_runs(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        """The runs on one commit (newest first); `filter=latest` (the default) keeps the
        newest run of each name."""
        repo, sha = match["repo"], unquote(match["ref"])
        return self._check_runs_answer(request, lambda r: (r["repo"], r["head_sha"]) == (repo, sha))

    def _list_suite_check_runs(
        self, request: httpx.Request, match: re.Match[str]
    ) -> httpx.Response:
        """The runs of one check suite: one app's runs on one commit."""
        repo, suite = match["repo"], int(match["id"])
        return self._check_runs_answer(
            request,
            lambda r: (
                r["repo"] == repo
                and self.check_suite_id(repo, r["head_sha"], r.get("app") or "github-actions")
                == suite
            ),
        )

    def _check_runs_answer(
        self, request: httpx.Request, selected: Callable[[dict[str, Any]], bool]
    ) -> httpx.Response:
        """The `selected` runs, newest first, filtered by the query as GitHub filters them."""
        params = request.url.params
        runs = sorted(((i, r) for i, r in self.check_runs.items() if selected(r)), reverse=True)
        if "check_name" in params:
            runs = [(i, r) for i, r in runs if r["name"] == params["check_name"]]
        if "status" in params:
            runs = [(i, r) for i, r in runs if r["status"] == params["status"]]
        if params.get("filter", "latest") == "latest":
            newest: dict[str, tuple[int, dict[str, Any]]] = {}
            for run_id, run in runs:
                newest.setdefault(run["name"], (run_id, run))
            runs = [entry for entry in runs if newest[entry[1]["name"]][0] == entry[0]]
        answer = example("check-run-paginated") | {
            "total_count": len(runs),
            "check_runs": _page(request, [self._check_run(i, r) for i, r in runs]),
        }
        return _json(200, answer)

    def _check_run(self, run_id: int, run: dict[str, Any]) -> dict[str, Any]:
        repo, sha = run["repo"], run["head_sha"]
        url = f"{API}/repos/{repo}/check-runs/{run_id}"
        html = f"https://github.com/{repo}/runs/{run_id}"
        output = run.get("output") or {}
        slug = run.get("app") or "github-actions"
        shape = example("check-run")
        app = shape["app"] | {
            "id": self.app_id if slug == "nightshift" else _id("app", slug),
            "slug": slug,
            "node_id": _node_id("A", slug),
            "name": slug,
            "html_url": f"https://github.com/apps/{slug}",
        }
        name = repo.partition("/")[2]
        pulls = [
            {
                "id": _id(repo, "pull", pull.number),
                "number": pull.number,
                "url": f"{API}/repos/{repo}/pulls/{pull.number}",
                "head": {
                    "ref": pull.head_ref,
                    "sha": pull.head_sha,
                    "repo": {"id": _id(repo), "url": f"{API}/repos/{repo}", "name": name},
                },
                "base": {
                    "ref": pull.base_ref,
                    "sha": pull.base_sha,
                    "repo": {"id": _id(repo), "url": f"{API}/repos/{repo}", "name": name},
                },
            }
            for (r, _), pull in sorted(self.pulls.items())
            if r == repo and pull.head_sha == sha and not pull.fork and pull.state == "open"
        ]
        return shape | {
            "id": run_id,
            "node_id": _node_id("CR", run_id),
            "head_sha": sha,
            "external_id": run.get("external_id") or "",
            "url": url,
            "html_url": html,
            "details_url": run.get("details_url") or html,
            "name": run["name"],
            "status": run["status"],
            "conclusion": run.get("conclusion"),
            "started_at": CREATED,
            "completed_at": CREATED if run["status"] == "completed" else None,
            "output": {
                "title": output.get("title"),
                "summary": output.get("summary"),
                "text": output.get("text"),
                "annotations_count": len(output.get("annotations") or []),
                "annotations_url": f"{url}/annotations",
            },
            "check_suite": {"id": self.check_suite_id(repo, sha, slug)},
            "app": app,
            "pull_requests": pulls,
        }

    def _combined_status(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        """failure if any context failed or errored, pending if any is pending (or there
        are none), else success; the newest status of each context counts."""
        repo, sha = match["repo"], unquote(match["ref"])
        latest = dict(self.statuses.get((repo, sha), []))
        states = set(latest.values())
        combined = (
            "failure"
            if states & {"failure", "error"}
            else "pending"
            if "pending" in states or not states
            else "success"
        )
        shape = example("combined-commit-status")
        template = shape["statuses"][0]
        statuses = [
            template
            | {
                "url": f"{API}/repos/{repo}/statuses/{sha}",
                "id": _id(repo, sha, context),
                "node_id": _node_id("SC", repo, sha, context),
                "state": state,
                "description": None,
                "target_url": None,
                "context": context,
                "created_at": CREATED,
                "updated_at": CREATED,
            }
            for context, state in latest.items()
        ]
        answer = shape | {
            "state": combined,
            "statuses": statuses,
            "sha": sha,
            "total_count": len(statuses),
            "repository": _repository(shape["repository"], repo),
            "commit_url": f"{API}/repos/{repo}/commits/{sha}",
            "url": f"{API}/repos/{repo}/commits/{sha}/status",
        }
        return _json(200, answer)

    def _rerun_failed_jobs(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        self.effects.append(f"{match['repo']}:rerun-failed-jobs:{match['id']}")
        return _json(201, {})

    def _rerequest_suite(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        self.effects.append(f"{match['repo']}:rerequest-check-suite:{match['id']}")
        return _json(201, {})

    # Actions' jobs and their logs ------------------------------------------------------------

    def _list_attempt_jobs(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        repo, run_id, attempt = match["repo"], int(match["id"]), int(match["attempt"])
        jobs = [
            self._job(job_id, job)
            for job_id, job in sorted(self.jobs.items())
            if (job["repo"], job["run_id"], job["attempt"]) == (repo, run_id, attempt)
        ]
        return _json(200, {"total_count": len(jobs), "jobs": _page(request, jobs)})

    def _job(self, job_id: int, job: dict[str, Any]) -> dict[str, Any]:
        repo, run_id = job["repo"], job["run_id"]
        shape = example("job")
        step = shape["steps"][0]
        steps = [step | {"name": "Set up job", "number": 1, "conclusion": "success"}]
        if job["failed_step"] is not None:
            steps.append(step | {"name": job["failed_step"], "number": 2, "conclusion": "failure"})
        return shape | {
            "id": job_id,
            "run_id": run_id,
            "run_url": f"{API}/repos/{repo}/actions/runs/{run_id}",
            "run_attempt": job["attempt"],
            "node_id": _node_id("J", job_id),
            "url": f"{API}/repos/{repo}/actions/jobs/{job_id}",
            "html_url": f"https://github.com/{repo}/actions/runs/{run_id}/job/{job_id}",
            "status": "completed",
            "conclusion": job["conclusion"],
            "created_at": CREATED,  # the example lacks it, the schema requires it
            "started_at": CREATED,
            "completed_at": CREATED,
            "name": job["name"],
            "steps": steps,
            "check_run_url": f"{API}/repos/{repo}/check-runs/{job_id}",
        }

    def _job_logs(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        """302 to the log's signed download URL, as GitHub answers (with no body)."""
        job_id = int(match["id"])
        job = self.jobs.get(job_id)
        if job is None or job["repo"] != match["repo"]:
            return _not_found()
        signature = _digest("log", job_id)
        location = (
            f"{self.downloads}/{signature[:20]}/_apis/pipelines/1/jobs/{job_id}/signedlogcontent"
            f"?urlSigningMethod=HMACV1&urlSignature={signature}"
        )
        return httpx.Response(302, headers={"location": location})

    def _download_log(self, request: httpx.Request, job_id: int) -> httpx.Response:
        """The log's text, for the signed URL only, and never to a request with a token."""
        job = self.jobs.get(job_id)
        if request.headers.get("authorization"):
            return httpx.Response(400, text="the download URL is signed: no Authorization")
        if job is None or request.url.params.get("urlSignature") != _digest("log", job_id):
            return httpx.Response(403, text="AuthenticationFailed")
        return httpx.Response(200, text=job["log"], headers={"content-type": "text/plain"})

    def _association(self, repo: str, login: str) -> str:
        if login == repo.partition("/")[0]:
            return "OWNER"
        return "COLLABORATOR" if (repo, login) in self.permissions else "NONE"


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


def _error(status: int, message: str) -> httpx.Response:
    return _json(status, {"message": message, "documentation_url": DOCS})


def _validation_failed(
    resource: str, field: str | None, code: str, message: str | None = None
) -> httpx.Response:
    """GitHub's 422: the details are in `errors`, the `message` is always the same."""
    error: dict[str, Any] = {"resource": resource, "code": code}
    if field is not None:
        error["field"] = field
    if message is not None:
        error["message"] = message
    return _json(
        422, {"message": "Validation Failed", "errors": [error], "documentation_url": DOCS}
    )


def _not_found() -> httpx.Response:
    return _error(404, "Not Found")


def _page(request: httpx.Request, items: list[Any]) -> list[Any]:
    """The `page` of `per_page` items (GitHub's defaults: 1 and 30)."""
    per_page = int(request.url.params.get("per_page", 30))
    page = int(request.url.params.get("page", 1))
    return items[(page - 1) * per_page : page * per_page]


# GitHub's messages (https://docs.github.com/rest/pulls/pulls#merge-a-pull-request)
MERGED = "Pull Request successfully merged"
MERGE_HEAD_MODIFIED = "Head branch was modified. Review and try the merge again."
MERGE_NOT_MERGEABLE = "Pull Request is not mergeable"
MERGE_DRAFT = "Pull Request is still a draft"
REVIEW_STATES = {
    "APPROVE": "APPROVED",
    "REQUEST_CHANGES": "CHANGES_REQUESTED",
    "COMMENT": "COMMENTED",
}
CREATED = "2026-01-01T00:00:00Z"  # when what the fake stores was created, unless it says


# GitHub's shapes (https://docs.github.com/rest): what the fake stores, dressed as GitHub
# answers it, with every field the description requires.
API = "https://api.github.com"


def _digest(*key: object) -> str:
    return hashlib.sha1(repr(key).encode(), usedforsecurity=False).hexdigest()


def _id(*key: object) -> int:
    return int(_digest(*key)[:8], 16)


def _node_id(prefix: str, *key: object) -> str:
    return f"{prefix}_{_digest(*key)[:16]}"


def _label(repo: str, name: str) -> dict[str, Any]:
    return {
        "id": _id(repo, name),
        "node_id": _node_id("LA", repo, name),
        "url": f"{API}/repos/{repo}/labels/{quote(name, safe='')}",
        "name": name,
        "description": None,
        "color": "ededed",
        "default": False,
    }


def _user(login: str) -> dict[str, Any]:
    url = f"{API}/users/{quote(login)}"
    return {
        "login": login,
        "id": _id(login),
        "node_id": _node_id("U", login),
        "avatar_url": f"https://avatars.githubusercontent.com/{quote(login)}",
        "gravatar_id": "",
        "url": url,
        "html_url": f"https://github.com/{quote(login)}",
        "followers_url": f"{url}/followers",
        "following_url": f"{url}/following{{/other_user}}",
        "gists_url": f"{url}/gists{{/gist_id}}",
        "starred_url": f"{url}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{url}/subscriptions",
        "organizations_url": f"{url}/orgs",
        "repos_url": f"{url}/repos",
        "events_url": f"{url}/events{{/privacy}}",
        "received_events_url": f"{url}/received_events",
        "type": "Bot" if login.endswith("[bot]") else "User",
        "site_admin": False,
    }


def _repository(template: dict[str, Any], full_name: str, *, fork: bool = False) -> dict[str, Any]:
    """A repository shaped like `template` (an example's), with its URLs pointing at
    `full_name`."""
    owner, _, name = full_name.partition("/")
    old = template["full_name"]

    def rename(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace(old, full_name)
        if isinstance(value, dict):
            return {k: rename(v) for k, v in value.items()}
        if isinstance(value, list):
            return [rename(v) for v in value]
        return value

    renamed: dict[str, Any] = rename(template)
    return renamed | {
        "id": _id(full_name),
        "node_id": _node_id("R", full_name),
        "name": name,
        "full_name": full_name,
        "owner": _user(owner),
        "private": False,
        "fork": fork,
    }


def _comment(repo: str, number: int, stored: dict[str, Any]) -> dict[str, Any]:
    """A stored comment (`id`, `body`, optionally `user.login`) as GitHub answers it."""
    at = stored.get("created_at", "2026-01-01T00:00:00Z")
    login = stored.get("user", {}).get("login", "nightshift[bot]")
    return {
        "id": stored["id"],
        "node_id": _node_id("IC", stored["id"]),
        "url": f"{API}/repos/{repo}/issues/comments/{stored['id']}",
        "html_url": f"https://github.com/{repo}/issues/{number}#issuecomment-{stored['id']}",
        "issue_url": f"{API}/repos/{repo}/issues/{number}",
        "body": stored.get("body", ""),
        "user": _user(login),
        "created_at": at,
        "updated_at": at,
        "author_association": "NONE",
    }


_REPO = r"/repos/(?P<repo>[^/]+/[^/]+)"
# a job log's signed download URL (FakeGitHub._job_logs makes them), on `downloads`
_DOWNLOAD = re.compile(r"/[0-9a-f]{20}/_apis/pipelines/1/jobs/(?P<id>\d+)/signedlogcontent")
_ROUTES: list[tuple[str, str, Handler, str]] = [
    ("POST", r"/app/installations/(?P<id>\d+)/access_tokens", FakeGitHub._access_token, "app"),
    ("GET", r"/app/hook/deliveries", FakeGitHub._list_hook_deliveries, "app"),
    ("POST", r"/app/hook/deliveries/(?P<id>\d+)/attempts", FakeGitHub._redeliver, "app"),
    ("GET", _REPO + r"/issues", FakeGitHub._list_issues, "installation"),
    ("POST", _REPO + r"/issues", FakeGitHub._create_issue, "installation"),
    ("GET", _REPO + r"/issues/(?P<n>\d+)", FakeGitHub._get_issue, "installation"),
    ("POST", _REPO + r"/issues/(?P<n>\d+)/labels", FakeGitHub._add_labels, "installation"),
    (
        "DELETE",
        _REPO + r"/issues/(?P<n>\d+)/labels/(?P<name>[^/]+)",
        FakeGitHub._remove_label,
        "installation",
    ),
    ("POST", _REPO + r"/issues/(?P<n>\d+)/comments", FakeGitHub._create_comment, "installation"),
    ("GET", _REPO + r"/issues/(?P<n>\d+)/comments", FakeGitHub._list_comments, "installation"),
    ("GET", _REPO + r"/contents/(?P<path>.+)", FakeGitHub._get_contents, "installation"),
    (
        "GET",
        _REPO + r"/collaborators/(?P<login>[^/]+)/permission",
        FakeGitHub._permission,
        "installation",
    ),
    ("GET", _REPO + r"/pulls", FakeGitHub._list_pulls, "installation"),
    ("POST", _REPO + r"/pulls", FakeGitHub._create_pull, "installation"),
    ("GET", _REPO + r"/pulls/(?P<n>\d+)", FakeGitHub._get_pull, "installation"),
    ("PUT", _REPO + r"/pulls/(?P<n>\d+)/merge", FakeGitHub._merge, "installation"),
    ("POST", _REPO + r"/pulls/(?P<n>\d+)/reviews", FakeGitHub._create_review, "installation"),
    ("GET", _REPO + r"/pulls/(?P<n>\d+)/reviews", FakeGitHub._list_reviews, "installation"),
    ("POST", _REPO + r"/git/blobs", FakeGitHub._create_blob, "installation"),
    ("POST", _REPO + r"/git/trees", FakeGitHub._create_tree, "installation"),
    ("POST", _REPO + r"/git/commits", FakeGitHub._create_commit, "installation"),
    ("POST", _REPO + r"/git/refs", FakeGitHub._create_ref, "installation"),
    ("GET", _REPO + r"/git/ref/(?P<ref>.+)", FakeGitHub._get_ref, "installation"),
    ("POST", _REPO + r"/check-runs", FakeGitHub._create_check_run, "installation"),
    ("PATCH", _REPO + r"/check-runs/(?P<id>\d+)", FakeGitHub._patch_check_run, "installation"),
    (
        "GET",
        _REPO + r"/commits/(?P<ref>[^/]+)/check-runs",
        FakeGitHub._list_check_runs,
        "installation",
    ),
    ("GET", _REPO + r"/commits/(?P<ref>[^/]+)/status", FakeGitHub._combined_status, "installation"),
    (
        "POST",
        _REPO + r"/actions/runs/(?P<id>\d+)/rerun-failed-jobs",
        FakeGitHub._rerun_failed_jobs,
        "installation",
    ),
    (
        "POST",
        _REPO + r"/check-suites/(?P<id>\d+)/rerequest",
        FakeGitHub._rerequest_suite,
        "installation",
    ),
    (
        "GET",
        _REPO + r"/check-suites/(?P<id>\d+)/check-runs",
        FakeGitHub._list_suite_check_runs,
        "installation",
    ),
    (
        "GET",
        _REPO + r"/actions/runs/(?P<id>\d+)/attempts/(?P<attempt>\d+)/jobs",
        FakeGitHub._list_attempt_jobs,
        "installation",
    ),
    ("GET", _REPO + r"/actions/jobs/(?P<id>\d+)/logs", FakeGitHub._job_logs, "installation"),
    ("POST", r"(?:/api)?/graphql", FakeGitHub._graphql, "installation"),  # GHES: /api/graphql
    ("PATCH", _REPO + r"/issues/(?P<n>\d+)", FakeGitHub._update_issue, "installation"),
]


# -- serving the fake over real HTTP, for servers started as subprocesses ---------------------


class _Asgi:
    def __init__(self, fake: FakeGitHub) -> None:
        self.fake = fake

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        query = scope.get("query_string", b"").decode()
        path = scope.get("raw_path") or scope["path"].encode()  # as sent: %2F stays %2F
        url = f"http://{scope['server'][0]}:{scope['server'][1]}{path.decode('ascii')}"
        request = httpx.Request(
            scope["method"],
            url + (f"?{query}" if query else ""),
            headers=[(k.decode(), v.decode()) for k, v in scope["headers"]],
            content=b"".join(chunks),
        )
        try:
            response = await asyncio.to_thread(self.fake.handle, request)
        except Exception as exc:  # e.g. a contract violation: recorded, and the test fails
            response = _json(500, {"message": f"{type(exc).__name__}: {exc}"})
        await send(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": [(k.encode(), v.encode()) for k, v in response.headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": response.content})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serve(fake: FakeGitHub) -> Iterator[str]:
    """Serve the fake on a loopback port; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            _Asgi(fake), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    # the same server under another name: another origin, as GitHub's log storage is
    fake.downloads = f"http://localhost:{port}"
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the fake GitHub did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
