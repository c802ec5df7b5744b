"""Estimates from the record, and the agents' record scores: table-driven."""

from __future__ import annotations

import pytest

from app.core.estimates import (
    NEUTRAL_SCORE,
    NO_HISTORY,
    Estimate,
    Sample,
    describe,
    estimate,
    format_duration,
    meaningful,
    record_score,
)

H = 3600.0


def sample(agent: str, seconds: float, *labels: str) -> Sample:
    return Sample(agent, frozenset(labels), seconds)


HISTORY = (
    sample("ada", 1 * H, "autonomous", "backend"),
    sample("ada", 3 * H, "backend", "nightshift:queued"),
    sample("ada", 10 * H, "frontend"),
    sample("bob", 2 * H, "backend"),
    sample("bob", 4 * H, "docs"),
)


@pytest.mark.parametrize(
    ("agent", "labels", "expected"),
    [
        pytest.param(
            "ada", ["autonomous", "backend"], Estimate(2 * H, 2, "agent-labels", "ada"), id="labels"
        ),
        pytest.param(
            "ada", ["Backend", "api"], Estimate(2 * H, 2, "agent-labels", "ada"), id="case-blind"
        ),
        pytest.param(
            "ada",
            ["backend", "frontend"],
            Estimate(3 * H, 3, "agent-labels", "ada"),
            id="any-label",
        ),
        pytest.param("ada", ["infra"], Estimate(3 * H, 3, "agent", "ada"), id="agent-fallback"),
        pytest.param(
            "ada",
            ["autonomous", "nightshift:queued"],
            Estimate(3 * H, 3, "agent", "ada"),
            id="only-generic-labels",
        ),
        pytest.param("bob", ["docs"], Estimate(4 * H, 1, "agent-labels", "bob"), id="one-sample"),
        pytest.param("cy", ["backend"], Estimate(None, 0, "none", "cy"), id="new-agent"),
        pytest.param(None, ["backend"], Estimate(2 * H, 3, "labels"), id="unassigned-labels"),
        pytest.param(None, ["infra"], Estimate(3 * H, 5, "all"), id="unassigned-all"),
    ],
)
def test_estimate(agent: str | None, labels: list[str], expected: Estimate) -> None:
    assert estimate(HISTORY, agent, labels, ignore=["autonomous"]) == expected


def test_no_history_at_all() -> None:
    assert estimate((), None, ["backend"]) == Estimate(None, 0, "none")
    assert describe(estimate((), None, ["backend"])) == NO_HISTORY


@pytest.mark.parametrize(
    ("value", "text"),
    [
        pytest.param(
            Estimate(2 * H, 2, "agent-labels", "ada"),
            "~2h (median of 2 past tasks by ada with these labels)",
            id="agent-labels",
        ),
        pytest.param(
            Estimate(2.5 * H, 1, "agent", "ada"),
            "~2h 30m (median of 1 past task by ada; none with these labels)",
            id="agent",
        ),
        pytest.param(
            Estimate(600, 3, "labels"),
            "~10m (median of 3 past tasks with these labels)",
            id="labels",
        ),
        pytest.param(
            Estimate(30 * H, 5, "all"), "~1d 6h (median of 5 past tasks; none with these labels)"
        ),
        pytest.param(Estimate(None, 0, "none", "cy"), "no history yet for cy", id="none-agent"),
        pytest.param(Estimate(None, 0, "none"), "no history yet", id="none"),
    ],
)
def test_describe(value: Estimate, text: str) -> None:
    assert describe(value) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (59.9, "59s"), (60, "1m"), (3600, "1h"), (3660, "1h 1m"), (86400, "1d"),
     (90000, "1d 1h"), (-5, "0s")],
)  # fmt: skip
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_meaningful_labels_drop_the_trigger_and_nightshifts_own() -> None:
    assert meaningful(["Autonomous", "nightshift:queued", "Backend"], ["autonomous"]) == {"backend"}


@pytest.mark.parametrize(
    ("merged", "clean", "lost", "score"),
    [
        pytest.param(0, 0, 0, NEUTRAL_SCORE, id="no-history-is-neutral"),
        pytest.param(1, 1, 0, 2 / 3, id="one-clean-merge"),
        pytest.param(10, 10, 0, 11 / 12, id="long-clean-record"),
        pytest.param(10, 0, 0, 1 / 12, id="always-reworked"),
        pytest.param(0, 0, 2, 1 / 4, id="lost-tasks"),
    ],
)
def test_record_score(merged: int, clean: int, lost: int, score: float) -> None:
    assert record_score(merged, clean, lost) == pytest.approx(score)


def test_a_long_good_record_beats_one_lucky_merge_and_a_newcomer() -> None:
    assert record_score(10, 10, 0) > record_score(1, 1, 0) > record_score(0, 0, 0)
    assert record_score(0, 0, 0) > record_score(3, 0, 1)
