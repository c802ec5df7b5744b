"""/metrics: the review's figures, read from the shared database at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from prometheus_client import generate_latest

from app.effects.store import Store
from app.effects.tables import escalations
from app.metrics import RATE_LIMITS, Metrics, observe_rate_limit

REPO = "octo/repo"


def scrape(store: Store) -> str:
    return generate_latest(Metrics(store).registry).decode()


def test_tasks_escalations_and_the_review_record(store: Store) -> None:
    store.transition(REPO, 1, None, "done", None)
    store.transition(REPO, 2, None, "blocked", "in_review")
    store.transition(REPO, 3, None, "in_review", None)
    # PR 11 merged first time; PR 12 needed two rounds and is blocked; PR 13 in review
    for number, task in ((11, 1), (12, 2), (13, 3)):
        store.record_pull(REPO, number, task, f"{number}" * 20, "agent", fork=False)
    store.mark_merged(REPO, 11, "m" * 40)
    assert store.count_fix_round(REPO, 12, "a" * 40)
    assert not store.count_fix_round(REPO, 12, "a" * 40)  # the same head counts once
    assert store.count_fix_round(REPO, 12, "b" * 40)
    store.count_ci_retry(REPO, "a" * 40, "900/1")
    store.count_ci_retry(REPO, "a" * 40, "900/1")  # a redelivery counts once
    store.record_escalation("k1", REPO, 2, "deferred", "fix-rounds", "two rounds")
    store.record_escalation("k2", REPO, 3, "immediate", "security", "a secret")
    text = scrape(store)
    for line in (
        'nightshift_tasks{state="done"} 1.0',
        'nightshift_tasks{state="blocked"} 1.0',
        'nightshift_tasks{state="in_review"} 1.0',
        'nightshift_escalations_open{kind="fix-rounds",level="deferred"} 1.0',
        'nightshift_escalations_open{kind="security",level="immediate"} 1.0',
        "nightshift_pulls_reviewed 3.0",
        "nightshift_pulls_merged 1.0",
        "nightshift_fix_rounds 2.0",
        "nightshift_ci_retries 1.0",
        "nightshift_handoff_quality 1.0",
    ):
        assert line in text, line
    rework = next(line for line in text.splitlines() if line.startswith("nightshift_rework_rate"))
    assert abs(float(rework.split()[1]) - 1 / 3) < 1e-9


def test_an_empty_database_has_no_rates_to_divide(store: Store) -> None:
    text = scrape(store)
    assert "nightshift_rework_rate 0.0" in text
    assert "nightshift_handoff_quality 0.0" in text


class Clock:
    """The store's clock, moved by hand: every transition is recorded at `now`."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def samples(text: str, name: str) -> dict[str, float]:
    """The samples of one metric, keyed by the rest of the line (labels and suffix)."""
    found = {}
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            found[key.removeprefix(name)] = float(value)
    return found


def night(store: Store) -> Clock:
    """Task 1 accepted, requeued once, merged an hour after accept, then done; task 2
    proposed and accepted in one move, merged 20 minutes later; task 3 queued, never done;
    task 4 proposed and rejected (never accepted)."""
    clock = Clock()
    store.clock = clock
    start = clock.now

    def at(offset: float, number: int, src: str | None, dst: str, event: str) -> None:
        clock.now = start + offset
        moved = store.transition(REPO, number, src, dst, None, event=event, reason="test")
        assert moved == "moved", (number, src, dst)

    at(0, 1, None, "proposed", "propose")
    at(100, 1, "proposed", "queued", "accept")
    at(200, 1, "queued", "assigned", "assign")
    at(400, 1, "assigned", "queued", "requeue")  # does not restart the cycle
    at(500, 1, "queued", "assigned", "assign")
    at(600, 1, "assigned", "in_progress", "acknowledge")
    at(1600, 1, "in_progress", "in_review", "open_pr")
    at(3700, 1, "in_review", "merged", "merge")
    at(9000, 1, "merged", "done", "finish")  # the cycle ended at merged
    at(0, 2, None, "queued", "accept")
    at(60, 2, "queued", "assigned", "assign")
    at(120, 2, "assigned", "in_progress", "acknowledge")
    at(600, 2, "in_progress", "in_review", "open_pr")
    at(1200, 2, "in_review", "merged", "merge")
    at(50, 3, None, "queued", "accept")
    at(0, 4, None, "proposed", "propose")
    at(30, 4, "proposed", "rejected", "reject")
    return clock


def test_cycle_time_from_accept_to_merged(store: Store) -> None:
    night(store)
    cycle = samples(scrape(store), "nightshift_task_cycle_seconds")
    # task 1: 3600 s (accept at 100, merged at 3700); task 2: 1200 s
    assert cycle == {
        '_bucket{le="300.0"}': 0,
        '_bucket{le="900.0"}': 0,
        '_bucket{le="1800.0"}': 1,
        '_bucket{le="3600.0"}': 2,
        '_bucket{le="7200.0"}': 2,
        '_bucket{le="14400.0"}': 2,
        '_bucket{le="28800.0"}': 2,
        '_bucket{le="43200.0"}': 2,
        '_bucket{le="86400.0"}': 2,
        '_bucket{le="172800.0"}': 2,
        '_bucket{le="+Inf"}': 2,
        "_count": 2,
        "_sum": 4800,
    }


