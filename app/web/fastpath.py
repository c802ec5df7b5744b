"""The HTTP protocol `nightshift serve` runs: uvicorn's, with `POST /webhooks` answered in
the protocol itself.

An ASGI round trip (a task, a scope, receive and send messages per request) costs about
as much CPU as everything the ingress does for a delivery (bench/ingest_designs.py:
uvicorn with the ASGI endpoint and nothing stored reaches 1.03x Probot's throughput, the
same work in a protocol 1.9x). So for the webhook path only, this subclass of uvicorn's
httptools protocol reads the body as it is parsed, runs the ingress's checks
(app/web/ingress.py `WebhookChecks`, the ones the ASGI endpoint runs), hands the delivery
to the inbox and writes the answer when the inbox has stored it. Everything else (other
paths, other methods, `Expect: 100-continue`, upgrades, a request pipelined behind another)
goes the ASGI way, as before. Connection handling, keep-alive, flow control, limits and
graceful shutdown stay uvicorn's: while a webhook is in flight it is the connection's
current "cycle" (`_Webhook` has the attributes uvicorn reads of one).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from app.effects.store import NewDelivery
from app.engine import inbox as inbox_module
from app.engine.inbox import Inbox
from app.web.ingress import NOT_STORED, TOO_MUCH_AT_ONCE, WANTED_HEADERS, Answer, WebhookChecks

LINGER_SECONDS = 2.0  # after refusing a body part-way, how long the rest is read and dropped


class _Webhook:
    """One webhook request in the protocol, standing in for uvicorn's RequestResponseCycle."""

    def __init__(self, keep_alive: bool) -> None:
        self.started = time.perf_counter()
        self.headers: dict[bytes, bytes] = {}
        self.chunks: list[bytes] = []
        self.size = 0
        self.keep_alive = keep_alive
        self.response_complete = False
        self.complete = False  # the whole request was read
        self.disconnected = False
        self.message_event = asyncio.Event()  # uvicorn sets it when the connection drops


class _Deadlines:
    """Cancels the futures still pending `PUT_TIMEOUT` seconds after they were added (the
    inbox could not store them in time), with one timer for all of them: a timer per
    delivery cost a libuv handle each in uvloop."""

    def __init__(self) -> None:
        self.waiting: deque[tuple[float, asyncio.Future[bool]]] = deque()
        self.timer: asyncio.TimerHandle | None = None

    def add(self, future: asyncio.Future[bool], loop: asyncio.AbstractEventLoop) -> None:
        waiting = self.waiting
        while waiting and waiting[0][1].done():  # answered already, as most are
            waiting.popleft()
        waiting.append((loop.time() + inbox_module.PUT_TIMEOUT, future))
        if self.timer is None:
            self.timer = loop.call_at(waiting[0][0], self._expire, loop)

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        waiting = self.waiting
        while waiting and (waiting[0][1].done() or waiting[0][0] <= now):
            waiting.popleft()[1].cancel()  # does nothing to one that is done
        self.timer = loop.call_at(waiting[0][0], self._expire, loop) if waiting else None


