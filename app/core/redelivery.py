"""Which failed deliveries to ask GitHub to send again (pure).

GitHub keeps an App's deliveries for 3 days and does not retry a failed one by itself; an
App can list them and ask for a redelivery:
https://docs.github.com/en/webhooks/using-webhooks/handling-failed-webhook-deliveries
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass
from datetime import datetime
from typing import Any

RETENTION_SECONDS = 3 * 24 * 3600
MAX_REQUESTS = 3  # per delivery: we may still be down when GitHub makes our redelivery


@dataclass(frozen=True)
class Requested:
    """What we asked GitHub for one delivery: the attempt redelivered, and how often."""

    hook_delivery_id: int
    requests: int


@dataclass(frozen=True)
class HookDelivery:
    id: int
    guid: str
    delivered_at: float
    status_code: int
    event: str

    @property
    def succeeded(self) -> bool:
        return 200 <= self.status_code < 300

    @classmethod
    def from_api(cls, item: Mapping[str, Any]) -> HookDelivery | None:
        """One entry of `GET /app/hook/deliveries`; None when it lacks what we need."""
        try:
            delivered = datetime.fromisoformat(str(item["delivered_at"]).replace("Z", "+00:00"))
            return cls(
                id=int(item["id"]),
                guid=str(item["guid"]),
                delivered_at=delivered.timestamp(),
                status_code=int(item.get("status_code") or 0),
                event=str(item.get("event", "")),
            )
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True)
class Redelivery:
    hook_delivery_id: int
    guid: str
    event: str


def plan(
    attempts: Iterable[HookDelivery],
    *,
    now: float,
    stored: Set[str],
    already_requested: Mapping[str, Requested],
) -> list[Redelivery]:
    """Deliveries of the last 3 days that never succeeded and that we never stored.

    A GUID with any successful attempt, or one we stored (we answered it, even if GitHub
    saw a timeout), needs nothing. Each remaining GUID is redelivered through its newest
    attempt: the first time, and again only when GitHub has made the attempt we asked for
    and it failed too (a newer attempt exists), at most MAX_REQUESTS times in all.
    """
    by_guid: dict[str, list[HookDelivery]] = {}
    for attempt in attempts:
        if now - attempt.delivered_at <= RETENTION_SECONDS:
            by_guid.setdefault(attempt.guid, []).append(attempt)
    wanted: list[Redelivery] = []
    for guid, tries in by_guid.items():
        if guid in stored or any(t.succeeded for t in tries):
            continue
        newest = max(tries, key=lambda t: (t.delivered_at, t.id))
        asked = already_requested.get(guid)
        if asked is not None and (
            asked.requests >= MAX_REQUESTS or newest.id <= asked.hook_delivery_id
        ):
            continue  # asked too often, or GitHub has not made our redelivery yet
        wanted.append(Redelivery(newest.id, guid, newest.event))
    return sorted(wanted, key=lambda r: r.hook_delivery_id)