def test_a_task_done_without_a_merge_ends_its_cycle_at_done(store: Store) -> None:
    clock = Clock()
    store.clock = clock
    store.transition(REPO, 7, None, "queued", None, event="accept")
    clock.now += 200_000  # beyond the largest bucket
    store.transition(REPO, 7, "queued", "done", None, event="finish")
    cycle = samples(scrape(store), "nightshift_task_cycle_seconds")
    assert cycle['_bucket{le="172800.0"}'] == 0
    assert cycle['_bucket{le="+Inf"}'] == 1
    assert cycle["_sum"] == 200_000


def test_time_in_each_state_counts_completed_stays(store: Store) -> None:
    night(store)
    stays = samples(scrape(store), "nightshift_task_state_seconds")
    # queued: task 1 for 100 and 100 s (before and after the requeue), task 2 for 60 s;
    # task 3 is still queued, and that stay is not counted
    assert stays['_count{state="queued"}'] == 3
    assert stays['_sum{state="queued"}'] == 260
    assert stays['_bucket{le="60.0",state="queued"}'] == 1
    assert stays['_bucket{le="300.0",state="queued"}'] == 3
    # in_review: 2100 s (task 1) and 600 s (task 2)
    assert stays['_count{state="in_review"}'] == 2
    assert stays['_sum{state="in_review"}'] == 2700
    assert stays['_bucket{le="900.0",state="in_review"}'] == 1
    assert stays['_bucket{le="3600.0",state="in_review"}'] == 2
    assert stays['_bucket{le="+Inf",state="in_review"}'] == 2
    # merged: task 1 for 5300 s; task 2 is still merged
    assert stays['_count{state="merged"}'] == 1
    assert stays['_sum{state="merged"}'] == 5300
    assert stays['_count{state="proposed"}'] == 2  # tasks 1 and 4
    # nobody left done or rejected: no series for them
    assert not any("done" in key or "rejected" in key for key in stays)


def test_blocked_tasks_and_escalations_ever_raised(store: Store) -> None:
    store.transition(REPO, 1, None, "blocked", "in_review")
    store.transition(REPO, 2, None, "blocked", "queued")
    store.transition(REPO, 3, None, "in_progress", None)
    store.record_escalation("k1", REPO, 1, "deferred", "conflict", "a conflict")
    store.record_escalation("k2", REPO, 2, "deferred", "conflict", "another")
    store.record_escalation("k3", REPO, 3, "immediate", "security", "a secret")
    # no store method resolves an escalation yet: mark one as the report's records would
    with store.engine.begin() as connection:
        connection.execute(
            sa.update(escalations).where(escalations.c.key == "k1").values(resolved_at=1.0)
        )
    text = scrape(store)
    for line in (
        "nightshift_tasks_blocked 2.0",
        'nightshift_escalations_open{kind="conflict",level="deferred"} 1.0',
        'nightshift_escalations_raised{kind="conflict",level="deferred"} 2.0',
        'nightshift_escalations_raised{kind="security",level="immediate"} 1.0',
    ):
        assert line in text, line


def test_an_empty_database_reads_as_zeros(store: Store) -> None:
    text = scrape(store)
    assert "nightshift_tasks_blocked 0.0" in text
    assert "nightshift_task_cycle_seconds_count 0.0" in text
    assert 'nightshift_task_cycle_seconds_bucket{le="+Inf"} 0.0' in text
    assert "nightshift_task_state_seconds_count" not in text  # no state, no series
    assert "# TYPE nightshift_task_state_seconds histogram" in text


@pytest.fixture
def rate_limits() -> Iterator[None]:
    RATE_LIMITS.clear()
    yield
    RATE_LIMITS.clear()


@pytest.mark.usefixtures("rate_limits")
def test_the_github_rate_limit_left_is_the_latest_seen() -> None:
    registry = Metrics().registry  # no store needed: it is this process's own figure
    assert "nightshift_github_rate_limit_remaining{" not in generate_latest(registry).decode()
    observe_rate_limit({"X-RateLimit-Remaining": "4999", "X-RateLimit-Resource": "core"})
    observe_rate_limit({"x-ratelimit-remaining": "4998"})  # no resource: core
    observe_rate_limit({"x-ratelimit-remaining": "29", "x-ratelimit-resource": "search"})
    observe_rate_limit({"content-type": "application/json"})  # no header: unchanged
    observe_rate_limit({"x-ratelimit-remaining": "lots"})  # not a number: unchanged
    text = generate_latest(registry).decode()
    assert 'nightshift_github_rate_limit_remaining{resource="core"} 4998.0' in text
    assert 'nightshift_github_rate_limit_remaining{resource="search"} 29.0' in text