class WebhookProtocol(HttpToolsProtocol):
    """uvicorn's HttpToolsProtocol; `path` is served by `checks` and `inbox` directly.

    uvicorn builds protocols itself (`Config(http=...)`), so `protocol_for` makes a
    subclass bound to one ingress.
    """

    path: bytes = b"/webhooks"
    checks: WebhookChecks
    inbox: Inbox
    deadlines: _Deadlines

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.webhook: _Webhook | None = None  # the webhook whose body is being read
        self.closing = False  # answered with `connection: close`: nothing more is parsed
        self.held: list[bytes] = []  # what came while a webhook waited for the inbox

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return  # the rest of a refused body, or anything after a last answer: dropped
        if self._waiting():
            # read again once the delivery is answered, as uvicorn does for a pipelined
            # request (pausing only now: pausing for every delivery cost 5% of the loop)
            self.flow.pause_reading()
            self.held.append(data)
            return
        super().data_received(data)

    def eof_received(self) -> bool | None:  # type: ignore[override]  # asyncio allows a bool
        if self._waiting():  # the client is done sending: it still gets its answer
            assert isinstance(self.cycle, _Webhook)
            self.cycle.keep_alive = False
            return True  # the transport stays open until the answer closes it
        return None

    def _waiting(self) -> bool:
        """A whole webhook request was read and waits for the inbox."""
        cycle = self.cycle
        return isinstance(cycle, _Webhook) and cycle.complete and not cycle.response_complete

    def connection_lost(self, exc: Exception | None) -> None:
        if self.webhook is not None:  # gone in the middle of a body: its bytes are given back
            self._release(self.webhook)
            self.webhook = None
        super().connection_lost(exc)

    def on_headers_complete(self) -> None:
        parser = self.parser
        idle = self.cycle is None or self.cycle.response_complete
        if (
            self.url != self.path
            or not idle
            or self.expect_100_continue
            or parser.should_upgrade()
            or parser.get_method() != b"POST"
        ):
            self.webhook = None
            super().on_headers_complete()
            return
        webhook = _Webhook(parser.get_http_version() != "1.0" and parser.should_keep_alive())
        webhook.headers = {name: value for name, value in self.headers if name in WANTED_HEADERS}
        self.webhook = webhook
        self.cycle = webhook  # type: ignore[assignment]  # what uvicorn reads of a cycle
        refused = self.checks.head("POST", webhook.headers)
        if refused is not None:  # answered before the body is read, as the ASGI endpoint does
            self._answer(webhook, refused, close=refused.status == 413)

    def on_body(self, body: bytes) -> None:
        webhook = self.webhook
        if webhook is None:
            super().on_body(body)
            return
        if webhook.response_complete:
            return  # already refused: the rest is read and dropped
        webhook.size += len(body)
        within = self.checks.take(len(body))
        webhook.chunks.append(body)
        if webhook.size > self.checks.max_bytes:
            self._answer(webhook, self.checks.too_big(), close=True)
        elif not within:
            self._answer(webhook, TOO_MUCH_AT_ONCE, close=True)

    def on_message_complete(self) -> None:
        webhook = self.webhook
        if webhook is None:
            super().on_message_complete()
            return
        self.webhook = None
        webhook.complete = True
        if webhook.response_complete:
            return
        body = b"".join(webhook.chunks)
        self._release(webhook)
        outcome = self.checks.body(webhook.headers, body, received_at=self.inbox.clock())
        if isinstance(outcome, Answer):
            self._answer(webhook, outcome)
            return
        # reading is paused only if more comes before the answer (data_received)
        future = self.inbox.submit(outcome, self.loop)
        self.deadlines.add(future, self.loop)
        future.add_done_callback(lambda done: self._stored(webhook, outcome, done))

    def _stored(self, webhook: _Webhook, item: NewDelivery, done: asyncio.Future[bool]) -> None:
        if done.cancelled() or done.exception() is not None:
            # not stored: GitHub marks the delivery failed and the reconciler asks again
            self._answer(webhook, NOT_STORED)
        else:
            self._answer(webhook, self.checks.stored(item, done.result()))

    def _release(self, webhook: _Webhook) -> None:
        self.checks.give_back(webhook.size)
        webhook.size = 0
        webhook.chunks = []

    def _answer(self, webhook: _Webhook, answer: Answer, *, close: bool = False) -> None:
        """Write the answer, then carry on as uvicorn does after a response."""
        self._release(webhook)
        if webhook.response_complete:
            return
        webhook.response_complete = True
        keep_alive = webhook.keep_alive = webhook.keep_alive and not close
        if not webhook.disconnected and not self.transport.is_closing():
            body = answer.body()
            head = [STATUS_LINE[answer.status]]
            for name, value in self.server_state.default_headers:
                head += [name, b": ", value, b"\r\n"]
            head += [
                b"content-type: application/json\r\ncontent-length: ",
                str(len(body)).encode(),
                b"\r\n",
            ]
            for name, value in answer.headers:
                head += [name, b": ", value, b"\r\n"]
            if not keep_alive:
                head.append(b"connection: close\r\n")
            head += [b"\r\n", body]
            self.transport.write(b"".join(head))
        self.checks.answered(answer.status, webhook.started)
        if keep_alive:
            self.on_response_complete()
            held, self.held = self.held, []
            for data in held:  # read while this one was stored: parsed now, in order
                self.data_received(data)
            return
        self.server_state.total_requests += 1
        self.closing = True
        if webhook.disconnected or self.transport.is_closing():
            return
        if webhook.complete or not self.transport.can_write_eof():
            self.transport.close()
        else:
            # a lingering close: the client may still be sending (a body refused part-way);
            # closing with its bytes unread would reset the connection and lose the answer
            self.transport.write_eof()
            self.flow.resume_reading()
            self.loop.call_later(LINGER_SECONDS, self.transport.close)


def protocol_for(checks: WebhookChecks, inbox: Inbox, path: str) -> type[WebhookProtocol]:
    """A `WebhookProtocol` serving `path` with this ingress, for `uvicorn.Config(http=...)`."""
    return type(
        "BoundWebhookProtocol",
        (WebhookProtocol,),
        {"checks": checks, "inbox": inbox, "path": path.encode(), "deadlines": _Deadlines()},
    )
