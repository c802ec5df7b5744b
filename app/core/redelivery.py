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
    already_requested: Set[str],
) -> list[Redelivery]:
    """Deliveries of the last 3 days that never succeeded, that we never stored, once each.

    A GUID with any successful attempt, or one we stored (we answered it, even if GitHub
    saw a timeout), needs nothing; each remaining GUID is redelivered through its newest
    attempt, and only if we have not asked for it before.
    """
    by_guid: dict[str, list[HookDelivery]] = {}
    for attempt in attempts:
        if now - attempt.delivered_at <= RETENTION_SECONDS:
            by_guid.setdefault(attempt.guid, []).append(attempt)
    wanted: list[Redelivery] = []
    for guid, tries in by_guid.items():
        if guid in stored or guid in already_requested or any(t.succeeded for t in tries):
            continue
        newest = max(tries, key=lambda t: (t.delivered_at, t.id))
        wanted.append(Redelivery(newest.id, guid, newest.event))
    return sorted(wanted, key=lambda r: r.hook_delivery_id)
