"""Agent transports: webhook and AI Maestro against real local HTTP servers, github through a
recording GitHub port, its requests held to GitHub's published API descriptions."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote

import pytest

from app.core import assignment as messages
from app.core.assignment import Message
from app.core.config import Config
from app.core.roster import Agent, Transport
from app.effects import transports
from app.effects.github import GitHubError, GitHubRequest, GitHubResponse, marker
from app.effects.transports import Sent, Transports
from tests.contract.contract import Descriptions

REPO = "octo/repo"
NUMBER = 7
KEY = "assign:octo/repo#7:1"
SECRET = "s3cret-signing-key-for-tests"
TOKEN = "maestro-bearer-token-for-tests"


def agent(transport: Transport, endpoint: str, name: str = "dev-1") -> Agent:
    return Agent(
        name=name,
        github="dev1",
        capabilities=frozenset(),
        transport=transport,
        endpoint=endpoint,
        max_tasks=3,
        backup=None,
        line=1,
    )


def task_for(to: Agent) -> Message:
    return messages.assignment(
        repo=REPO,
        number=NUMBER,
        title="Add login",
        body="Do it.\n\n## Acceptance criteria\n- [ ] it works\n",
        labels=["autonomous"],
        agent=to,
        config=Config(),
        issue_url=f"https://github.com/{REPO}/issues/{NUMBER}",
        branch="nightshift/issue-7-add-login",
        priority="high",
        next_task=None,
        heartbeat_url=None,
        ack_timeout_minutes=10,
    )


def withdrawal_for(to: Agent) -> Message:
    return messages.withdrawal(repo=REPO, number=NUMBER, agent=to, reason="reassigned")


def fix_for(to: Agent) -> Message:
    return messages.fix_request(repo=REPO, number=NUMBER, pr=12, agent=to, instructions="x")


def no_secrets(sent: Sent, *secrets: str) -> None:
    shown = sent.detail + json.dumps(sent.request)
    for secret in secrets:
        assert secret not in shown


# -- a real local HTTP server -----------------------------------------------------------------


@dataclass
class Answer:
    status: int
    body: Any = None
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Server:
    url: str
    received: list[Received]
    answers: list[Answer]  # one per request, in order; the last one repeats
    check: Callable[[Received], Answer | None] | None = None


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server("", [], [Answer(200, {"ok": True})])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            got = Received("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, b"")
            got.body = self.rfile.read(length)
            state.received.append(got)
            answer = state.check(got) if state.check else None
            if answer is None:
                index = len(state.received) - 1
                answer = state.answers[min(index, len(state.answers) - 1)]
            if answer.delay:
                time.sleep(answer.delay)
            data = b"" if answer.body is None else json.dumps(answer.body).encode()
            try:
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (the timeout test)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@dataclass
class Sleeps:
    calls: list[float] = field(default_factory=list)

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def http_transports(
    secrets: dict[str, str], sleeps: Sleeps, **options: Any
) -> Iterator[Transports]:
    made = Transports(None, secret_for=secrets.get, sleep=sleeps, **options)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def signed(sleeps: Sleeps) -> Iterator[Transports]:
    yield from http_transports({"dev-1": SECRET}, sleeps)


# -- webhook ----------------------------------------------------------------------------------


def verify(received: Received) -> Answer | None:
    """What an agent does: check the signature over the raw body with the shared secret."""
    given = received.headers.get("x-nightshift-signature-256", "")
    expected = "sha256=" + hmac.new(SECRET.encode(), received.body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(given, expected):
        return Answer(401, {"error": "bad signature"})
    return None


def test_webhook_posts_the_signed_message(server: Server, signed: Transports) -> None:
    server.check = verify
    hook = agent("webhook", f"{server.url}/hooks/nightshift")
    message = task_for(hook)
    sent = signed.send(None, REPO, NUMBER, hook, message, KEY)
    assert sent.outcome == "delivered", sent.detail
    assert sent.status == 200
    [got] = server.received
    assert got.path == "/hooks/nightshift"
    assert got.headers["content-type"] == "application/json"
    assert got.headers["x-nightshift-event"] == "task"
    assert got.headers["x-nightshift-delivery"] == KEY
    assert Message.model_validate_json(got.body) == message
    assert json.loads(got.body) == message.model_dump(mode="json")
    assert sent.request == signed.request_for(REPO, NUMBER, hook, message, KEY)
    assert sent.request["headers"]["X-Nightshift-Signature-256"] == "sha256=<redacted>"
    assert sent.request["json"] == message.model_dump(mode="json")
    no_secrets(sent, SECRET, got.headers["x-nightshift-signature-256"].removeprefix("sha256="))


def test_webhook_signature_fails_with_another_secret(server: Server, sleeps: Sleeps) -> None:
    server.check = verify
    hook = agent("webhook", f"{server.url}/hook")
    for wrong in http_transports({"dev-1": "not-the-secret"}, sleeps):
        sent = wrong.send(None, REPO, NUMBER, hook, task_for(hook), KEY)
        assert (sent.outcome, sent.status) == ("not_delivered", 401)
        assert len(server.received) == 1


@pytest.mark.parametrize(
    ("make", "event"),
    [
        pytest.param(withdrawal_for, "task-withdrawn", id="withdrawal"),
        pytest.param(fix_for, "fix-instructions", id="fix"),
    ],
)
def test_webhook_event_is_the_content_type(
    server: Server, signed: Transports, make: Callable[[Agent], Message], event: str
) -> None:
    server.check = verify
    hook = agent("webhook", f"{server.url}/hook")
    assert signed.send(None, REPO, NUMBER, hook, make(hook), "k").outcome == "delivered"
    assert server.received[0].headers["x-nightshift-event"] == event


def test_webhook_retries_a_503_with_the_same_delivery(
    server: Server, signed: Transports, sleeps: Sleeps
) -> None:
    server.answers = [Answer(503), Answer(429), Answer(202)]
    hook = agent("webhook", f"{server.url}/hook")
    sent = signed.send(None, REPO, NUMBER, hook, task_for(hook), KEY)
    assert (sent.outcome, sent.status) == ("delivered", 202)
    assert len(server.received) == 3
    assert {r.headers["x-nightshift-delivery"] for r in server.received} == {KEY}
    assert len({r.body for r in server.received}) == 1
    assert len({r.headers["x-nightshift-signature-256"] for r in server.received}) == 1
    assert sleeps.calls == [1.0, 2.0]


def test_webhook_all_5xx_is_unreachable(server: Server, signed: Transports, sleeps: Sleeps) -> None:
    server.answers = [Answer(500), Answer(502), Answer(503), Answer(504)]
    hook = agent("webhook", f"{server.url}/hook")
    sent = signed.send(None, REPO, NUMBER, hook, task_for(hook), KEY)
    assert sent.outcome == "unreachable"
    assert "answered 504 (4 attempts)" in sent.detail
    assert len(server.received) == 4
    assert sleeps.calls == [1.0, 2.0, 4.0]  # backoff_seconds * 2**i
    no_secrets(sent, SECRET)


def test_webhook_timeout_is_unreachable(server: Server, sleeps: Sleeps) -> None:
    server.answers = [Answer(200, delay=1.0)]
    hook = agent("webhook", f"{server.url}/hook")
    for quick in http_transports({"dev-1": SECRET}, sleeps, attempts=2, timeout_seconds=0.2):
        sent = quick.send(None, REPO, NUMBER, hook, task_for(hook), KEY)
        assert sent.outcome == "unreachable"
        assert "timed out after 0.2 s (2 attempts)" in sent.detail
        assert sleeps.calls == [1.0]


def test_webhook_connection_refused_is_unreachable(signed: Transports) -> None:
    closed = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = closed.server_address[1]
    closed.server_close()
    hook = agent("webhook", f"http://127.0.0.1:{port}/hook")
    sent = signed.send(None, REPO, NUMBER, hook, task_for(hook), KEY)
    assert sent.outcome == "unreachable"
    assert "could not connect (ConnectError)" in sent.detail


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422])
def test_webhook_4xx_is_not_delivered_at_once(
    server: Server, signed: Transports, sleeps: Sleeps, status: int
) -> None:
    server.answers = [Answer(status, {"error": "no"})]
    hook = agent("webhook", f"{server.url}/hook")
    sent = signed.send(None, REPO, NUMBER, hook, task_for(hook), KEY)
    assert (sent.outcome, sent.status) == ("not_delivered", status)
    assert len(server.received) == 1
    assert sleeps.calls == []


def test_webhook_never_follows_a_redirect(server: Server, signed: Transports) -> None:
    server.answers = [Answer(307, headers={"Location": f"{server.url}/elsewhere"})]
    hook = agent("webhook", f"{server.url}/hook")
    sent = signed.send(None, REPO, NUMBER, hook, task_for(hook), KEY)
    assert (sent.outcome, sent.status) == ("not_delivered", 307)
    assert "redirect" in sent.detail
    assert [r.path for r in server.received] == ["/hook"]


def test_webhook_without_a_secret_sends_nothing(server: Server, sleeps: Sleeps) -> None:
    hook = agent("webhook", f"{server.url}/hook", name="dev.2")
    for unsigned in http_transports({}, sleeps):
        sent = unsigned.send(None, REPO, NUMBER, hook, task_for(hook), KEY)
        assert sent.outcome == "not_delivered"
        assert sent.detail == "no signing secret: set NIGHTSHIFT_AGENT_DEV_2_SECRET"
        assert server.received == []


def test_webhook_url_credentials_and_query_are_not_recorded(
    server: Server, signed: Transports
) -> None:
    hook = agent("webhook", server.url.replace("://", "://user:pw@") + "/hook?token=abc")
    sent = signed.send(None, REPO, NUMBER, hook, task_for(hook), KEY)
    assert sent.outcome == "delivered"
    assert server.received[0].path == "/hook?token=abc"
    assert sent.request is not None
    assert sent.request["url"] == f"{server.url}/hook?<redacted>"
    no_secrets(sent, "pw", "token=abc")


# -- AI Maestro -------------------------------------------------------------------------------


def maestro_api(received: Received) -> Answer | None:
    """AI Maestro's POST /api/messages checks (services/messages-service.ts, sendMessage)."""
    if received.path != "/api/messages":
        return Answer(404, {"error": "not_found", "message": "no route"})
    body = json.loads(received.body)
    if not all(body.get(k) for k in ("from", "to", "subject", "content")):
        return Answer(
            400,
            {"error": "invalid_request", "message": "Missing required fields: from, to, subject"},
        )
    if not body["content"].get("type") or not body["content"].get("message"):
        return Answer(400, {"error": "invalid_request", "message": "Content must have type"})
    return None


