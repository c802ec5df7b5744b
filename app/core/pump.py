"""Which stored deliveries the pump starts now (pure).

The pump (app/engine/runtime.py) reads what is in flight and what waits, asks `choose`,
starts the workflows it names and marks them dispatched. The rules:

- no more than `room` at once in all (the engine's workers, and what waits for them);
- no more than `per_partition` of one repository (or, for events without one, of one
  installation) at once, so that a burst in one repository does not hold up every other
  repository's events; the oldest first;
- while deliveries are coming in without a pause (a burst, SQLite only), nothing starts,
  unless the oldest has waited `yield_at_most` seconds: the ingress keeps the CPU, and
  nothing waits for ever under a burst that goes on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Waiting:
    """A stored delivery not started yet; the pump reads them oldest first."""

    id: str
    partition: str  # its repository's full name, else its installation
    received_at: float


@dataclass(frozen=True)
class Room:
    """How many may be started and unfinished at once: in all, and of one partition."""

    total: int
    per_partition: int

    def free(self, in_flight: Mapping[str, int]) -> int:
        """How many more may start, with `in_flight` (by partition) started and unfinished."""
        return self.total - sum(in_flight.values())


def choose(
    waiting: Sequence[Waiting],
    in_flight: Mapping[str, int],
    room: Room,
    *,
    bursting: bool,
    now: float,
    yield_at_most: float,
) -> list[Waiting]:
    """The deliveries to start now, oldest first. `in_flight` counts the started and
    unfinished ones by partition."""
    free = room.free(in_flight)
    if free <= 0 or not waiting:
        return []
    if bursting and now - waiting[0].received_at < yield_at_most:
        return []
    running = dict(in_flight)
    chosen: list[Waiting] = []
    for delivery in waiting:
        if len(chosen) >= free:
            break
        if running.get(delivery.partition, 0) >= room.per_partition:
            continue
        running[delivery.partition] = running.get(delivery.partition, 0) + 1
        chosen.append(delivery)
    return chosen
