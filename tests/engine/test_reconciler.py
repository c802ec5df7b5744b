"""Missed deliveries: listed from GitHub and redelivered once each."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.effects.github import GitHubApp
from app.effects.store import NewDelivery, Store
from app.engine.reconciler import reconcile
from tests.fakes.github import FakeGitHub
from tests.helpers import app_client

NOW = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)


def github(fake: FakeGitHub) -> GitHubApp:
    return app_client(fake)


def test_redelivers_what_failed_while_down_once_each(store: Store, fake_github: FakeGitHub) -> None:
    hour = timedelta(hours=1)
    failed = fake_github.add_hook_delivery("failed-guid", 502, NOW - 2 * hour)
    fake_github.add_hook_delivery("ok-guid", 202, NOW - 2 * hour)
    fake_github.add_hook_delivery("timeout-but-stored", 0, NOW - hour)
    fake_github.add_hook_delivery("too-old", 500, NOW - 80 * hour)
    store.insert_deliveries(
        [NewDelivery("timeout-but-stored", "issues", "labeled", "o/r", 1, b"{}")]
    )
    result = reconcile(github(fake_github), store, NOW.timestamp())
    assert result.redelivered == ("failed-guid",)
    assert fake_github.effects == ["redeliver:failed-guid"]
    assert f"POST /app/hook/deliveries/{failed}/attempts" in fake_github.writes()
    listing = [r for r in fake_github.requests if r.path == "/app/hook/deliveries"]
    assert listing[0].auth.startswith("Bearer ")  # the App's JWT, not an installation token
    assert listing[0].params == {"per_page": "100"}

    # GitHub has not made the redelivery yet (or it is in flight): nothing new to ask
    again = reconcile(github(fake_github), store, NOW.timestamp() + 3600)
    assert again.redelivered == ()
    assert fake_github.effects == ["redeliver:failed-guid"]
    (entry,) = [e for e in store.audit_log() if e.what.startswith("redeliver")]
    assert entry.delivery_id == "failed-guid"


def test_follows_pagination(store: Store, fake_github: FakeGitHub) -> None:
    for index in range(150):
        fake_github.add_hook_delivery(f"g{index}", 500, NOW - timedelta(minutes=index + 1))
    result = reconcile(github(fake_github), store, NOW.timestamp())
    assert result.examined == 150
    assert len(result.redelivered) == 150
    pages = [r.params for r in fake_github.requests if r.path == "/app/hook/deliveries"]
    assert pages == [{"per_page": "100"}, {"per_page": "100", "cursor": "100"}]


def test_a_refused_redelivery_is_tried_again_next_pass(
    store: Store, fake_github: FakeGitHub
) -> None:
    hook_id = fake_github.add_hook_delivery("g", 500, NOW - timedelta(hours=1))
    fake_github.fail("POST", rf"/app/hook/deliveries/{hook_id}/attempts", 422)
    first = reconcile(github(fake_github), store, NOW.timestamp())
    assert first.failed == ("g",)
    second = reconcile(github(fake_github), store, NOW.timestamp())
    assert second.redelivered == ("g",)


def test_a_redelivery_that_fails_too_is_asked_for_again_up_to_three_times(
    store: Store, fake_github: FakeGitHub
) -> None:
    fake_github.add_hook_delivery("g", 502, NOW - timedelta(hours=5))
    for hour in range(5):
        now = NOW + timedelta(hours=hour)
        reconcile(github(fake_github), store, now.timestamp())
        # GitHub makes the redelivery we asked for, and we are still unreachable
        fake_github.add_hook_delivery("g", 503, now + timedelta(minutes=1))
    assert fake_github.effects == ["redeliver:g"] * 3


def test_two_processes_asking_for_the_same_attempt_ask_once(store: Store) -> None:
    assert store.mark_redelivery("g", 10)
    assert not store.mark_redelivery("g", 10)
    assert store.mark_redelivery("g", 11)  # a newer failed attempt
    assert store.redelivery_requests(["g"]) == {"g": (11, 2)}