NOTIFIED = Answer(201, {"message": {"id": "msg-1700000000-abc", "to": "dev-1"}, "notified": True})


@pytest.mark.parametrize("endpoint", ["{url}", "{url}/"], ids=["bare", "trailing-slash"])
def test_maestro_sends_the_documented_message(
    server: Server, sleeps: Sleeps, endpoint: str
) -> None:
    server.answers = [NOTIFIED]
    server.check = maestro_api
    maestro = agent("maestro", endpoint.format(url=server.url))
    message = task_for(maestro)
    for sender in http_transports({}, sleeps, sender="nightshift-bot"):
        sent = sender.send(None, REPO, NUMBER, maestro, message, KEY)
        assert (sent.outcome, sent.status) == ("delivered", 201), sent.detail
        assert "msg-1700000000-abc" in sent.detail
        [got] = server.received
        assert got.path == "/api/messages"
        assert "authorization" not in got.headers
        body = json.loads(got.body)
        assert body == {
            "from": "nightshift-bot",
            "to": "dev-1",
            "subject": message.subject,
            "priority": "high",
            "content": {
                "type": "task",
                "message": messages.as_markdown(message),
                "context": message.content.model_dump(mode="json"),
            },
        }
        assert sent.request == sender.request_for(REPO, NUMBER, maestro, message, KEY)


