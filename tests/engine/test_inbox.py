"""The journaled inbox (SQLite): acknowledged once written to the journal, moved into the
table when the ingress is idle, duplicates refused either way, nothing lost by a crash."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from app.effects.journal import Journal, encode, frame
from app.effects.store import NewDelivery, Store
from app.engine import inbox as inbox_module
from app.engine.inbox import Inbox
from tests.helpers import eventually, new_delivery


def delivery(n: int) -> NewDelivery:
    return new_delivery(f"j-{n}")


def refusing(
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
    refusal: Callable[[Sequence[NewDelivery]], BaseException | None],
) -> None:
    """The store's inserts raise what `refusal` gives for a batch (None: inserted)."""
    insert = store.insert_deliveries

    def insert_unless_refused(batch: Sequence[NewDelivery]) -> set[str]:
        error = refusal(batch)
        if error is not None:
            raise error
        return insert(batch)

    monkeypatch.setattr(store, "insert_deliveries", insert_unless_refused)


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'nightshift.db'}")
    store.migrate()
    yield store
    store.dispose()


@pytest.fixture
def journal_file(tmp_path: Path) -> Path:
    return tmp_path / "nightshift.db-inbox"


class Told:
    def __init__(self) -> None:
        self.ids: list[str] = []

    def __call__(self, items: Sequence[NewDelivery]) -> None:
        self.ids += [item.id for item in items]


def stored_ids(store: Store) -> set[str]:
    return {row.id for row in store.list_deliveries(limit=10_000)}


async def test_acknowledged_from_the_journal_then_moved_when_idle(
    sqlite_store: Store, journal_file: Path
) -> None:
    told = Told()
    inbox = Inbox(sqlite_store, on_stored=told, journal=Journal(journal_file))
    inbox.start()
    try:
        results = await asyncio.gather(*[inbox.put(delivery(n)) for n in range(20)])
        assert results == [True] * 20
        await eventually(lambda: stored_ids(sqlite_store) == {f"j-{n}" for n in range(20)})
        await eventually(lambda: journal_file.stat().st_size == 0)  # emptied once all moved
        assert sorted(told.ids) == sorted(f"j-{n}" for n in range(20))
        row = sqlite_store.delivery("j-3")
        assert row is not None and row[1] == delivery(3).body
    finally:
        inbox.stop()


