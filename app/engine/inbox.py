"""The durable inbox: deliveries are committed in groups before they are acknowledged.

Every verified delivery waits for a commit before its 2xx. Deliveries that arrive while a
commit is running share the next one (group commit), so one write and one sync serve a
whole burst instead of one per request, and a process killed right after a 2xx still has
every acknowledged delivery on restart.

Where the group is committed:
- without a journal (PostgreSQL, where several ingress processes share the database): the
  `deliveries` table, in one transaction;
- with a journal (SQLite, one process): the journal file (app/effects/journal.py), after
  checking that the ids are neither in the table nor in the journal already (a Bloom
  filter of the stored ids spares a query for a new id). The inbox thread moves journaled
  deliveries into the table when no delivery has come for `IDLE_AFTER` seconds; under a
  burst that goes on, it also moves `LAG_BATCH` (or as many as were just journaled)
  after each group commit once the oldest has waited `LAG_LIMIT` seconds or the disk has
  less than `ROOM_PER_JOURNAL_BYTE` times the journal's size free (the table needs about
  as much room again to take them), until the journal is empty again. The bodies stay in the
  file (and the page cache) until they are moved: memory does not grow with a burst.
  So a burst costs the ingress one sequential write per group, the table inserts (as
  much CPU again) come after it, and under a load that never stops the workers (which
  read the table) still get deliveries, while the ingress slows to what the table
  takes. At start-up, whatever the journal holds is moved before anything new is
  accepted; on a clean stop, what is left is moved too.

`on_stored` is told of deliveries once they are in the table.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Final

from rbloom import Bloom

from app.effects.journal import Journal, encode
from app.effects.store import NewDelivery, Store

log = logging.getLogger("nightshift")

MAX_BATCH = 256
PUT_TIMEOUT = 8.0
IDLE_AFTER = 0.05  # seconds without a delivery before journaled ones are moved
MOVE_BATCH = 256  # deliveries moved per transaction when idle
LAG_LIMIT = 30.0  # seconds: under a burst that goes on, older deliveries are moved anyway,
LAG_BATCH = 64  # this many (or as many as were just journaled) after each group commit
ROOM_PER_JOURNAL_BYTE = 4  # the disk has less free than this times the journal: moved too
RETRY_MOVE_AFTER = 1.0  # the database refused a move: the deliveries wait in the journal
STOP_MOVING_AFTER = 5.0  # on stop, how long to keep moving (the rest moves at next start)
SEEN_CAPACITY = 1_000_000  # ids the duplicate filter holds at 1% false positives, at least


# A journaled delivery waiting for the table: NewDelivery's fields in their order (the body
# empty when it stays in the journal), as a plain tuple of plain values, which the garbage
# collector stops tracking (not so a NamedTuple, nor an object). As objects, the tens of
# thousands a burst leaves here made each full collection hold the event loop for ~50 ms.
_Held = tuple[str, str, str | None, str | None, int | None, bytes, str, float | None]
_ID: Final = 0  # where NewDelivery's fields are in a _Held
_RECEIVED_AT: Final = 7


def _held(item: NewDelivery, body: bytes) -> _Held:
    return (
        item.id,
        item.event,
        item.action,
        item.repository,
        item.installation_id,
        body,
        item.status,
        item.received_at,
    )


@dataclass(slots=True)
class _Pending:
    item: NewDelivery
    future: asyncio.Future[bool]
    loop: asyncio.AbstractEventLoop


class Inbox:
    """`await inbox.put(delivery)` returns True when stored now, False for a duplicate GUID."""

    def __init__(
        self,
        store: Store,
        on_stored: Callable[[Sequence[NewDelivery]], None] | None = None,
        journal: Journal | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.on_stored = on_stored
        self.journal = journal
        self.clock = clock
        self.monotonic = monotonic
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        # journaled and not in the table yet, oldest first (only the inbox thread uses these)
        self._unmoved: list[_Held] = []
        # their ids, and where each one's record starts in the journal (None: read whole
        # at start-up, body and all)
        self._starts: dict[str, int | None] = {}
        self._retry_at = 0.0
        self._seen: Bloom | None = None  # every id stored or journaled (journal mode)
        # when deliveries last came in one after another, and when that run of them began
        self._last_journaled = float("-inf")
        self._burst_began = 0.0

    def start(self) -> None:
        """Start the inbox thread; with a journal, first move what it holds (a crash or a
        stop left it there), so that the table has every acknowledged delivery by the
        time the server listens."""
        if self._thread is None:
            if self.journal is not None:
                self._recover(self.journal)
            self._thread = threading.Thread(target=self._run, name="nightshift-inbox", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=STOP_MOVING_AFTER + 5)
            if self._thread.is_alive():  # stuck on the database: it may still write the file
                log.warning("the inbox thread did not stop; its journal stays open")
                return
            self._thread = None
        if self.journal is not None:
            self.journal.close()
            self.journal = None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def unmoved(self) -> int:
        """Deliveries acknowledged and journaled, not yet in the table."""
        return len(self._unmoved)

    def waiting(self) -> float:
        """How long the oldest journaled delivery has waited for the table (0 when none)."""
        oldest = self._unmoved[:1]  # one atomic read: the inbox thread changes the list
        received = oldest[0][_RECEIVED_AT] if oldest else None
        return max(0.0, self.clock() - received) if received is not None else 0.0

    def burst(self) -> float:
        """How long deliveries have been coming in with no pause of `IDLE_AFTER` between
        them (0 when they are not coming in now, or without a journal). Any thread.

        Not `waiting()`: a delivery the database keeps refusing stays journaled, and must
        not make every later one look like part of a burst."""
        now = self.monotonic()
        return 0.0 if self._paused(now) else max(0.0, now - self._burst_began)

    def _paused(self, now: float) -> bool:
        """No delivery was journaled for `IDLE_AFTER`: a burst, if any, is over."""
        return now - self._last_journaled > IDLE_AFTER

    async def put(self, item: NewDelivery, timeout: float | None = None) -> bool:
        """Store one delivery; raises when it cannot be stored within `timeout` seconds
        (GitHub gives up after 10 s, so the ingress must answer before that)."""
        future = self.submit(item, asyncio.get_running_loop())
        return await asyncio.wait_for(future, timeout if timeout is not None else PUT_TIMEOUT)

    def submit(self, item: NewDelivery, loop: asyncio.AbstractEventLoop) -> asyncio.Future[bool]:
        """`put` without a task: the future (of `loop`, the running one) resolves to True when
        stored now, False for a duplicate; the caller bounds the wait (`PUT_TIMEOUT`)."""
        future: asyncio.Future[bool] = loop.create_future()
        if self.journal is not None and item.received_at is None:
            item = replace(item, received_at=self.clock())  # moved into the table later
        self._queue.put(_Pending(item, future, loop))
        return future

    # the inbox thread ---------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=IDLE_AFTER if self._unmoved else None)
            except queue.Empty:  # idle: move what waits, a batch at a time
                self._move(MOVE_BATCH)
                continue
            if first is None:
                self._finish()
                return
            batch = [first]
            stopping = False
            while len(batch) < MAX_BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                batch.append(more)
            if self.journal is not None:
                journaled = self._journal(self.journal, batch)
                if self._unmoved and (self.waiting() > LAG_LIMIT or self._cramped(self.journal)):
                    # a burst that goes on must not starve the workers, nor fill the disk:
                    # from now on at least as many are moved as were journaled, until the
                    # journal is empty again
                    self._move(max(LAG_BATCH, journaled))
            else:
                self._commit(batch)
            if stopping:
                self._finish()
                return

    def _cramped(self, journal: Journal) -> bool:
        """The journal is taking the room the table will need to take its deliveries in."""
        try:
            return journal.room() < ROOM_PER_JOURNAL_BYTE * journal.size()
        except OSError:
            return True  # the disk cannot even say: move while moving still works

    def _recover(self, journal: Journal) -> None:
        """Deliveries acknowledged before a crash or a stop: moved before anything new; and
        the filter of the ids already stored."""
        try:
            self._seen = _filter_of(self.store.delivery_ids())
        except Exception:
            log.exception("could not read the stored delivery ids; every id is looked up")
            self._seen = None
        try:
            items = journal.read()
        except OSError:
            # never emptied, then: what it holds is kept for a person to look at
            log.exception(
                "the inbox journal %s cannot be read; deliveries go straight to the database",
                journal.path,
            )
            self.journal = None
            return
        if items:
            log.warning("moving %d delivery(ies) left in the inbox journal", len(items))
        self._remember([_held(item, item.body) for item in items], [None] * len(items))
        while self._unmoved and self._move(MOVE_BATCH):
            pass

    def _finish(self) -> None:
        deadline = time.monotonic() + STOP_MOVING_AFTER
        while self._unmoved and time.monotonic() < deadline and self._move(MOVE_BATCH):
            pass
        if self._unmoved:
            log.warning("%d journaled delivery(ies) move at the next start", len(self._unmoved))

    def _whole(self, held: _Held) -> NewDelivery:
        """The delivery with its body, read back from the journal if it was left there."""
        id_, event, action, repository, installation_id, body, status, received_at = held
        start = self._starts[id_]
        if start is not None and self.journal is not None:  # else recovered whole at start-up
            body = self.journal.body(start)
        return NewDelivery(
            id_, event, action, repository, installation_id, body, status, received_at
        )

    def _remember(self, items: Sequence[_Held], starts: Sequence[int | None]) -> None:
        self._unmoved.extend(items)
        self._starts.update(zip((held[_ID] for held in items), starts, strict=True))
        if self._seen is not None:
            self._seen.update(held[_ID] for held in items)

    def _stored_already(self, ids: Sequence[str]) -> set[str]:
        """Which ids the table has. Only the ids the filter may have seen are looked up: a
        new delivery costs no query (the filter has no false negatives)."""
        maybe = [i for i in ids if i not in self._starts]
        if self._seen is not None:
            maybe = [i for i in maybe if i in self._seen]
        return self.store.known_deliveries(maybe) if maybe else set()

    def _journal(self, journal: Journal, batch: list[_Pending]) -> int:
        """Journal the new deliveries of `batch` and answer every waiter; how many were new."""
        ids = [pending.item.id for pending in batch]
        try:
            known = self._starts.keys() & set(ids) | self._stored_already(ids)
            fresh: list[_Pending] = []
            outcomes: list[bool | BaseException] = []
            for pending in batch:
                new = pending.item.id not in known
                if new:
                    known.add(pending.item.id)  # a repeat within the batch is a duplicate
                    fresh.append(pending)
                outcomes.append(new)
            starts = journal.append([encode(p.item) for p in fresh]) if fresh else []
        except Exception as exc:  # the database or the disk: nobody gets a 2xx
            log.exception("could not journal %d delivery(ies)", len(batch))
            _settle(batch, [exc] * len(batch))
            return 0
        now = self.monotonic()
        if self._paused(now):
            self._burst_began = now
        self._last_journaled = now
        # the bodies stay in the file (the page cache): memory does not grow with a burst
        self._remember([_held(p.item, b"") for p in fresh], starts)
        _settle(batch, outcomes)  # after the books: a waiter told "stored" finds it counted
        return len(fresh)

    def _move(self, limit: int) -> bool:
        """Move up to `limit` journaled deliveries into the table; False when none could be
        (they stay journaled and are tried again). The journal is emptied once all are in."""
        if time.monotonic() < self._retry_at:
            return False
        chunk = self._unmoved[:limit]
        try:
            rows = [self._whole(item) for item in chunk]
            refused: dict[int, BaseException] = {}
        except OSError:
            log.exception("could not read journaled bodies back; they are tried again")
            self._retry_at = time.monotonic() + RETRY_MOVE_AFTER
            return False
        try:
            inserted = self.store.insert_deliveries(rows)
        except Exception as exc:
            # locked or gone: the whole chunk waits; a row refused: the others go on
            whole = len(rows) == 1 or self.store.unavailable(exc)
            inserted, refused = (set(), {0: exc}) if whole else self._insert_apart(rows)
            if whole or len(refused) == len(rows):
                log.error(
                    "could not move %d journaled delivery(ies) into the database (%s); "
                    "they stay in the journal and are tried again",
                    len(chunk),
                    exc,
                )
                self._retry_at = time.monotonic() + RETRY_MOVE_AFTER
                return False
            log.error(
                "the database refused %s; it stays in the journal and is tried again",
                ", ".join(chunk[index][_ID] for index in refused),
            )
        stuck = [chunk[index] for index in refused]
        self._unmoved[: len(chunk)] = stuck
        kept = {held[_ID] for held in stuck}
        for held in chunk:
            if held[_ID] not in kept:
                del self._starts[held[_ID]]
        if not self._unmoved and self.journal is not None:
            try:
                self.journal.clear()
            except OSError:
                log.exception("could not empty the inbox journal; its deliveries are stored")
        fresh = [row for row in rows if row.id in inserted]
        self._tell(fresh)
        return True

    def _commit(self, batch: list[_Pending]) -> None:
        items = [pending.item for pending in batch]
        refused: dict[int, BaseException] = {}
        try:
            inserted = self.store.insert_deliveries(items)
        except Exception as exc:  # the database is down (the waiters get the error), or a row
            inserted, refused = self._insert_apart(items) if len(items) > 1 else (set(), {0: exc})
        fresh: list[NewDelivery] = []
        outcomes: list[bool | BaseException] = []
        for index, pending in enumerate(batch):
            if index in refused:
                outcomes.append(refused[index])
                continue
            new = pending.item.id in inserted
            if new:
                inserted.discard(pending.item.id)  # a repeat within the batch is a duplicate
                fresh.append(pending.item)
            outcomes.append(new)
        _settle(batch, outcomes)
        self._tell(fresh)

    def _tell(self, fresh: Sequence[NewDelivery]) -> None:
        """`on_stored`, which must not stop the inbox thread: what it was told is in the
        table, and the pump finds it there anyway."""
        if fresh and self.on_stored is not None:
            try:
                self.on_stored(fresh)
            except Exception:
                log.exception("on_stored failed for %d stored delivery(ies)", len(fresh))

    def _insert_apart(
        self, rows: Sequence[NewDelivery]
    ) -> tuple[set[str], dict[int, BaseException]]:
        """Each row on its own, so that one the database refuses does not hold up the
        others: the ids inserted, and what refused the others (by position)."""
        inserted: set[str] = set()
        refused: dict[int, BaseException] = {}
        for index, row in enumerate(rows):
            try:
                inserted |= self.store.insert_deliveries([row])
            except Exception as exc:
                refused[index] = exc
        return inserted, refused


def _settle(batch: list[_Pending], outcomes: Sequence[bool | BaseException]) -> None:
    """Resolve the waiters, waking each event loop once per batch rather than per request."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[bool], object]]] = {}
    for pending, outcome in zip(batch, outcomes, strict=True):
        by_loop.setdefault(pending.loop, []).append((pending.future, outcome))
    for loop, settled in by_loop.items():
        loop.call_soon_threadsafe(_resolve, settled)


def _resolve(settled: list[tuple[asyncio.Future[bool], object]]) -> None:
    for future, outcome in settled:
        if future.done():
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(bool(outcome))


def _filter_of(ids: Iterable[str]) -> Bloom:
    """A Bloom filter of `ids` with room for as many again (1% false positives, 1.2 MB
    for a million ids). Past its room it answers "maybe" more often: more lookups, never
    a duplicate let through."""
    known = list(ids)
    seen = Bloom(max(SEEN_CAPACITY, 2 * len(known)), 0.01)
    seen.update(known)
    return seen