def test_maestro_sends_the_token_as_bearer(server: Server, sleeps: Sleeps) -> None:
    server.answers = [NOTIFIED]
    maestro = agent("maestro", server.url)
    for sender in http_transports({"dev-1": TOKEN}, sleeps):
        sent = sender.send(None, REPO, NUMBER, maestro, withdrawal_for(maestro), KEY)
        assert sent.outcome == "delivered"
        assert server.received[0].headers["authorization"] == f"Bearer {TOKEN}"
        assert json.loads(server.received[0].body)["content"]["type"] == "task-withdrawn"
        assert sent.request is not None
        assert sent.request["headers"]["Authorization"] == "Bearer <redacted>"
        no_secrets(sent, TOKEN)


def test_maestro_not_notified_is_not_delivered(server: Server, sleeps: Sleeps) -> None:
    server.answers = [Answer(201, {"message": {"id": "msg-1"}, "notified": False})]
    maestro = agent("maestro", server.url)
    for sender in http_transports({}, sleeps):
        sent = sender.send(None, REPO, NUMBER, maestro, task_for(maestro), KEY)
        assert (sent.outcome, sent.status) == ("not_delivered", 201)
        assert "did not notify dev-1" in sent.detail


def test_maestro_retries_a_server_error(server: Server, sleeps: Sleeps) -> None:
    server.answers = [
        Answer(500, {"error": "operation_failed", "message": "Failed to send message: busy"}),
        NOTIFIED,
    ]
    maestro = agent("maestro", server.url)
    for sender in http_transports({}, sleeps, backoff_seconds=0.5):
        sent = sender.send(None, REPO, NUMBER, maestro, task_for(maestro), KEY)
        assert sent.outcome == "delivered"
        assert len(server.received) == 2
        assert sleeps.calls == [0.5]


