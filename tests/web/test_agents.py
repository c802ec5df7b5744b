"""`POST /agents/{agent}/heartbeat`: who may send one, what a bad one gets, what is kept."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from app.core.rules import ROUTER
from app.effects.store import Store
from app.engine.inbox import Inbox
from app.metrics import Metrics
from app.web.app import create_app

TOKEN = "a-long-agent-token"


def post(store: Store, path: str, **request: Any) -> httpx.Response:
    app = create_app(
        secrets=[b"s"],
        inbox=Inbox(store),
        router=ROUTER,
        metrics=Metrics(store),
        store=store,
        agent_token=lambda name: TOKEN if name == "alpha" else None,
    )

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://n") as client:
            return await client.request(request.pop("method", "POST"), path, **request)

    return asyncio.run(send())


BEARER = {"authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize(
    ("path", "request_", "status"),
    [
        ("/agents/alpha/heartbeat", {"json": {"status": "working"}, "headers": BEARER}, 200),
        ("/agents/alpha/heartbeat", {"json": {}, "headers": BEARER}, 200),
        ("/agents/alpha/heartbeat", {"json": {"status": "working"}}, 401),
        (
            "/agents/alpha/heartbeat",
            {"json": {}, "headers": {"authorization": "Bearer wrong"}},
            401,
        ),
        ("/agents/alpha/heartbeat", {"json": {}, "headers": {"authorization": TOKEN}}, 401),
        ("/agents/beta/heartbeat", {"json": {}, "headers": BEARER}, 401),  # no token for beta
        ("/agents/alpha/heartbeat", {"content": b"{", "headers": BEARER}, 400),
        (
            "/agents/alpha/heartbeat",
            {"json": {"progress": 101, "task": "not a task"}, "headers": BEARER},
            422,
        ),
        (
            "/agents/alpha/heartbeat",
            {"content": b"x" * 20_000, "headers": BEARER},
            413,
        ),
        ("/agents/alpha/heartbeat", {"method": "GET", "headers": BEARER}, 405),
    ],
)
def test_statuses(store: Store, path: str, request_: dict[str, Any], status: int) -> None:
    answer = post(store, path, **dict(request_))
    assert answer.status_code == status, answer.text
    recorded = store.agent_statuses()
    assert ("alpha" in recorded) is (status == 200)


def test_a_heartbeat_is_kept_and_a_refused_one_is_not_logged_with_its_token(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    body = {"status": "working", "task": "octo/repo#5", "progress": 40}
    assert post(store, "/agents/alpha/heartbeat", json=body, headers=BEARER).status_code == 200
    status = store.agent_statuses()["alpha"]
    assert status.task == "octo/repo#5" and status.last_heartbeat is not None
    refused = {"authorization": "Bearer leaked-guess-123"}
    assert post(store, "/agents/alpha/heartbeat", json={}, headers=refused).status_code == 401
    assert "leaked-guess-123" not in caplog.text
    assert "heartbeat refused" in caplog.text


def test_the_roster_as_last_read_is_found_by_repository_and_name(store: Store) -> None:
    from app.core.roster import parse

    roster = parse(
        "| Agent | GitHub | Capabilities | Transport | Endpoint | Max tasks | Backup |\n"
        "|---|---|---|---|---|---|---|\n"
        "| alpha | alpha-bot | python, docs | webhook | https://a.example/hook | 2 | - |\n"
    )
    store.remember_roster("octo/repo", roster.agents)
    found = store.roster_agent("octo/repo", "alpha")
    assert found is not None and found.endpoint == "https://a.example/hook"
    assert found.capabilities == frozenset({"python", "docs"}) and found.max_tasks == 2
    assert store.roster_agent("octo/other", "alpha") is None
    store.remember_roster("octo/repo", ())  # the roster lost the agent
    assert store.roster_agent("octo/repo", "alpha") is None