async def test_duplicates_are_refused_journaled_or_moved(
    sqlite_store: Store, journal_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sqlite_store.insert_deliveries([delivery(1)])  # stored by an earlier run
    monkeypatch.setattr(inbox_module, "IDLE_AFTER", 60.0)  # nothing moves during the test
    inbox = Inbox(sqlite_store, journal=Journal(journal_file))
    inbox.start()
    try:
        assert await inbox.put(delivery(1)) is False  # in the table
        assert await inbox.put(delivery(2)) is True
        assert await inbox.put(delivery(2)) is False  # in the journal, not moved yet
        same = await asyncio.gather(*[inbox.put(delivery(3)) for _ in range(10)])
        assert sorted(same) == [False] * 9 + [True]
        assert inbox.unmoved == 2
    finally:
        inbox.stop()  # a clean stop moves what is left
    assert stored_ids(sqlite_store) == {"j-1", "j-2", "j-3"}


async def test_deliveries_waiting_in_the_journal_cost_the_garbage_collector_nothing(
    sqlite_store: Store, journal_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a burst leaves tens of thousands waiting; were each an object the collector tracks,
    # every full collection would walk them all while the event loop waits (~50 ms seen)
    monkeypatch.setattr(inbox_module, "IDLE_AFTER", 60.0)  # nothing moves during the test
    inbox = Inbox(sqlite_store, journal=Journal(journal_file))
    inbox.start()
    try:
        await asyncio.gather(*[inbox.put(delivery(n)) for n in range(500)])
        assert inbox.unmoved == 500
        gc.collect()
        assert gc.get_referents(inbox._unmoved) and not any(
            gc.is_tracked(waiting) for waiting in gc.get_referents(inbox._unmoved)
        )
    finally:
        inbox.stop()
    assert len(stored_ids(sqlite_store)) == 500  # and they move as before


async def test_burst_is_how_long_deliveries_have_come_in_without_a_pause(
    sqlite_store: Store, journal_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1_700_000_000.0]
    monkeypatch.setattr(inbox_module, "IDLE_AFTER", 60.0)  # a pause; nothing moves meanwhile
    monkeypatch.setattr(inbox_module, "LAG_LIMIT", 1_000.0)  # nor for having waited 40 s
    inbox = Inbox(
        sqlite_store, journal=Journal(journal_file), clock=lambda: now[0], monotonic=lambda: now[0]
    )
    inbox.start()
    try:
        assert (inbox.burst(), inbox.waiting()) == (0.0, 0.0)
        await inbox.put(delivery(1))
        now[0] += 20.0
        await inbox.put(delivery(2))
        now[0] += 20.0
        await inbox.put(delivery(3))
        assert (inbox.burst(), inbox.waiting()) == (40.0, 40.0)
        now[0] += 61.0  # a pause: no burst, though they still wait (as one the database
        assert (inbox.burst(), inbox.waiting()) == (0.0, 101.0)  # refuses would, for good)
        await inbox.put(delivery(4))
        assert inbox.burst() == 0.0  # a new burst begins
    finally:
        inbox.stop()


async def test_a_crash_leaves_the_journal_and_the_next_start_moves_it_first(
    sqlite_store: Store, journal_file: Path
) -> None:
    # what a killed process leaves: acknowledged records, and a torn one it never answered
    journal = Journal(journal_file)
    items = [replace(delivery(n), received_at=1_700_000_000.0) for n in range(5)]
    journal.append([encode(item) for item in items])
    journal.close()
    with open(journal_file, "ab") as file:
        file.write(b"".join(frame([encode(delivery(99))]))[:-3])
    told = Told()
    inbox = Inbox(sqlite_store, on_stored=told, journal=Journal(journal_file))
    inbox.start()  # returns once they are in the table
    try:
        assert stored_ids(sqlite_store) == {f"j-{n}" for n in range(5)}
        assert told.ids == [f"j-{n}" for n in range(5)]
        assert journal_file.stat().st_size == 0
        row = sqlite_store.list_deliveries(limit=10)[0]
        assert row.received_at == 1_700_000_000.0  # when it arrived, not when it moved
        assert await inbox.put(delivery(0)) is False
        assert await inbox.put(delivery(99)) is True  # the torn one was never acknowledged
    finally:
        inbox.stop()


async def test_a_database_that_refuses_a_move_keeps_the_deliveries_journaled(
    sqlite_store: Store, journal_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inbox_module, "RETRY_MOVE_AFTER", 0.05)
    refusals = {"left": 3}

    def locked(batch: Sequence[NewDelivery]) -> BaseException | None:
        if refusals["left"] == 0:
            return None
        refusals["left"] -= 1
        return OperationalError("INSERT", {}, Exception("database is locked"))

    refusing(sqlite_store, monkeypatch, locked)
    inbox = Inbox(sqlite_store, journal=Journal(journal_file))
    inbox.start()
    try:
        # the journal does not need the table
        assert await asyncio.gather(*[inbox.put(delivery(n)) for n in (1, 2, 3)]) == [True] * 3
        await eventually(lambda: stored_ids(sqlite_store) == {"j-1", "j-2", "j-3"})
        assert refusals["left"] == 0
        await eventually(lambda: journal_file.stat().st_size == 0)
    finally:
        inbox.stop()


async def test_one_row_the_database_refuses_does_not_hold_up_the_others(
    sqlite_store: Store, journal_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def bad_row(batch: Sequence[NewDelivery]) -> BaseException | None:
        rejected = any(item.id == "j-2" for item in batch)
        return ValueError("row rejected by the database") if rejected else None

    refusing(sqlite_store, monkeypatch, bad_row)
    inbox = Inbox(sqlite_store, journal=Journal(journal_file))
    inbox.start()
    try:
        assert await asyncio.gather(*[inbox.put(delivery(n)) for n in (1, 2, 3)]) == [True] * 3
        # one kept, tried again, never emptied out of the journal
        await eventually(lambda: (stored_ids(sqlite_store), inbox.unmoved) == ({"j-1", "j-3"}, 1))
        assert journal_file.stat().st_size > 0
    finally:
        inbox.stop()


async def test_under_a_burst_that_goes_on_the_oldest_are_moved_anyway(
    sqlite_store: Store, journal_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inbox_module, "IDLE_AFTER", 60.0)  # never idle
    now = {"t": 1000.0}
    inbox = Inbox(sqlite_store, journal=Journal(journal_file), clock=lambda: now["t"])
    inbox.start()
    try:
        await inbox.put(delivery(1))
        now["t"] += inbox_module.LAG_LIMIT + 1  # it has waited too long
        await inbox.put(delivery(2))  # the next group commit moves the oldest
        await eventually(lambda: "j-1" in stored_ids(sqlite_store))
    finally:
        inbox.stop()


async def test_a_disk_that_refuses_the_write_is_an_error_for_the_whole_group(
    sqlite_store: Store, journal_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = Journal(journal_file)

    def full(records: Sequence[bytes]) -> None:
        raise OSError(28, "No space left on device")

    inbox = Inbox(sqlite_store, journal=journal)
    inbox.start()
    monkeypatch.setattr(journal, "append", full)
    try:
        with pytest.raises(OSError, match="No space"):
            await inbox.put(delivery(1))  # the ingress answers 503: GitHub redelivers
        assert inbox.unmoved == 0
    finally:
        inbox.stop()
    assert stored_ids(sqlite_store) == set()


def test_the_store_answers_which_ids_it_has(store: Store) -> None:
    store.insert_deliveries([delivery(1), delivery(2)])
    assert store.known_deliveries(["j-1", "j-3", "j-2"]) == {"j-1", "j-2"}
    assert store.known_deliveries([]) == set()
    assert sorted(store.delivery_ids()) == ["j-1", "j-2"]
    # the reconciler asks about every failed delivery of three days at once
    many = [f"j-{n}" for n in range(3, 1203)]
    assert store.known_deliveries([*many, "j-1", "j-1"]) == {"j-1"}


@pytest.mark.parametrize(
    ("room", "moved"),
    [(4000, True), (None, True), (10**12, False)],
    ids=["disk nearly full", "disk unreadable", "room to spare"],
)
async def test_a_journal_that_crowds_the_disk_is_moved_under_load(
    sqlite_store: Store,
    journal_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    room: int | None,
    moved: bool,
) -> None:
    monkeypatch.setattr(inbox_module, "IDLE_AFTER", 60.0)  # never idle: a burst that goes on
    journal = Journal(journal_file)

    def free() -> int:
        if room is None:
            raise OSError(5, "Input/output error")
        return room

    monkeypatch.setattr(journal, "room", free)
    inbox = Inbox(sqlite_store, journal=journal)
    inbox.start()
    try:
        for n in range(12):  # about 150 bytes each
            assert await inbox.put(delivery(n)) is True
            if moved:  # once the journal takes more than a quarter of the room
                assert journal_file.stat().st_size <= (room or 0) // 4 + 200
        if moved:
            assert inbox.unmoved < 12
            # (read once the last move is over: the thread may be moving right now)
            await eventually(lambda: len(stored_ids(sqlite_store)) + inbox.unmoved == 12)
        else:  # they wait for the burst to pause
            assert inbox.unmoved == 12 and stored_ids(sqlite_store) == set()
    finally:
        inbox.stop()


@pytest.mark.parametrize("journaled", [True, False], ids=["journal", "table"])
async def test_a_listener_that_fails_does_not_stop_the_inbox(
    sqlite_store: Store, journal_file: Path, journaled: bool
) -> None:
    def told(items: Sequence[NewDelivery]) -> None:
        raise RuntimeError("the pump is gone")

    journal = Journal(journal_file) if journaled else None
    inbox = Inbox(sqlite_store, on_stored=told, journal=journal)
    inbox.start()
    try:
        assert await inbox.put(delivery(1)) is True
        await eventually(lambda: stored_ids(sqlite_store) == {"j-1"})
        assert await inbox.put(delivery(2)) is True  # still taking deliveries
        await eventually(lambda: stored_ids(sqlite_store) == {"j-1", "j-2"})
        assert inbox.alive
    finally:
        inbox.stop()