def test_maestro_all_server_errors_is_unreachable(server: Server, sleeps: Sleeps) -> None:
    server.answers = [Answer(500, {"error": "operation_failed"})]
    maestro = agent("maestro", server.url)
    for sender in http_transports({}, sleeps, attempts=3):
        sent = sender.send(None, REPO, NUMBER, maestro, task_for(maestro), KEY)
        assert sent.outcome == "unreachable"
        assert len(server.received) == 3


def test_maestro_refusal_says_why_without_the_token(server: Server, sleeps: Sleeps) -> None:
    server.answers = [Answer(400, {"error": "invalid_request", "message": f"bad token {TOKEN}"})]
    maestro = agent("maestro", server.url)
    for sender in http_transports({"dev-1": TOKEN}, sleeps):
        sent = sender.send(None, REPO, NUMBER, maestro, task_for(maestro), KEY)
        assert (sent.outcome, sent.status) == ("not_delivered", 400)
        assert sent.detail.endswith("answered 400: bad token <redacted>")
        no_secrets(sent, TOKEN)


def test_maestro_unknown_route_is_not_delivered(server: Server, sleeps: Sleeps) -> None:
    server.check = maestro_api
    maestro = agent("maestro", f"{server.url}/prefix")
    for sender in http_transports({}, sleeps):
        sent = sender.send(None, REPO, NUMBER, maestro, task_for(maestro), KEY)
        assert (sent.outcome, sent.status) == ("not_delivered", 404)
        assert server.received[0].path == "/prefix/api/messages"


# -- github -----------------------------------------------------------------------------------


class RecordingGitHub:
    """A GitHubPort that records each request and answers from `answers` (method, path regex)
    or like GitHub would: a comment, an issue with its assignees, its labels."""

    def __init__(self) -> None:
        self.requests: list[tuple[int, GitHubRequest]] = []
        self.comments: list[dict[str, Any]] = []
        self.errors: list[tuple[str, str, GitHubError]] = []
        self.assignable = True

    def fail(self, method: str, path: str, error: GitHubError) -> None:
        self.errors.append((method, path, error))

    def send(self, installation_id: int, request: GitHubRequest) -> GitHubResponse:
        self.requests.append((installation_id, request))
        for method, pattern, error in self.errors:
            if method == request.method and re.search(pattern, request.path):
                raise error
        body = dict(request.json or {})
        if request.method == "GET" and request.path.endswith("/comments"):
            page = int((request.params or {}).get("page", 1))
            return GitHubResponse(200, self.comments[(page - 1) * 100 : page * 100])
        if request.method == "POST" and request.path.endswith("/comments"):
            return GitHubResponse(201, {"id": 1, "body": body["body"], "user": {"type": "Bot"}})
        if request.path.endswith("/assignees"):
            logins = body["assignees"] if self.assignable and request.method == "POST" else []
            return GitHubResponse(
                201 if request.method == "POST" else 200,
                {"number": NUMBER, "assignees": [{"login": x, "type": "User"} for x in logins]},
            )
        if "/labels" in request.path:
            return GitHubResponse(200, [{"name": x} for x in body.get("labels", [])])
        raise AssertionError(f"unexpected {request.method} {request.path}")

    def send_as_app(self, request: GitHubRequest) -> GitHubResponse:
        raise AssertionError("agents are not messaged as the App")

    def writes(self) -> list[GitHubRequest]:
        return [r for _, r in self.requests if r.method != "GET"]


@pytest.fixture
def github() -> RecordingGitHub:
    return RecordingGitHub()


