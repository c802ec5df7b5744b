"""Dispatch end to end: deliveries through the ingress and the real engine, the shared fake
GitHub, agents behind real local HTTP servers (a webhook agent that checks the signature, an
AI Maestro that follows its messages API), heartbeats through the real endpoint, durable
timers."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from app.core.rules import ROUTER
from app.engine.inbox import Inbox
from app.engine.runtime import Runtime
from app.settings import Settings
from app.web.app import create_app
from tests.conftest import SECRET as WEBHOOK_SECRET
from tests.fakes.github import FakeGitHub
from tests.helpers import app_client, body_of, command_comment, labeled_issue, signed_headers

REPO = "octo/repo"
SECRET = "alpha-signing-secret"
TOKEN = "alpha-heartbeat-token"
CRITERIA = "## Acceptance criteria\n- [ ] it works\n"


@dataclass
class AgentServer:
    """An agent's endpoint on localhost: records what it receives, answers `status`."""

    secret: str | None = None
    status: int = 202
    answer: dict[str, Any] = field(default_factory=dict)
    received: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    def start(self) -> ThreadingHTTPServer:
        server_self = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                if server_self.secret is not None:
                    expected = (
                        "sha256="
                        + hmac.new(server_self.secret.encode(), body, hashlib.sha256).hexdigest()
                    )
                    if not hmac.compare_digest(
                        headers.get("x-nightshift-signature-256", ""), expected
                    ):
                        self.send_response(401)
                        self.end_headers()
                        return
                server_self.received.append(
                    {"path": self.path, "headers": headers, "json": json.loads(body)}
                )
                answer = json.dumps(server_self.answer).encode()
                self.send_response(server_self.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    def kinds(self) -> list[str]:
        return [str(r["json"]["content"]["type"]) for r in self.received]


@dataclass
class Scene:
    runtime: Runtime
    fake: FakeGitHub
    alpha: AgentServer
    beta: AgentServer
    offset: list[float]
    counter: Iterator[int]

    def deliver(self, event: str, data: Mapping[str, Any]) -> None:
        """Through the ingress, as GitHub sends it: signed, stored, answered 202."""
        delivery_id = f"d{next(self.counter)}"
        body = body_of(data)
        inbox = Inbox(self.runtime.store, on_stored=self.runtime.wake)
        app = create_app(
            secrets=[WEBHOOK_SECRET.encode()],
            inbox=inbox,
            router=ROUTER,
            metrics=self.runtime.metrics,
        )

        async def post() -> httpx.Response:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://nightshift") as c:
                return await c.post(
                    "/webhooks",
                    content=body,
                    headers=signed_headers(body, WEBHOOK_SECRET, event, delivery_id),
                )

        inbox.start()
        try:
            assert asyncio.run(post()).status_code == 202
        finally:
            inbox.stop()
        self.until(lambda: _status(self.runtime, delivery_id) not in (None, "queued"))
        assert _status(self.runtime, delivery_id) in ("done", "ignored")

    def label(self, number: int, body: str = CRITERIA, **issue: Any) -> None:
        fake_issue = self.fake.issue(REPO, number)
        fake_issue.title, fake_issue.body = f"Task {number}", body
        self.deliver("issues", labeled_issue(number=number, body=body, **issue))

    def state(self, number: int) -> str | None:
        task = self.runtime.store.task(REPO, number)
        return task.state.value if task is not None else None

    def agent_of(self, number: int) -> str | None:
        task = self.runtime.store.task(REPO, number)
        return task.agent_name if task is not None else None

    def until(self, condition: Callable[[], object], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.05)

    def comments(self, number: int) -> list[str]:
        return [str(c["body"]) for c in self.fake.issue(REPO, number).comments]

    def heartbeat(self, agent: str, token: str, **body: Any) -> httpx.Response:
        app = create_app(
            secrets=[b"x"],
            inbox=Inbox(self.runtime.store),
            router=ROUTER,
            metrics=self.runtime.metrics,
            store=self.runtime.store,
            agent_token=lambda name: TOKEN if name == "alpha" else None,
        )
        transport = httpx.ASGITransport(app=app)

        async def post() -> httpx.Response:
            async with httpx.AsyncClient(transport=transport, base_url="http://nightshift") as c:
                return await c.post(
                    f"/agents/{agent}/heartbeat",
                    json=body,
                    headers={"authorization": f"Bearer {token}"},
                )

        return asyncio.run(post())


def _status(runtime: Runtime, delivery_id: str) -> str | None:
    rows = {r.id: r for r in runtime.store.list_deliveries(limit=1000)}
    row = rows.get(delivery_id)
    return row.status if row is not None else None


def roster(alpha: str, beta: str) -> str:
    return f"""# Agents

| Agent | GitHub | Capabilities | Transport | Endpoint | Max tasks | Backup |
|---|---|---|---|---|---|---|
| alpha | alpha-bot | python | webhook | {alpha}/hook | 2 | beta |
| beta | beta-bot | python | maestro | {beta} | 2 | - |
"""


CONFIG: dict[str, Any] = {
    "ack_timeout_minutes": 0.05,  # 3 seconds
    "heartbeat_interval_seconds": 1,
    "limits": {"heartbeat_missed_threshold": 2},
    "project": {"owner": "octo", "number": 3},
    "maintainers": ["octocat"],
}


def make_scene(
    settings: Settings, fake: FakeGitHub, monkeypatch: pytest.MonkeyPatch, config: dict[str, Any]
) -> tuple[Scene, list[ThreadingHTTPServer]]:
    monkeypatch.setenv("NIGHTSHIFT_AGENT_ALPHA_SECRET", SECRET)
    alpha = AgentServer(secret=SECRET)
    beta = AgentServer(status=201, answer={"message": {"id": "m1"}, "notified": True})
    servers = [alpha.start(), beta.start()]
    fake.files[(REPO, ".github/nightshift.yml")] = yaml.safe_dump(config)
    fake.files[(REPO, "AGENT_ROSTER.md")] = roster(alpha.url, beta.url)
    fake.projects.add_project("octo", 3)
    offset = [0.0]
    runtime = Runtime(settings, github=app_client(fake), clock=lambda: time.time() + offset[0])
    runtime.configs.cache_seconds = 0  # tests change the files between deliveries
    return Scene(runtime, fake, alpha, beta, offset, itertools.count(1)), servers


@pytest.fixture
def scene(
    settings: Settings, fake_github: FakeGitHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Scene]:
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    made, servers = make_scene(settings, fake_github, monkeypatch, CONFIG)
    made.runtime.launch(workers=True)
    try:
        yield made
    finally:
        made.runtime.shutdown()
        for server in servers:
            server.shutdown()
            server.server_close()


def test_a_labelled_issue_is_assigned_through_the_signed_webhook(scene: Scene) -> None:
    scene.label(1)
    scene.until(lambda: scene.state(1) == "assigned")
    assert scene.agent_of(1) == "alpha"
    scene.until(lambda: scene.alpha.received)
    [sent] = scene.alpha.received
    assert sent["path"] == "/hook"  # the signature was checked by the server
    assert sent["headers"]["x-nightshift-delivery"] == f"assign:{REPO}#1:1"
    content = sent["json"]["content"]
    assert content["task_id"] == f"{REPO}#1" and content["completion_criteria"] == ["it works"]
    assert content["branch"].startswith("nightshift/issue-1-")
    assert content["issue_url"] == f"https://github.com/{REPO}/issues/1"
    scene.until(lambda: any("Assigned to **alpha**" in c for c in scene.comments(1)))
    assert "nightshift:queued" not in scene.fake.issue(REPO, 1).labels
    scene.until(lambda: scene.fake.projects.column("octo", 3, REPO, 1) == "In Progress")


def test_an_invalid_issue_is_rejected_and_never_assigned(scene: Scene) -> None:
    scene.label(2, body="no criteria here")
    assert scene.state(2) == "rejected"
    assert "nightshift:rejected" in scene.fake.issue(REPO, 2).labels
    time.sleep(0.5)
    assert scene.alpha.received == [] and scene.beta.received == []


def test_approval_by_a_collaborator_only(scene: Scene) -> None:
    scene.label(3, body=CRITERIA + "\nThen drop table users.")
    assert scene.state(3) == "awaiting_approval"
    scene.fake.permissions[(REPO, "drive-by")] = "read"
    scene.deliver(
        "issue_comment", command_comment("/nightshift approve", login="drive-by", number=3)
    )
    assert scene.state(3) == "awaiting_approval"
    assert any("only people with write access" in c for c in scene.comments(3))
    scene.fake.permissions[(REPO, "octocat")] = "write"
    scene.deliver("issue_comment", command_comment("/nightshift approve", number=3))
    scene.until(lambda: scene.state(3) == "assigned")


def test_dependencies_wait_and_a_cycle_blocks(scene: Scene) -> None:
    scene.fake.issue(REPO, 10).state = "open"  # not a task, still open
    scene.label(4, body=CRITERIA + "\nDepends on #10\n")
    scene.until(lambda: any("waiting for #10 to be done" in c for c in scene.comments(4)))
    assert scene.state(4) == "queued"
    scene.fake.issue(REPO, 10).state = "closed"
    closed = labeled_issue(number=10, state="closed")
    scene.deliver("issues", {**closed, "action": "closed"})
    scene.until(lambda: scene.state(4) == "assigned")

    scene.label(5, body=CRITERIA + "\nDepends on #6\n")
    scene.label(6, body=CRITERIA + "\nDepends on #5\n")
    scene.until(lambda: scene.state(5) == scene.state(6) == "blocked")

    def named(number: int) -> bool:
        return any("dependency cycle #5 -> #6 -> #5" in c for c in scene.comments(number))

    scene.until(lambda: named(5) and named(6))


def test_no_acknowledgement_sends_the_task_to_the_backup(scene: Scene) -> None:
    scene.label(7)
    scene.until(lambda: scene.state(7) == "assigned" and scene.agent_of(7) == "alpha")
    # alpha never acknowledges: after the 3 s deadline (a durable timer) beta has it
    scene.until(lambda: scene.agent_of(7) == "beta", timeout=30)
    assert scene.state(7) == "assigned"
    scene.until(lambda: scene.alpha.kinds() == ["task", "task-withdrawn"])
    scene.until(lambda: scene.beta.kinds() == ["task"])
    [message] = scene.beta.received
    assert message["path"] == "/api/messages"
    assert message["json"]["to"] == "beta" and message["json"]["from"] == "nightshift"
    assert message["json"]["priority"] in ("low", "normal", "high", "urgent")
    assert message["json"]["content"]["context"]["task_id"] == f"{REPO}#7"
    assert any("did not acknowledge within" in c for c in scene.comments(7))


def test_a_heartbeat_acknowledges_and_its_loss_fails_over(scene: Scene) -> None:
    relaxed = {**CONFIG, "ack_timeout_minutes": 5, "heartbeat_interval_seconds": 5}
    scene.fake.files[(REPO, ".github/nightshift.yml")] = yaml.safe_dump(relaxed)
    assert scene.heartbeat("alpha", "wrong").status_code == 401
    assert scene.runtime.store.agent_statuses() == {}  # nothing recorded
    scene.label(8)
    scene.until(lambda: scene.agent_of(8) == "alpha")
    answer = scene.heartbeat("alpha", TOKEN, status="working", task=f"{REPO}#8", progress=10)
    assert answer.status_code == 200
    scene.runtime.dispatch.watch()
    scene.until(lambda: scene.state(8) == "in_progress")
    # the heartbeats stop: the pass that acknowledged set a durable timer for the moment
    # two intervals are missed (10 s); when it fires the task goes to the backup
    scene.offset[0] = 30
    scene.until(lambda: scene.agent_of(8) == "beta" and scene.state(8) == "assigned", timeout=45)
    statuses = scene.runtime.store.agent_statuses()
    assert statuses["alpha"].offline_since is not None
    assert any("stopped sending heartbeats" in c for c in scene.comments(8))


def test_every_agent_offline_raises_one_urgent_issue(scene: Scene) -> None:
    scene.runtime.store.heartbeat("alpha", "working", None, None)
    scene.runtime.store.heartbeat("beta", "working", None, None)
    scene.offset[0] = 100
    scene.label(9)
    scene.until(lambda: any("nightshift:urgent" in i.labels for i in scene.fake.issues.values()))
    urgent = [i for i in scene.fake.issues.values() if "nightshift:urgent" in i.labels]
    assert len(urgent) == 1 and "every agent is offline" in urgent[0].title
    assert "@octocat" in urgent[0].body and "#9" in urgent[0].body
    assert scene.state(9) == "queued"
    # a second task waiting changes nothing: one open issue per cause
    scene.label(11)
    scene.until(lambda: any("offline" in c for c in scene.comments(11)))
    assert len([i for i in scene.fake.issues.values() if "nightshift:urgent" in i.labels]) == 1
    # closing the urgent issue resolves the escalation
    [(_, number)] = [k for k, i in scene.fake.issues.items() if "nightshift:urgent" in i.labels]
    closed = labeled_issue(number=number, state="closed", label="nightshift:urgent")
    scene.deliver("issues", {**closed, "action": "closed"})
    [escalation] = scene.runtime.store.escalations(REPO)
    assert escalation["category"] == "infrastructure" and escalation["resolved_at"] is not None


def test_a_pending_acknowledgement_timer_survives_a_restart(
    settings: Settings, fake_github: FakeGitHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    first, servers = make_scene(settings, fake_github, monkeypatch, CONFIG)
    first.runtime.launch(workers=True)
    try:
        first.label(12)
        first.until(lambda: first.agent_of(12) == "alpha")
    finally:
        first.runtime.shutdown()
    second = Runtime(settings, github=app_client(fake_github))
    second.configs.cache_seconds = 0
    second.launch(workers=True)
    try:
        scene = Scene(second, fake_github, first.alpha, first.beta, [0.0], itertools.count(100))
        scene.until(lambda: scene.agent_of(12) == "beta", timeout=40)
    finally:
        second.shutdown()
        for server in servers:
            server.shutdown()
            server.server_close()


# the escalation path in seconds: a peer after 3 s, the lead after 6 s, an urgent issue at 9 s
LEVELS: dict[str, Any] = {
    **CONFIG,
    "ack_timeout_minutes": 5,
    "escalation_levels": {
        "peer_minutes": 0.05,
        "lead_minutes": 0.1,
        "immediate_minutes": 0.15,
        "lead": "octocat",
    },
}


def test_a_blocked_task_goes_to_the_backup_after_the_first_threshold(
    settings: Settings, fake_github: FakeGitHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    made, servers = make_scene(settings, fake_github, monkeypatch, LEVELS)
    made.runtime.launch(workers=True)
    try:
        made.label(14)
        made.until(lambda: made.agent_of(14) == "alpha")
        made.deliver(
            "issue_comment",
            command_comment(
                "/nightshift blocked the API key is missing", login="alpha-bot", number=14
            ),
        )
        assert made.state(14) == "blocked"
        # 3 s later (a durable timer) beta, alpha's backup, has it, on a branch of its own
        made.until(lambda: made.agent_of(14) == "beta", timeout=30)
        assert made.state(14) == "assigned"
        made.until(lambda: made.beta.kinds() == ["task"])
        context = made.beta.received[0]["json"]["content"]["context"]
        assert context["branch"].startswith("nightshift/issue-14-")
        assert context["branch"].endswith("-take-2")
        assert "alpha was blocked on this task" in context["taken_over"]
        made.until(lambda: made.alpha.kinds() == ["task", "task-withdrawn"])
        assert any("Escalation level 1: the task goes to **beta**" in c for c in made.comments(14))
        task = made.runtime.store.task(REPO, 14)
        assert task is not None and task.assignment == 2
    finally:
        made.runtime.shutdown()
        for server in servers:
            server.shutdown()
            server.server_close()


def test_escalation_timers_survive_a_restart_and_climb_to_an_urgent_issue(
    settings: Settings, fake_github: FakeGitHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No peer can take the task (beta is full): the lead is asked, then an urgent issue;
    the process stops right after the block and the timers fire in the next one. Closing
    the urgent issue lets the task go back to work."""
    monkeypatch.chdir(tmp_path)
    solo = {**LEVELS, "maintainers": ["alice"]}
    first, servers = make_scene(settings, fake_github, monkeypatch, solo)
    fake_github.files[(REPO, "AGENT_ROSTER.md")] = roster(first.alpha.url, first.beta.url).replace(
        "| 2 | - |", "| 0 | - |"
    )
    first.runtime.launch(workers=True)
    try:
        first.label(15)
        first.until(lambda: first.agent_of(15) == "alpha")
        first.deliver(
            "issue_comment", command_comment("/nightshift ack", login="alpha-bot", number=15)
        )
        assert first.state(15) == "in_progress"
        first.deliver(
            "issue_comment",
            command_comment(
                "/nightshift blocked waiting for a decision", login="alpha-bot", number=15
            ),
        )
        assert first.state(15) == "blocked"
    finally:
        first.runtime.shutdown()
    second = Runtime(settings, github=app_client(fake_github))
    second.configs.cache_seconds = 0
    second.launch(workers=True)
    try:
        scene = Scene(second, fake_github, first.alpha, first.beta, [0.0], itertools.count(100))

        def urgent() -> list[Any]:
            return [i for i in fake_github.issues.values() if "nightshift:urgent" in i.labels]

        scene.until(lambda: len(urgent()) == 1, timeout=60)
        comments = scene.comments(15)
        assert any("Escalation level 1: no peer or backup agent can take it" in c for c in comments)
        assert any("Escalation level 2: @octocat, please decide" in c for c in comments)
        [issue] = urgent()
        assert issue.title.startswith("Nightshift: #15 blocked for ")
        assert "waiting for a decision" in issue.body and "@alice" in issue.body
        task = second.store.task(REPO, 15)
        assert task is not None and task.state.value == "blocked"
        # closing the urgent issue: handled; the task goes back to its agent's work
        [(_, number)] = [
            k for k, i in fake_github.issues.items() if "nightshift:urgent" in i.labels
        ]
        closed = labeled_issue(number=number, state="closed", label="nightshift:urgent")
        scene.deliver("issues", {**closed, "action": "closed"})
        scene.until(lambda: scene.state(15) == "in_progress")
        blocked = [e for e in second.store.escalations(REPO) if e["category"] == "blocked"]
        assert len(blocked) == 1 and blocked[0]["resolved_at"] is not None
        assert len(urgent()) == 1  # one issue per block, however many passes ran
    finally:
        second.shutdown()
        for server in servers:
            server.shutdown()
            server.server_close()
