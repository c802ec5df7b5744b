"""Delivery workflows on the real engine (DBOS) with the fake GitHub behind the adapter."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from dbos import DBOS

from app.effects.github import GitHubApp
from app.effects.store import NewDelivery
from app.engine.runtime import Runtime
from app.settings import Settings
from tests.fakes.github import FakeGitHub
from tests.helpers import body_of, labeled_issue


@pytest.fixture
def runtime(settings: Settings, fake_github: FakeGitHub) -> Iterator[Runtime]:
    github = GitHubApp(
        fake_github.app_id,
        fake_github.private_key,
        "https://api.github.com",
        write_interval=0,
        transport=fake_github.transport(),
    )
    runtime = Runtime(settings, github=github)
    runtime.launch(workers=True)
    yield runtime
    runtime.shutdown()


def store_delivery(
    runtime: Runtime, delivery_id: str, data: Mapping[str, Any], event: str = "issues"
) -> NewDelivery:
    action = data.get("action")
    item = NewDelivery(
        delivery_id,
        event,
        action if isinstance(action, str) else None,
        "octo/repo",
        77,
        body_of(data),
    )
    assert runtime.store.insert_deliveries([item]) == {delivery_id}
    return item


def wait_for(runtime: Runtime, *ids: str, timeout: float = 30) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = {r.id: r.status for r in runtime.store.list_deliveries(limit=1000)}
        if all(rows.get(i) not in (None, "queued") for i in ids):
            return {i: rows[i] for i in ids}
        time.sleep(0.05)
    raise AssertionError(f"not processed in {timeout}s: {rows}")


def test_labelled_issue_is_queued_on_github(runtime: Runtime, fake_github: FakeGitHub) -> None:
    store_delivery(runtime, "d1", labeled_issue(number=5))
    runtime.wake()
    assert wait_for(runtime, "d1") == {"d1": "done"}
    assert fake_github.effects == ["octo/repo#5:+nightshift:queued"]
    kinds = [(e.kind, e.what) for e in runtime.store.audit_log(delivery_id="d1")]
    assert kinds == [
        ("decision", "issues.labeled: 1 action(s)"),
        ("action", "octo/repo#5:+nightshift:queued"),
    ]


def test_rejected_issue_gets_label_and_one_comment(
    runtime: Runtime, fake_github: FakeGitHub
) -> None:
    store_delivery(runtime, "d2", labeled_issue(number=6, body="fix it"))
    runtime.wake()
    assert wait_for(runtime, "d2") == {"d2": "done"}
    assert fake_github.effects == [
        "octo/repo#6:+nightshift:rejected",
        "octo/repo#6:comment:Nightshift can't take this issue for autonomous work yet:",
    ]


def test_same_delivery_started_twice_runs_once(runtime: Runtime, fake_github: FakeGitHub) -> None:
    item = store_delivery(runtime, "d3", labeled_issue(number=7))
    runtime.start(item.id)
    runtime.start(item.id)
    wait_for(runtime, "d3")
    assert DBOS.retrieve_workflow("d3").get_result() == "done"
    runtime.start(item.id)
    runtime.pump()
    time.sleep(0.5)
    assert fake_github.effects == ["octo/repo#7:+nightshift:queued"]


def test_pump_starts_stored_deliveries_without_being_woken(
    runtime: Runtime, fake_github: FakeGitHub
) -> None:
    # as when another process's ingress stored it, or this one died before waking the pump
    store_delivery(runtime, "orphan", labeled_issue(number=8))
    assert wait_for(runtime, "orphan") == {"orphan": "done"}
    assert runtime.pump() == 0
    assert fake_github.effects == ["octo/repo#8:+nightshift:queued"]


def test_pump_keeps_a_burst_out_of_the_engine_until_there_is_room(
    runtime: Runtime, fake_github: FakeGitHub
) -> None:
    fake_github.latency = 0.05
    room = runtime.settings.worker_concurrency * 4
    burst = [f"b{n}" for n in range(room + 20)]
    for n, delivery_id in enumerate(burst):
        store_delivery(runtime, delivery_id, labeled_issue(number=100 + n))
    time.sleep(0.6)
    assert runtime.store.in_flight() <= room
    assert set(wait_for(runtime, *burst, timeout=60).values()) == {"done"}


def test_failed_github_call_marks_the_delivery_failed(
    runtime: Runtime, fake_github: FakeGitHub
) -> None:
    fake_github.fail(
        "POST",
        r"/repos/octo/repo/issues/9/labels",
        403,
        body={"message": "Resource not accessible by integration"},
    )
    store_delivery(runtime, "d4", labeled_issue(number=9))
    runtime.wake()
    assert wait_for(runtime, "d4") == {"d4": "failed"}
    errors = [e.why for e in runtime.store.audit_log() if e.kind == "error"]
    assert errors == [
        "intake: accepted for autonomous work: GitHub answered 403: "
        "Resource not accessible by integration"
    ]


def test_payload_missing_a_field_is_failed_with_the_reason(runtime: Runtime) -> None:
    data = {
        "action": "labeled",
        "label": {"name": "autonomous"},
        "issue": {"title": "?"},
        "repository": {"full_name": "octo/repo"},
    }
    store_delivery(runtime, "d5", data)
    runtime.wake()
    assert wait_for(runtime, "d5") == {"d5": "failed"}
    (row,) = runtime.store.list_deliveries(status="failed")
    assert row.error is not None and "issue.number" in row.error


def test_paused_repository_takes_no_action(runtime: Runtime, fake_github: FakeGitHub) -> None:
    from app.effects.tables import pauses

    with runtime.store.engine.begin() as connection:
        connection.execute(pauses.insert().values(repository="*", since=0, by="test"))
    store_delivery(runtime, "d6", labeled_issue(number=10))
    runtime.wake()
    assert wait_for(runtime, "d6") == {"d6": "done"}
    assert fake_github.effects == []
    assert runtime.store.audit_log(delivery_id="d6")[0].why == "paused: no automatic action"
