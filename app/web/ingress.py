"""`POST /webhooks`: verify, bound, store, acknowledge. Nothing else happens here.

GitHub waits 10 s for a 2xx and does not retry by itself, so the handler only verifies the
signature, stores the delivery durably and answers; the work happens in a workflow.
https://docs.github.com/en/webhooks/using-webhooks/best-practices-for-using-webhooks
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence
from typing import Any

import orjson
from starlette.types import Receive, Scope, Send

from app.core.envelope import Envelope, EnvelopeError
from app.core.router import Router
from app.effects.store import NewDelivery
from app.engine.inbox import Inbox
from app.metrics import Metrics
from app.settings import MAX_WEBHOOK_BYTES

# Bodies are read before their signature can be checked; cap what unverified requests can
# hold in memory at once (GitHub retries nothing, but the reconciler asks again for a 503).
MAX_BUFFERED_BYTES = 256 * 1024 * 1024

_WANTED_HEADERS = frozenset(
    {
        b"content-type",
        b"content-length",
        b"x-github-event",
        b"x-github-delivery",
        b"x-hub-signature-256",
    }
)


class _Reject(Exception):
    def __init__(
        self, status: int, message: str, headers: Sequence[tuple[bytes, bytes]] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


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
        self.max_buffered = max_buffered
        self._buffered = 0  # bytes of bodies being read right now, across requests
        self.secrets = list(secrets)
        self.inbox = inbox
        self.router = router
        self.metrics = metrics
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        try:
            status, payload = await self._handle(scope, receive)
            headers: Sequence[tuple[bytes, bytes]] = ()
        except _Reject as reject:
            status, payload, headers = reject.status, {"error": reject.message}, reject.headers
        body = orjson.dumps(payload)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    *headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
        self.metrics.ingress_requests.labels(str(status)).inc()
        self.metrics.ingress_seconds.observe(time.perf_counter() - started)

    async def _handle(self, scope: Scope, receive: Receive) -> tuple[int, dict[str, Any]]:
        if scope["method"] != "POST":
            raise _Reject(405, "use POST", [(b"allow", b"POST")])
        # ASGI servers give header names lower-cased; only the few we read are decoded
        headers = {
            name.decode(): value.decode("latin-1")
            for name, value in scope["headers"]
            if name in _WANTED_HEADERS
        }
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise _Reject(415, "content type must be application/json (set it in the App settings)")
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            raise _Reject(413, f"body over {self.max_bytes} bytes")
        event = headers.get("x-github-event")
        delivery_id = headers.get("x-github-delivery")
        if not event or not delivery_id:
            raise _Reject(400, "X-GitHub-Event and X-GitHub-Delivery are required")
        if len(delivery_id) > 64 or len(event) > 64:
            raise _Reject(400, "X-GitHub-Event or X-GitHub-Delivery is too long")
        signature = headers.get("x-hub-signature-256")
        if not signature:
            raise _Reject(401, "X-Hub-Signature-256 is missing")
        body = await self._read_body(receive)
        if not signature_matches(body, signature, self.secrets):
            raise _Reject(401, "signature does not match")
        try:
            env = Envelope.parse(delivery_id, event, body)
        except EnvelopeError as exc:
            raise _Reject(400, str(exc)) from None
        if event == "ping":
            return 200, {"delivery": delivery_id, "status": "pong"}
        handled = bool(self.router.rules_for(env.event, env.action))
        item = NewDelivery(
            id=delivery_id,
            event=event,
            action=_fit(env.action, 64),
            repository=_fit(env.repository, 256),
            installation_id=env.installation_id,
            body=body,
            status="queued" if handled else "ignored",
        )
        try:
            new = await self.inbox.put(item)
        except Exception:  # includes the timeout
            # not stored: GitHub marks the delivery failed and the reconciler asks again
            raise _Reject(503, "could not store the delivery; it will be redelivered") from None
        if not new:
            return 200, {"delivery": delivery_id, "status": "duplicate"}
        return 202, {"delivery": delivery_id, "status": item.status}

    async def _read_body(self, receive: Receive) -> bytes:
        """Read the body, refusing it as soon as it is too big for one delivery, or when the
        bodies being read at once (signatures not checked yet) would use too much memory."""
        chunks: list[bytes] = []
        size = 0
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise _Reject(400, "client disconnected")
                chunk = message.get("body", b"")
                size += len(chunk)
                self._buffered += len(chunk)
                if size > self.max_bytes:
                    raise _Reject(413, f"body over {self.max_bytes} bytes")
                if self._buffered > self.max_buffered:
                    raise _Reject(
                        503, "too many large deliveries at once", [(b"retry-after", b"5")]
                    )
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks)
        finally:
            self._buffered -= size
