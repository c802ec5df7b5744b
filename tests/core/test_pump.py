"""Which stored deliveries the pump starts: table-driven."""

from __future__ import annotations

import pytest

from app.core.pump import Room, Waiting, choose

NOW = 1_800_000_000.0


def waiting(*specs: str, age: float = 1.0) -> list[Waiting]:
    """`"id@partition"` each, oldest first, the first `age` seconds old."""
    return [
        Waiting(spec.split("@")[0], spec.split("@")[1], NOW - age + n * 0.01)
        for n, spec in enumerate(specs)
    ]


@pytest.mark.parametrize(
    ("queued", "in_flight", "room", "bursting", "expected"),
    [
        pytest.param([], {}, Room(4, 1), False, [], id="nothing-waits"),
        pytest.param(
            waiting("a@o/x", "b@o/y"), {}, Room(4, 1), False, ["a", "b"], id="room-for-all"
        ),
        pytest.param(
            waiting("a@o/x", "b@o/y", "c@o/z"), {}, Room(2, 4), False, ["a", "b"], id="oldest-first"
        ),
        pytest.param(
            waiting("a@o/x", "b@o/y"),
            {"o/z": 2},
            Room(2, 4),
            False,
            [],
            id="full-with-others",
        ),
        pytest.param(
            waiting("a@o/x", "b@o/x", "c@o/y"),
            {},
            Room(4, 1),
            False,
            ["a", "c"],
            id="one-per-repository-the-next-waits",
        ),
        pytest.param(
            waiting("a@o/x", "b@o/y"),
            {"o/x": 1},
            Room(4, 1),
            False,
            ["b"],
            id="a-repository-already-running-is-skipped",
        ),
        pytest.param(
            waiting("a@o/x", "b@o/x", "c@o/x", "d@o/y"),
            {"o/x": 2},
            Room(16, 4),
            False,
            ["a", "b", "d"],
            id="per-partition-counts-what-runs",
        ),
        pytest.param(
            waiting("a@o/x", "b@o/y"), {}, Room(4, 1), True, [], id="burst-holds-new-ones"
        ),
    ],
)
def test_choose(
    queued: list[Waiting],
    in_flight: dict[str, int],
    room: Room,
    bursting: bool,
    expected: list[str],
) -> None:
    chosen = choose(queued, in_flight, room, bursting=bursting, now=NOW, yield_at_most=30.0)
    assert [delivery.id for delivery in chosen] == expected


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        pytest.param(29.0, [], id="held-while-the-oldest-has-waited-less"),
        pytest.param(30.0, ["a", "b"], id="started-once-the-oldest-has-waited-long-enough"),
    ],
)
def test_a_burst_holds_deliveries_back_for_a_while_only(age: float, expected: list[str]) -> None:
    queued = waiting("a@o/x", "b@o/y", age=age)
    chosen = choose(queued, {}, Room(4, 1), bursting=True, now=NOW, yield_at_most=30.0)
    assert [delivery.id for delivery in chosen] == expected


def test_in_flight_is_not_changed() -> None:
    in_flight = {"o/x": 1}
    choose(waiting("a@o/y"), in_flight, Room(4, 1), bursting=False, now=NOW, yield_at_most=30.0)
    assert in_flight == {"o/x": 1}
