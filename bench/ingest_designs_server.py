"""Candidate ingress designs for bench/ingest_designs.py: one server per design.

    python bench/ingest_designs_server.py DESIGN HOST PORT

A design is HTTP layer + store, for example ``raw+journal``:

HTTP layers
    ``asgi``  uvicorn serving Nightshift's ASGI `WebhookEndpoint` (app/web/ingress.py);
    ``proto`` uvicorn with Nightshift's own HTTP protocol for the webhook path
              (app/web/fastpath.py), as `nightshift serve` runs;
    ``raw``   an asyncio protocol on uvloop that parses HTTP/1.1 with httptools itself and
              does the same work as the endpoint (HMAC over the raw body, the envelope
              parsed, the router asked whether the event is handled), with no ASGI between.

Stores (what must finish before the 2xx)
    ``none``     nothing: the ceiling of the HTTP layer with the ingress's own work;
    ``sqlite``   Nightshift's durable inbox (app/engine/inbox.py: group commit into the
                 SQLite `deliveries` table, WAL, synchronous=FULL);
    ``journal``  the same group commit into Nightshift's inbox journal instead
                 (app/effects/journal.py: a record per delivery, one O_DSYNC write per
                 group), with nothing moved out of it (`serve` moves it into the table
                 when idle);
    ``inbox``    `serve`'s own inbox in journal mode, with the SQLite store behind it: the
                 duplicate check (Bloom filter, journaled ids), the moves into the table
                 at each pause; only the engine is missing.

Only for measuring: the raw layer serves POST /webhooks and GET /healthz, nothing else,
and no design here processes what it stores (no workers).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httptools
import orjson
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.core.envelope import Envelope, EnvelopeError
from app.core.rules import ROUTER
from app.effects.journal import Journal, encode, open_journal
from app.effects.store import NewDelivery, Store
from app.engine.inbox import Inbox
from app.metrics import Metrics
from app.web.ingress import WebhookEndpoint, signature_matches

SECRETS = [s.strip().encode() for s in os.environ["NIGHTSHIFT_WEBHOOK_SECRET"].split(",")]


class NoStore:
    """Every delivery is new, and nothing is kept."""

    def insert_deliveries(self, batch: Sequence[NewDelivery]) -> set[str]:
        return {item.id for item in batch}


class JournalStore:
    """Nightshift's inbox journal (app/effects/journal.py) with nothing moved out of it:
    every delivery is new, appended and synced before its group's 2xx."""

    def __init__(self, path: Path) -> None:
        self.journal = Journal(path)

    def insert_deliveries(self, batch: Sequence[NewDelivery]) -> set[str]:
        self.journal.append([encode(item) for item in batch])
        return {item.id for item in batch}


def database_url() -> str:
    """Where bench/ingest.py put the run's database (a temporary directory)."""
    url = os.environ.get("NIGHTSHIFT_DATABASE_URL", "")
    if not url.startswith("sqlite:///"):
        raise SystemExit("NIGHTSHIFT_DATABASE_URL must be a sqlite:/// URL")
    return url


def make_inbox(store_name: str) -> Inbox:
    if store_name == "none":
        return Inbox(NoStore())  # type: ignore[arg-type]
    if store_name == "journal":
        directory = Path(database_url().removeprefix("sqlite:///")).parent
        return Inbox(JournalStore(directory / "journal.bin"))  # type: ignore[arg-type]
    if store_name == "inbox":
        store = Store(database_url())
        store.migrate()
        return Inbox(store, journal=open_journal(database_url()))
    if store_name == "sqlite":
        store = Store(database_url())
        store.migrate()
        return Inbox(store)
    raise SystemExit(f"unknown store {store_name!r}")


# --- the raw HTTP layer ------------------------------------------------------------


def _response(status: int, reason: bytes, body: bytes) -> bytes:
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
        % (status, reason, len(body))
    ) + body


REASONS = {200: b"OK", 202: b"Accepted", 400: b"Bad Request", 401: b"Unauthorized"}


class RawIngress(asyncio.Protocol):
    """One request at a time per connection; reading pauses while a delivery is stored."""

    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers: dict[bytes, bytes] = {}
        self.chunks: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's TCPTransport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        url, headers, body = self.url, self.headers, b"".join(self.chunks)
        self._reset()
        if url == b"/healthz":
            self._send(_response(200, b"OK", b'{"ok":true}'))
            return
        signature = headers.get(b"x-hub-signature-256", b"").decode("latin-1")
        if not signature_matches(body, signature, SECRETS):
            self._send(_response(401, b"Unauthorized", b'{"error":"signature does not match"}'))
            return
        delivery = headers.get(b"x-github-delivery", b"").decode("latin-1")
        event = headers.get(b"x-github-event", b"").decode("latin-1")
        try:
            env = Envelope.parse(delivery, event, body)
        except EnvelopeError:
            self._send(_response(400, b"Bad Request", b'{"error":"not JSON"}'))
            return
        handled = bool(ROUTER.rules_for(env.event, env.action))
        item = NewDelivery(
            id=delivery,
            event=event,
            action=env.action,
            repository=env.repository,
            installation_id=env.installation_id,
            body=body,
            status="queued" if handled else "ignored",
        )
        assert self.transport is not None
        self.transport.pause_reading()
        task = asyncio.ensure_future(self.inbox.put(item))
        task.add_done_callback(lambda done: self._stored(done, item))

    def _stored(self, done: asyncio.Future[bool], item: NewDelivery) -> None:
        if done.exception() is not None:
            self._send(_response(503, b"Service Unavailable", b'{"error":"not stored"}'))
        else:
            status = 202 if done.result() else 200
            payload = orjson.dumps({"delivery": item.id, "status": item.status})
            self._send(_response(status, REASONS[status], payload))
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def _send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve_raw(inbox: Inbox, host: str, port: int) -> None:
    inbox.start()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: RawIngress(inbox), host, port)
    await server.serve_forever()


# --- the ASGI layer ----------------------------------------------------------------


def serve_asgi(inbox: Inbox, host: str, port: int, protocol: bool = False) -> None:
    import uvicorn

    from app.web.fastpath import protocol_for

    endpoint = WebhookEndpoint(SECRETS, inbox, ROUTER, Metrics())
    http: Any = protocol_for(endpoint.checks, inbox, "/webhooks") if protocol else "auto"

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    inbox.start()
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["path"] == "/healthz":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b'{"ok":true}'})
            return
        await endpoint(scope, receive, send)

    uvicorn.run(app, host=host, port=port, http=http, log_level="warning", access_log=False)


def main() -> None:
    design, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    layer, _, store_name = design.partition("+")
    inbox = make_inbox(store_name)
    if layer == "raw":
        uvloop.run(serve_raw(inbox, host, port))
    elif layer == "asgi":
        serve_asgi(inbox, host, port)
    elif layer == "proto":
        serve_asgi(inbox, host, port, protocol=True)
    else:
        raise SystemExit(f"unknown HTTP layer {layer!r}")


if __name__ == "__main__":
    main()