@pytest.fixture
def via_github(github: RecordingGitHub) -> Transports:
    return Transports(github, secret_for=lambda name: SECRET)


ISSUE = f"/repos/{REPO}/issues/{NUMBER}"


def comment(text: str) -> GitHubRequest:
    return GitHubRequest("POST", f"{ISSUE}/comments", {"body": f"{text}\n\n{marker(KEY)}"})


@pytest.mark.parametrize(
    ("endpoint", "make", "expected"),
    [
        pytest.param(
            "assign",
            task_for,
            lambda m: [
                comment(messages.as_markdown(m)),
                GitHubRequest("POST", f"{ISSUE}/assignees", {"assignees": ["dev1"]}),
            ],
            id="assign",
        ),
        pytest.param(
            "assign",
            withdrawal_for,
            lambda m: [
                comment(messages.as_markdown(m)),
                GitHubRequest("DELETE", f"{ISSUE}/assignees", {"assignees": ["dev1"]}),
            ],
            id="assign-withdrawal",
        ),
        pytest.param(
            "assign", fix_for, lambda m: [comment(messages.as_markdown(m))], id="assign-fix"
        ),
        pytest.param(
            "label:agent: go",
            task_for,
            lambda m: [
                comment(messages.as_markdown(m)),
                GitHubRequest("POST", f"{ISSUE}/labels", {"labels": ["agent: go"]}),
            ],
            id="label",
        ),
        pytest.param(
            "label:agent: go",
            withdrawal_for,
            lambda m: [
                comment(messages.as_markdown(m)),
                GitHubRequest("DELETE", f"{ISSUE}/labels/{quote('agent: go', safe='')}"),
            ],
            id="label-withdrawal",
        ),
        pytest.param(
            "mention:@octo-agent",
            task_for,
            lambda m: [comment("@octo-agent " + messages.as_markdown(m))],
            id="mention",
        ),
        pytest.param(
            "mention:@octo-agent",
            withdrawal_for,
            lambda m: [comment("@octo-agent " + messages.as_markdown(m))],
            id="mention-withdrawal",
        ),
    ],
)
def test_github_transport_requests(
    github: RecordingGitHub,
    via_github: Transports,
    github_descriptions: Descriptions,
    endpoint: str,
    make: Callable[[Agent], Message],
    expected: Callable[[Message], list[GitHubRequest]],
) -> None:
    to = agent("github", endpoint)
    message = make(to)
    sent = via_github.send(42, REPO, NUMBER, to, message, KEY)
    assert sent.outcome == "delivered", sent.detail
    assert github.writes() == expected(message)
    # first a look for an earlier attempt's comment, all with the installation
    assert github.requests[0][1].method == "GET"
    assert {installation for installation, _ in github.requests} == {42}
    assert sent.request == via_github.request_for(REPO, NUMBER, to, message, KEY)
    assert sent.request == {
        "transport": "github",
        "requests": [r.as_dict() for r in expected(message)],
    }
    no_secrets(sent, SECRET)
    for request in github.writes():
        body = json.dumps(request.json).encode() if request.json is not None else b""
        for description in github_descriptions.rest:
            problems = description.check_request(
                request.method,
                request.path,
                [],
                "application/json" if body else "",
                body,
                installation=True,
            )
            assert problems == [], f"{request.method} {request.path}"


def test_github_detail_says_what_was_done(via_github: Transports) -> None:
    to = agent("github", "assign")
    sent = via_github.send(42, REPO, NUMBER, to, task_for(to), KEY)
    assert sent.detail == "github octo/repo#7: commented; assigned @dev1"
    assert sent.status == 201


def test_github_comment_of_an_earlier_attempt_is_not_posted_again(
    github: RecordingGitHub, via_github: Transports
) -> None:
    github.comments = [{"body": "hi", "user": {"type": "User"}}] * 100 + [
        {"body": f"earlier\n\n{marker(KEY)}", "user": {"type": "Bot"}}
    ]
    to = agent("github", "assign")
    sent = via_github.send(42, REPO, NUMBER, to, task_for(to), KEY)
    assert sent.outcome == "delivered"
    assert [r.path for r in github.writes()] == [f"{ISSUE}/assignees"]
    assert [dict(r.params or {}) for _, r in github.requests if r.method == "GET"] == [
        {"per_page": 100, "page": 1},
        {"per_page": 100, "page": 2},
    ]
    assert "comment already posted" in sent.detail


