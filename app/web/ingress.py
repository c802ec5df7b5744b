"""`POST /webhooks`: verify, bound, store, acknowledge. Nothing else happens here.

GitHub waits 10 s for a 2xx and does not retry by itself, so the handler only verifies the
signature, stores the delivery durably and answers; the work happens in a workflow.
https://docs.github.com/en/webhooks/using-webhooks/best-practices-for-using-webhooks

Two front ends share one set of checks (`WebhookChecks`): `WebhookEndpoint`, a plain ASGI
endpoint (what an ASGI client or another server sees), and the HTTP protocol `nightshift
serve` runs (app/web/fastpath.py), which answers webhooks without an ASGI round trip.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.types import Receive, Scope, Send

from app.core.envelope import EnvelopeError, read_head
from app.core.router import Router
from app.effects.store import NewDelivery
from app.engine.inbox import Inbox
from app.metrics import Metrics
from app.settings import MAX_WEBHOOK_BYTES

# Bodies are read before their signature can be checked; cap what unverified requests can
# hold in memory at once (GitHub retries nothing, but the reconciler asks again for a 503).
MAX_BUFFERED_BYTES = 256 * 1024 * 1024

WANTED_HEADERS = frozenset(
    {
        b"content-type",
        b"content-length",
        b"x-github-event",
        b"x-github-delivery",
        b"x-hub-signature-256",
    }
)


@dataclass(frozen=True)
class Answer:
    """What the ingress answers: a status, a small JSON body and extra headers."""

    status: int
    payload: dict[str, Any]
    headers: Sequence[tuple[bytes, bytes]] = field(default=())

    def body(self) -> bytes:
        return orjson.dumps(self.payload)


def refuse(status: int, message: str, headers: Sequence[tuple[bytes, bytes]] = ()) -> Answer:
    return Answer(status, {"error": message}, headers)


NOT_STORED = refuse(503, "could not store the delivery; it will be redelivered")
TOO_MUCH_AT_ONCE = refuse(503, "too many large deliveries at once", [(b"retry-after", b"5")])


def _fit(value: str | None, size: int) -> str | None:
    """Bounded for its column; the full value stays in the stored body."""
    return value[:size] if value is not None else None


def signature_matches(body: bytes, header: str, secrets: Sequence[bytes]) -> bool:
    """HMAC-SHA256 of the raw body, compared in constant time, against every secret."""
    if not header.startswith("sha256="):
        return False
    given = header.removeprefix("sha256=").encode()
    matched = False
    for secret in secrets:
        expected = hmac.new(secret, body, hashlib.sha256).hexdigest().encode()
        matched |= hmac.compare_digest(expected, given)  # no early exit: same time per secret
    return matched


class WebhookChecks:
    """The ingress's decisions, for any HTTP front end: the head, then the body, then what
    storing it gave. `headers` are the wanted ones only, names lower-cased, as bytes."""

    def __init__(
        self,
        secrets: Sequence[bytes],
        router: Router,
        metrics: Metrics,
        max_bytes: int = MAX_WEBHOOK_BYTES,
        max_buffered: int = MAX_BUFFERED_BYTES,
    ) -> None:
        self.secrets = list(secrets)
        self.router = router
        self.metrics = metrics
        self.max_bytes = max_bytes
        self.max_buffered = max_buffered
        self.buffered = 0  # bytes of bodies being read right now, across requests
        self._counted: dict[int, Any] = {}  # the request counter's child for each status

    def head(self, method: str, headers: Mapping[bytes, bytes]) -> Answer | None:
        """A refusal decided before any of the body is read, or None to read it."""
        if method != "POST":
            return refuse(405, "use POST", [(b"allow", b"POST")])
        content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if content_type != b"application/json":
            return refuse(415, "content type must be application/json (set it in the App settings)")
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            return self.too_big()
        event = headers.get(b"x-github-event")
        delivery_id = headers.get(b"x-github-delivery")
        if not event or not delivery_id:
            return refuse(400, "X-GitHub-Event and X-GitHub-Delivery are required")
        if len(delivery_id) > 64 or len(event) > 64:
            return refuse(400, "X-GitHub-Event or X-GitHub-Delivery is too long")
        if not headers.get(b"x-hub-signature-256"):
            return refuse(401, "X-Hub-Signature-256 is missing")
        return None

    def too_big(self) -> Answer:
        return refuse(413, f"body over {self.max_bytes} bytes")

    def take(self, size: int) -> bool:
        """Count `size` more unverified bytes in memory; False when over the budget."""
        self.buffered += size
        return self.buffered <= self.max_buffered

    def give_back(self, size: int) -> None:
        self.buffered -= size

    def body(
        self, headers: Mapping[bytes, bytes], body: bytes, *, received_at: float
    ) -> Answer | NewDelivery:
        """After `head` passed: a refusal, the answer to a ping, or the delivery to store,
        received at `received_at` (the inbox's clock)."""
        signature = headers[b"x-hub-signature-256"].decode("latin-1")
        if not signature_matches(body, signature, self.secrets):
            return refuse(401, "signature does not match")
        delivery_id = headers[b"x-github-delivery"].decode("latin-1")
        event = headers[b"x-github-event"].decode("latin-1")
        try:
            head = read_head(body)
        except EnvelopeError as exc:
            return refuse(400, str(exc))
        if event == "ping":
            return Answer(200, {"delivery": delivery_id, "status": "pong"})
        handled = bool(self.router.rules_for(event, head.action))
        return NewDelivery(
            id=delivery_id,
            event=event,
            action=_fit(head.action, 64),
            repository=_fit(head.repository, 256),
            installation_id=head.installation_id,
            body=body,
            status="queued" if handled else "ignored",
            received_at=received_at,
        )

    @staticmethod
    def stored(item: NewDelivery, new: bool) -> Answer:
        if not new:
            return Answer(200, {"delivery": item.id, "status": "duplicate"})
        return Answer(202, {"delivery": item.id, "status": item.status})

    def answered(self, status: int, started: float) -> None:
        counter = self._counted.get(status)
        if counter is None:  # `labels` looks the child up under a lock: once per status
            counter = self._counted[status] = self.metrics.ingress_requests.labels(str(status))
        counter.inc()
        self.metrics.ingress_seconds.observe(time.perf_counter() - started)


class WebhookEndpoint:
    """A plain ASGI endpoint, so the body can be refused while it streams in."""

    def __init__(
        self,
        secrets: Sequence[bytes],
        inbox: Inbox,
        router: Router,
        metrics: Metrics,
        max_bytes: int = MAX_WEBHOOK_BYTES,
        max_buffered: int = MAX_BUFFERED_BYTES,
    ) -> None:
        self.checks = WebhookChecks(secrets, router, metrics, max_bytes, max_buffered)
        self.inbox = inbox

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        answer = await self._handle(scope, receive)
        body = answer.body()
        await send(
            {
                "type": "http.response.start",
                "status": answer.status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    *answer.headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
        self.checks.answered(answer.status, started)

    async def _handle(self, scope: Scope, receive: Receive) -> Answer:
        # ASGI servers give header names lower-cased; only the few we read are kept
        headers = {name: value for name, value in scope["headers"] if name in WANTED_HEADERS}
        refused = self.checks.head(scope["method"], headers)
        if refused is not None:
            return refused
        body = await self._read_body(receive)
        if isinstance(body, Answer):
            return body
        outcome = self.checks.body(headers, body, received_at=self.inbox.clock())
        if isinstance(outcome, Answer):
            return outcome
        try:
            new = await self.inbox.put(outcome)
        except Exception:  # includes the timeout
            # not stored: GitHub marks the delivery failed and the reconciler asks again
            return NOT_STORED
        return self.checks.stored(outcome, new)

    async def _read_body(self, receive: Receive) -> bytes | Answer:
        """Read the body, refusing it as soon as it is too big for one delivery, or when the
        bodies being read at once (signatures not checked yet) would use too much memory."""
        chunks: list[bytes] = []
        size = 0
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return refuse(400, "client disconnected")
                chunk = message.get("body", b"")
                size += len(chunk)
                within = self.checks.take(len(chunk))
                if size > self.checks.max_bytes:
                    return self.checks.too_big()
                if not within:
                    return TOO_MUCH_AT_ONCE
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks)
        finally:
            self.checks.give_back(size)
