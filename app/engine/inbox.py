"""The durable inbox: deliveries are committed in groups before they are acknowledged.

Every verified delivery waits for a commit before its 2xx. Deliveries that arrive while a
commit is running share the next one (group commit), so the database sees one transaction
per burst instead of one per request, and a process killed right after a 2xx still has
every acknowledged delivery on restart.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from app.effects.store import NewDelivery, Store

MAX_BATCH = 256
PUT_TIMEOUT = 8.0


@dataclass
class _Pending:
    item: NewDelivery
    future: asyncio.Future[bool]
    loop: asyncio.AbstractEventLoop


class Inbox:
    """`await inbox.put(delivery)` returns True when stored now, False for a duplicate GUID."""

    def __init__(
        self, store: Store, on_stored: Callable[[Sequence[NewDelivery]], None] | None = None
    ) -> None:
        self.store = store
        self.on_stored = on_stored
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="nightshift-inbox", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)
            self._thread = None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    async def put(self, item: NewDelivery, timeout: float | None = None) -> bool:
        """Store one delivery; raises when it cannot be stored within `timeout` seconds
        (GitHub gives up after 10 s, so the ingress must answer before that)."""
        future = self.submit(item, asyncio.get_running_loop())
        return await asyncio.wait_for(future, timeout if timeout is not None else PUT_TIMEOUT)

    def submit(self, item: NewDelivery, loop: asyncio.AbstractEventLoop) -> asyncio.Future[bool]:
        """`put` without a task: the future (of `loop`, the running one) resolves to True when
        stored now, False for a duplicate; the caller bounds the wait (`PUT_TIMEOUT`)."""
        future: asyncio.Future[bool] = loop.create_future()
        self._queue.put(_Pending(item, future, loop))
        return future

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
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
            self._commit(batch)
            if stopping:
                return

    def _commit(self, batch: list[_Pending]) -> None:
        try:
            inserted = self.store.insert_deliveries([p.item for p in batch])
        except Exception as exc:
            if len(batch) > 1:  # one bad row must not fail the others: commit them one by one
                for pending in batch:
                    self._commit([pending])
                return
            _settle(batch, [exc])  # the database is down: the waiter gets the error
            return
        fresh: list[NewDelivery] = []
        outcomes: list[bool | BaseException] = []
        for pending in batch:
            new = pending.item.id in inserted
            if new:
                inserted.discard(pending.item.id)  # a repeat within the batch is a duplicate
                fresh.append(pending.item)
            outcomes.append(new)
        _settle(batch, outcomes)
        if fresh and self.on_stored is not None:
            self.on_stored(fresh)


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