def test_github_a_users_fake_marker_does_not_stop_the_comment(
    github: RecordingGitHub, via_github: Transports
) -> None:
    github.comments = [{"body": f"ha\n\n{marker(KEY)}", "user": {"type": "User"}}]
    to = agent("github", "mention:@octo-agent")
    assert via_github.send(42, REPO, NUMBER, to, task_for(to), KEY).outcome == "delivered"
    assert len(github.writes()) == 1


def test_github_assignment_github_left_out_is_not_delivered(
    github: RecordingGitHub, via_github: Transports
) -> None:
    github.assignable = False
    to = agent("github", "assign")
    sent = via_github.send(42, REPO, NUMBER, to, task_for(to), KEY)
    assert (sent.outcome, sent.status) == ("not_delivered", 201)
    assert sent.detail == transports.NOT_ASSIGNED.format(login="dev1", repo=REPO, number=NUMBER)


@pytest.mark.parametrize(
    ("login", "shown"),
    [
        pytest.param("Dev1", "dev1", id="case"),
        pytest.param("copilot-swe-agent[bot]", "Copilot", id="copilot"),
        pytest.param("helper[bot]", "helper", id="bot-suffix"),
    ],
)
def test_github_assignee_logins_compare_loosely(login: str, shown: str) -> None:
    answer = GitHubResponse(201, {"assignees": [{"login": shown}]})
    assert transports._assigned(answer, login)
    assert not transports._assigned(answer, "someone-else")


@pytest.mark.parametrize("status", [None, 500, 502])
def test_github_server_errors_are_raised_for_the_step_to_retry(
    github: RecordingGitHub, via_github: Transports, status: int | None
) -> None:
    github.fail("POST", "/assignees$", GitHubError(status, "Server Error"))
    to = agent("github", "assign")
    with pytest.raises(GitHubError) as raised:
        via_github.send(42, REPO, NUMBER, to, task_for(to), KEY)
    assert raised.value.status == status


@pytest.mark.parametrize("status", [403, 404, 410, 422])
def test_github_client_errors_are_not_delivered(
    github: RecordingGitHub, via_github: Transports, status: int
) -> None:
    github.fail("POST", "/comments$", GitHubError(status, "Validation Failed"))
    to = agent("github", "assign")
    sent = via_github.send(42, REPO, NUMBER, to, task_for(to), KEY)
    assert (sent.outcome, sent.status) == ("not_delivered", status)
    assert sent.detail == (f"GitHub answered {status} to POST {ISSUE}/comments: Validation Failed")
    assert [r.method for r in github.writes()] == ["POST"]  # nothing after the failure


def test_github_label_already_gone_is_fine(github: RecordingGitHub, via_github: Transports) -> None:
    github.fail("DELETE", "/labels/", GitHubError(404, "Label does not exist"))
    to = agent("github", "label:agent")
    sent = via_github.send(42, REPO, NUMBER, to, withdrawal_for(to), KEY)
    assert sent.outcome == "delivered"
    assert "unlabelled agent (already gone)" in sent.detail


@pytest.mark.parametrize(
    ("port", "installation", "detail"),
    [
        pytest.param(False, 42, transports.NO_GITHUB, id="no-github"),
        pytest.param(True, None, transports.NO_INSTALLATION, id="no-installation"),
    ],
)
def test_github_without_access_is_not_delivered(
    github: RecordingGitHub, port: bool, installation: int | None, detail: str
) -> None:
    sender = Transports(github if port else None, secret_for=lambda name: None)
    to = agent("github", "assign")
    sent = sender.send(installation, REPO, NUMBER, to, task_for(to), KEY)
    assert (sent.outcome, sent.detail) == ("not_delivered", detail)
    assert github.requests == []


def test_github_bad_endpoint_is_not_delivered(
    github: RecordingGitHub, via_github: Transports
) -> None:
    to = agent("github", "carrier-pigeon")
    sent = via_github.send(42, REPO, NUMBER, to, task_for(to), KEY)
    assert sent.outcome == "not_delivered"
    assert sent.detail == transports.BAD_ENDPOINT.format(endpoint="carrier-pigeon")
    assert via_github.request_for(REPO, NUMBER, to, task_for(to), KEY)["error"] == sent.detail
    assert github.requests == []
