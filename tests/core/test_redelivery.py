"""Which failed deliveries are redelivered: table-driven."""

from __future__ import annotations

import pytest

from app.core.redelivery import HookDelivery, Redelivery, Requested, plan

NOW = 1_800_000_000.0
HOUR = 3600.0


def attempt(id: int, guid: str, status: int, age_hours: float = 1) -> HookDelivery:
    return HookDelivery(
        id=id, guid=guid, delivered_at=NOW - age_hours * HOUR, status_code=status, event="issues"
    )


@pytest.mark.parametrize(
    ("attempts", "stored", "requested", "expected"),
    [
        pytest.param(
            [attempt(1, "a", 502)], set(), {}, [Redelivery(1, "a", "issues")], id="failed-once"
        ),
        pytest.param([attempt(1, "a", 200)], set(), {}, [], id="succeeded"),
        pytest.param(
            [attempt(1, "a", 502), attempt(2, "a", 202)],
            set(),
            {},
            [],
            id="failed-then-succeeded",
        ),
        pytest.param(
            [attempt(1, "a", 0), attempt(2, "a", 503)],
            set(),
            {},
            [Redelivery(2, "a", "issues")],
            id="newest-attempt-is-redelivered",
        ),
        pytest.param([attempt(1, "a", 0)], {"a"}, {}, [], id="we-stored-it-github-timed-out"),
        pytest.param(
            [attempt(1, "a", 500)],
            set(),
            {"a": Requested(1, 1)},
            [],
            id="asked-and-github-has-not-redelivered-yet",
        ),
        pytest.param(
            [attempt(1, "a", 500), attempt(2, "a", 502, age_hours=0.5)],
            set(),
            {"a": Requested(1, 1)},
            [Redelivery(2, "a", "issues")],
            id="our-redelivery-failed-too-ask-again",
        ),
        pytest.param(
            [attempt(1, "a", 500), attempt(2, "a", 502, age_hours=0.5)],
            set(),
            {"a": Requested(1, 3)},
            [],
            id="at-most-three-requests",
        ),
        pytest.param(
            [attempt(1, "a", 500, age_hours=73)], set(), {}, [], id="older-than-three-days"
        ),
        pytest.param(
            [attempt(3, "b", 500), attempt(1, "a", 500)],
            set(),
            {},
            [Redelivery(1, "a", "issues"), Redelivery(3, "b", "issues")],
            id="several-in-order",
        ),
    ],
)
def test_plan(
    attempts: list[HookDelivery],
    stored: set[str],
    requested: dict[str, Requested],
    expected: list[Redelivery],
) -> None:
    assert plan(attempts, now=NOW, stored=stored, already_requested=requested) == expected


def test_from_api_reads_githubs_shape_and_skips_broken_entries() -> None:
    good = {
        "id": 12,
        "guid": "0b989ba4",
        "delivered_at": "2019-06-03T00:57:16Z",
        "redelivery": False,
        "duration": 0.27,
        "status": "OK",
        "status_code": 200,
        "event": "issues",
        "action": "opened",
        "installation_id": 123,
        "repository_id": 456,
    }
    parsed = HookDelivery.from_api(good)
    assert parsed is not None
    assert (parsed.id, parsed.guid, parsed.status_code, parsed.succeeded) == (
        12,
        "0b989ba4",
        200,
        True,
    )
    assert HookDelivery.from_api({"id": 1}) is None
