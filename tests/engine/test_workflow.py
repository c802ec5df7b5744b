"""Delivery workflows on the real engine (DBOS) with the fake GitHub behind the adapter."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from dbos import DBOS

from app.effects.store import NewDelivery
from app.engine import runtime as runtime_module
from app.engine.delivery import DELIVERY_QUEUE
from app.engine.review import REVIEW_QUEUE
from app.engine.runtime import BURST_AFTER, QUIET_POLL, Runtime
from app.settings import Settings
from tests.fakes.github import FakeGitHub
from tests.helpers import app_client, body_of, labeled_issue


@pytest.fixture
def runtime(settings: Settings, fake_github: FakeGitHub) -> Iterator[Runtime]:
    runtime = Runtime(settings, github=app_client(fake_github))
    runtime.launch(workers=True)
    yield runtime
    runtime.shutdown()


def store_delivery(
    runtime: Runtime,
    delivery_id: str,
    data: Mapping[str, Any],
    event: str = "issues",
    received_at: float | None = None,
) -> NewDelivery:
    action = data.get("action")
    item = NewDelivery(
        delivery_id,
        event,
        action if isinstance(action, str) else None,
        data.get("repository", {}).get("full_name", "octo/repo"),
        77,
        body_of(data),
        received_at=received_at,
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


def delivered(fake: FakeGitHub) -> list[str]:
    """What the deliveries did on GitHub, without the dispatch pass each queued task starts
    (it says on the issue that the repository has no roster: tests/engine/test_dispatch.py)."""
    return [e for e in fake.effects if "Queued, not assigned yet" not in e]


def test_labelled_issue_is_queued_on_github(runtime: Runtime, fake_github: FakeGitHub) -> None:
    store_delivery(runtime, "d1", labeled_issue(number=5))
    runtime.wake()
    assert wait_for(runtime, "d1") == {"d1": "done"}
    assert delivered(fake_github) == ["octo/repo#5:+nightshift:queued"]
    kinds = [(e.kind, e.what) for e in runtime.store.audit_log(delivery_id="d1")]
    assert kinds == [
        ("decision", "issues.labeled: 4 action(s)"),
        ("transition", "octo/repo#5:new->queued"),
        ("state", "octo/repo#5:facts"),
        ("action", "octo/repo#5:+nightshift:queued"),
        ("action", "octo/repo:dispatch"),
    ]
    task = runtime.store.task("octo/repo", 5)
    assert task is not None and task.state == "queued"


def test_the_same_labelling_sent_twice_under_two_delivery_ids_acts_once(
    runtime: Runtime, fake_github: FakeGitHub
) -> None:
    store_delivery(runtime, "twice-1", labeled_issue(number=6))
    store_delivery(runtime, "twice-2", labeled_issue(number=6))
    runtime.wake()
    assert wait_for(runtime, "twice-1", "twice-2") == {"twice-1": "done", "twice-2": "done"}
    assert delivered(fake_github) == ["octo/repo#6:+nightshift:queued"]
    transitions = [e.what for e in runtime.store.audit_log() if e.kind == "transition"]
    assert transitions == ["octo/repo#6:new->queued"]


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
    runtime.start(item.id, "octo/repo")
    runtime.start(item.id, "octo/repo")
    wait_for(runtime, "d3")
    assert DBOS.retrieve_workflow("d3").get_result() == "done"
    runtime.start(item.id, "octo/repo")
    runtime.pump()
    time.sleep(0.5)
    assert delivered(fake_github) == ["octo/repo#7:+nightshift:queued"]


def test_pump_starts_stored_deliveries_without_being_woken(
    runtime: Runtime, fake_github: FakeGitHub
) -> None:
    # as when another process's ingress stored it, or this one died before waking the pump
    store_delivery(runtime, "orphan", labeled_issue(number=8))
    assert wait_for(runtime, "orphan") == {"orphan": "done"}
    assert runtime.pump() == 0
    assert delivered(fake_github) == ["octo/repo#8:+nightshift:queued"]


def test_pump_keeps_a_burst_out_of_the_engine_until_there_is_room(
    runtime: Runtime, fake_github: FakeGitHub
) -> None:
    fake_github.latency = 0.05
    room = runtime.settings.worker_concurrency * 4
    burst = [f"b{n}" for n in range(room + 20)]
    for n, delivery_id in enumerate(burst):
        store_delivery(runtime, delivery_id, labeled_issue(number=100 + n))
    other = store_delivery(runtime, "other-repo", labeled_issue(number=99, repo="octo/other"))
    runtime.wake()
    held = []  # sampled for a second: with SQLite one workflow ends before the next starts
    for _ in range(50):
        in_flight = runtime.store.in_flight()
        in_engine = DBOS.list_workflows(
            status=["ENQUEUED", "PENDING"], name="nightshift.delivery"
        )  # what the engine itself holds, not the pump's bookkeeping
        held.append(len(in_engine))
        assert sum(in_flight.values()) <= room
        assert in_flight.get("octo/repo", 0) <= 4  # one repository's burst leaves room
        time.sleep(0.02)
    assert 0 < max(held) <= room
    assert wait_for(runtime, other.id, timeout=10) == {"other-repo": "done"}
    assert set(wait_for(runtime, *burst, timeout=60).values()) == {"done"}


def test_a_repository_s_deliveries_run_one_at_a_time(
    runtime: Runtime, fake_github: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    # rules read and change a repository's state: two of its deliveries must never overlap
    fake_github.latency = 0.02
    running: dict[str, int] = {}
    most: dict[str, int] = {}
    lock = threading.Lock()
    load, finish = runtime.store.delivery, runtime.store.finish_delivery

    def loading(delivery_id: str) -> Any:
        with lock:
            repo = delivery_id.split("-")[0]
            running[repo] = running.get(repo, 0) + 1
            most[repo] = max(most.get(repo, 0), running[repo])
        return load(delivery_id)

    def finishing(delivery_id: str, status: str, error: str | None = None) -> None:
        with lock:  # before the row says so: the pump may start the next one right after
            running[delivery_id.split("-")[0]] -= 1
        finish(delivery_id, status, error)

    monkeypatch.setattr(runtime.store, "delivery", loading)
    monkeypatch.setattr(runtime.store, "finish_delivery", finishing)
    ids = []
    for n in range(6):
        for repo in ("one", "two"):
            ids.append(f"{repo}-{n}")
            store_delivery(runtime, ids[-1], labeled_issue(number=n + 1, repo=f"octo/{repo}"))
    runtime.wake()
    assert set(wait_for(runtime, *ids).values()) == {"done"}
    assert most == {"one": 1, "two": 1}


def test_the_next_delivery_of_a_repository_starts_when_one_ends_not_at_the_next_poll(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime_module, "PUMP_INTERVAL", 60.0)  # woken, or never
    runtime.wake()
    time.sleep(0.2)  # the pump is asleep for a minute now
    for n in range(3):
        store_delivery(runtime, f"next-{n}", labeled_issue(number=30 + n))
    runtime.wake()
    assert set(wait_for(runtime, "next-0", "next-1", "next-2", timeout=15).values()) == {"done"}


def test_with_sqlite_the_pump_starts_workflows_itself_and_nothing_polls_for_them(
    runtime: Runtime,
) -> None:
    # PostgreSQL: several workers share DBOS's queue, which serializes a repository
    store_delivery(runtime, "direct", labeled_issue(number=40))
    runtime.wake()
    wait_for(runtime, "direct")
    status = DBOS.get_workflow_status("direct")
    assert status is not None
    queue = DBOS.retrieve_queue(DELIVERY_QUEUE)
    assert queue is not None
    if runtime.settings.is_postgres:
        assert (status.queue_name, queue.polling_interval_sec) == (DELIVERY_QUEUE, 0.1)
    else:  # the queue only drains what an earlier version enqueued
        assert (status.queue_name, queue.polling_interval_sec) == (None, 5.0)


def test_the_pump_leaves_the_cpu_to_a_burst_coming_in_for_at_most_30_seconds(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime_module, "PUMP_INTERVAL", 60.0)  # only this test pumps
    runtime.wake()
    time.sleep(0.2)
    runtime.watch_ingress(lambda: BURST_AFTER + 0.1)  # deliveries coming in, no pause
    store_delivery(runtime, "during", labeled_issue(number=50))
    started = runtime.pump()
    if runtime.settings.is_postgres:  # the ingress is another process's: nothing to yield to
        assert started == 1
    else:
        assert started == 0
        assert runtime.store.in_flight() == {}
        store_delivery(  # waited past the limit: all go on
            runtime,
            "old",
            labeled_issue(number=51, repo="octo/old"),
            received_at=runtime.clock() - 31,
        )
        assert runtime.pump() == 2
    assert set(wait_for(runtime, "during").values()) == {"done"}


def test_a_lasting_burst_slows_the_queues_polls_and_they_come_back_after_it(
    runtime: Runtime,
) -> None:
    burst = [5.0]
    runtime.watch_ingress(lambda: burst[0])

    def polling() -> float:
        queue = DBOS.retrieve_queue(REVIEW_QUEUE)
        assert queue is not None
        return queue.polling_interval_sec

    expected = 0.5 if runtime.settings.is_postgres else QUIET_POLL  # shared by every worker
    deadline = time.monotonic() + 10
    runtime.wake()
    while polling() != expected:
        assert time.monotonic() < deadline, polling()
        time.sleep(0.05)
    burst[0] = 0.0
    runtime.wake()
    while polling() != 0.5:
        assert time.monotonic() < deadline, polling()
        time.sleep(0.05)


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
    runtime.store.pause("*", by="test")  # what `nightshift pause --all` does
    store_delivery(runtime, "d6", labeled_issue(number=10))
    runtime.wake()
    assert wait_for(runtime, "d6") == {"d6": "done"}
    assert fake_github.effects == []
    assert runtime.store.audit_log(delivery_id="d6")[0].why == "paused: no automatic action"


def test_invalid_configuration_is_reported_once_then_work_resumes_when_fixed(
    runtime: Runtime, fake_github: FakeGitHub
) -> None:
    path = ("octo/repo", ".github/nightshift.yml")
    fake_github.files[path] = "limits:\n  max_fix_rounds: lots\n"
    store_delivery(runtime, "c1", labeled_issue(number=20))
    store_delivery(runtime, "c2", labeled_issue(number=21))
    runtime.wake()
    assert wait_for(runtime, "c1", "c2") == {"c1": "done", "c2": "done"}
    assert fake_github.effects == [
        "octo/repo#20:comment:Nightshift can't work in this repository until its "
        "configuration is fixed:"
    ]
    assert (
        "limits.max_fix_rounds: Input should be a valid integer"
        in (fake_github.issue("octo/repo", 20).comments[0]["body"])
    )

    fake_github.files[path] = "limits:\n  max_fix_rounds: 2\n"
    runtime.configs.forget("octo/repo")
    store_delivery(runtime, "c3", labeled_issue(number=22))
    runtime.wake()
    assert wait_for(runtime, "c3") == {"c3": "done"}
    assert fake_github.effects[1:] == ["octo/repo#22:+nightshift:queued"]
    assert runtime.store.reported_config_error("octo/repo") is None


def test_unreadable_configuration_fails_the_delivery_with_the_reason(
    runtime: Runtime, fake_github: FakeGitHub
) -> None:
    fake_github.fail(
        "GET",
        r"/repos/octo/repo/contents/.*",
        403,
        times=100,
        body={"message": "Resource not accessible by integration"},
    )
    store_delivery(runtime, "u1", labeled_issue(number=23))
    runtime.wake()
    assert wait_for(runtime, "u1", timeout=60) == {"u1": "failed"}
    (row,) = runtime.store.list_deliveries(status="failed")
    assert row.error == (
        "gave up after 3 attempts: GitHubError: 403: Resource not accessible by integration"
    )
    assert fake_github.effects == []


def test_a_delivery_no_rule_handles_any_more_is_finished_as_ignored(runtime: Runtime) -> None:
    store_delivery(
        runtime,
        "i1",
        {"action": "created", "repository": {"full_name": "octo/repo"}},
        event="deployment_status",
    )
    runtime.wake()
    assert wait_for(runtime, "i1") == {"i1": "ignored"}


def test_a_transient_github_failure_is_retried_by_the_step(
    runtime: Runtime, fake_github: FakeGitHub
) -> None:
    fake_github.fail("POST", r"/repos/octo/repo/issues/30/labels", 502, times=2)
    store_delivery(runtime, "t1", labeled_issue(number=30))
    runtime.wake()
    assert wait_for(runtime, "t1", timeout=60) == {"t1": "done"}
    assert fake_github.effects == ["octo/repo#30:+nightshift:queued"]
    assert fake_github.writes().count("POST /repos/octo/repo/issues/30/labels") == 3


def test_rows_of_workflows_that_ended_without_finishing_are_reaped(runtime: Runtime) -> None:
    from dbos import SetEnqueueOptions, SetWorkflowID

    from app.effects.tables import deliveries

    # rows marked dispatched as they are stored, so the running pump leaves them alone
    with runtime.store.engine.begin() as connection:
        for delivery_id in ("lost", "cancelled"):  # "lost": enqueued nowhere
            connection.execute(
                deliveries.insert().values(
                    id=delivery_id,
                    event="issues",
                    action="labeled",
                    repository="octo/repo",
                    installation_id=77,
                    received_at=runtime.clock(),
                    body=b"{}",
                    status="queued",
                    # just now: too recent for the pump's own reaper, which must leave them
                    dispatched_at=runtime.clock(),
                )
            )
    with (
        SetWorkflowID("cancelled"),
        SetEnqueueOptions(queue_partition_key="octo/repo", delay_seconds=600),
    ):
        runtime.queue.enqueue(runtime.engine.handle, "cancelled")
    DBOS.cancel_workflow("cancelled")
    assert runtime.reap(older_than=-1) == 2
    rows = {r.id: (r.status, r.error) for r in runtime.store.list_deliveries()}
    assert rows["lost"] == ("failed", "the workflow ended without finishing: missing")
    assert rows["cancelled"][0] == "failed"
    assert rows["cancelled"][1] is not None and "CANCELLED" in rows["cancelled"][1]
    assert runtime.store.in_flight() == {}


def test_workflows_carry_the_engine_version_not_the_release(runtime: Runtime) -> None:
    from app.engine.delivery import ENGINE_VERSION

    store_delivery(runtime, "v1", labeled_issue(number=33))
    runtime.wake()
    wait_for(runtime, "v1")
    status = DBOS.get_workflow_status("v1")
    assert status is not None
    assert status.app_version == ENGINE_VERSION


def test_a_worker_that_cannot_heartbeat_stops_before_it_is_presumed_dead(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    fenced: list[bool] = []
    runtime._fence = lambda: fenced.append(True)

    def unreachable(executor_id: str) -> None:
        raise ConnectionError("database unreachable")

    monkeypatch.setattr(runtime.store, "touch_worker", unreachable)
    with pytest.raises(ConnectionError):
        runtime.heartbeat()
    assert fenced == []  # a short outage is tolerated
    runtime._last_heartbeat -= runtime.settings.dead_worker_seconds / 2 + 1
    with pytest.raises(ConnectionError):
        runtime.heartbeat()
    # only a worker that shares its database can be presumed dead by another one
    assert fenced == ([True] if runtime.settings.is_postgres else [])


def test_liveness_is_judged_by_the_database_clock(settings: Settings) -> None:
    from app.effects.store import Store

    skewed = Store(settings.database_url, clock=lambda: 0.0)  # a machine 56 years behind
    skewed.migrate()
    skewed.touch_worker("alive")
    assert skewed.dead_workers("me", silent_for=60) == []
    time.sleep(0.05)
    assert skewed.dead_workers("me", silent_for=0.01) == ["alive"]
    assert skewed.live_workers(silent_for=60) == 1  # "alive"; "me" never beat
    skewed.dispose()


def test_destructive_issue_waits_for_approval_by_a_collaborator_with_write_access(
    runtime: Runtime, fake_github: FakeGitHub
) -> None:
    from tests.helpers import command_comment

    fake_github.permissions[("octo/repo", "lead")] = "maintain"
    fake_github.permissions[("octo/repo", "visitor")] = "read"
    waiting = ("autonomous", "nightshift:needs-approval")
    store_delivery(runtime, "a1", labeled_issue(number=40, body="- [ ] drop table old_sessions"))
    runtime.wake()
    wait_for(runtime, "a1")
    fake_github.issue("octo/repo", 40).labels.append("autonomous")
    store_delivery(
        runtime,
        "a2",
        command_comment("/nightshift approve", login="visitor", number=40, labels=waiting),
        event="issue_comment",
    )
    store_delivery(
        runtime,
        "a3",
        command_comment("/nightshift approve", login="stranger", number=40, labels=waiting),
        event="issue_comment",
    )
    store_delivery(
        runtime,
        "a4",
        command_comment("/nightshift approve", login="lead", number=40, labels=waiting),
        event="issue_comment",
    )
    runtime.wake()
    assert set(wait_for(runtime, "a2", "a3", "a4").values()) == {"done"}
    assert fake_github.effects == [
        "octo/repo#40:+nightshift:needs-approval",
        "octo/repo#40:comment:This issue mentions a destructive operation (`drop table`). "
        "An agent will take it only after someone with write access comments "
        "`/nightshift approve` here.",
        "octo/repo#40:comment:@visitor only people with write access to this repository can "
        "use `/nightshift`.",
        "octo/repo#40:comment:@stranger only people with write access to this repository can "
        "use `/nightshift`.",
        "octo/repo#40:-nightshift:needs-approval",
        "octo/repo#40:+nightshift:queued",
        "octo/repo#40:comment:Approved by @lead: queued for an agent.",
    ]
    asked = [r.path for r in fake_github.requests if r.path.endswith("/permission")]
    assert asked == [
        "/repos/octo/repo/collaborators/visitor/permission",
        "/repos/octo/repo/collaborators/stranger/permission",
        "/repos/octo/repo/collaborators/lead/permission",
    ]


def test_a_new_issue_failing_validation_gets_one_comment_for_opened_and_labeled(
    runtime: Runtime, fake_github: FakeGitHub
) -> None:
    labelled = labeled_issue(number=50, body="fix it")
    store_delivery(runtime, "n-opened", {**labelled, "action": "opened"})
    store_delivery(runtime, "n-labeled", labelled)
    runtime.wake()
    assert wait_for(runtime, "n-opened", "n-labeled") == {"n-opened": "done", "n-labeled": "done"}
    comments = [e for e in fake_github.effects if ":comment:" in e]
    assert len(comments) == 1


def test_a_worker_whose_pump_keeps_failing_reports_unhealthy(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert runtime.alive()

    def unreachable() -> dict[str, int]:
        raise ConnectionError("database unreachable")

    monkeypatch.setattr(runtime.store, "in_flight", unreachable)
    deadline = time.monotonic() + 20
    while runtime.alive():
        assert time.monotonic() < deadline, "still reported healthy"
        runtime.wake()
        time.sleep(0.05)
    monkeypatch.undo()
    deadline = time.monotonic() + 20
    while not runtime.alive():
        assert time.monotonic() < deadline, "did not recover"
        runtime.wake()
        time.sleep(0.05)
