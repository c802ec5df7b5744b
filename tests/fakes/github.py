"""The one shared fake GitHub: stateful, and recording what happened as readable strings.

Use it in-process as an httpx transport (`fake.transport()`), behind respx
(`respx_mock.route(...).mock(side_effect=fake.handle)`), or over real HTTP for a server
started as a subprocess (`with serve(fake) as url`). Effects read like Prow's fakegithub:
`"octo/repo#1:+nightshift:queued"`, `"octo/repo#1:comment:<first line>"`.

Every request it handles, and its answer, goes to its `contract` hook: in the tests, the
checks against GitHub's published API descriptions (tests/contract). Its answers carry the
fields GitHub documents, so that check holds them to GitHub's shapes too.
"""

from __future__ import annotations

import asyncio
import base64
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
        self.hook_deliveries: list[dict[str, Any]] = []
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
        """GitHub answers 200 either way; `data` comes from `answer_graphql`."""
        payload = json.loads(request.content)
        named = re.search(r"\b(?:query|mutation)\s+(\w+)", str(payload.get("query", "")))
        operation = payload.get("operationName") or (named[1] if named else "query")
        self.effects.append(f"graphql:{operation}")
        if not self.graphql_answers:
            return _json(200, {"errors": [{"message": "the fake GitHub has no answer programmed"}]})
        return _json(200, {"data": self.graphql_answers.pop(0)})

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


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


def _error(status: int, message: str) -> httpx.Response:
    return _json(status, {"message": message, "documentation_url": DOCS})


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
_ROUTES: list[tuple[str, str, Handler, str]] = [
    ("POST", r"/app/installations/(?P<id>\d+)/access_tokens", FakeGitHub._access_token, "app"),
    ("GET", r"/app/hook/deliveries", FakeGitHub._list_hook_deliveries, "app"),
    ("POST", r"/app/hook/deliveries/(?P<id>\d+)/attempts", FakeGitHub._redeliver, "app"),
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
    ("POST", r"(?:/api)?/graphql", FakeGitHub._graphql, "installation"),  # GHES: /api/graphql
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
