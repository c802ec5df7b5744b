"""/metrics: the review's figures, read from the shared database at scrape time."""

from __future__ import annotations

from prometheus_client import generate_latest

from app.effects.store import Store
from app.metrics import Metrics

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
