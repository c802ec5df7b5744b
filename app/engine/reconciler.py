"""The reconciler: ask GitHub again for deliveries that failed while we were down."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlparse

from app.core.redelivery import RETENTION_SECONDS, HookDelivery, Redelivery, Requested, plan
from app.effects.github import GitHubError, GitHubPort, GitHubRequest, link_next
from app.effects.store import AuditEntry, Store

MAX_PAGES = 50


@dataclass(frozen=True)
class ReconcileResult:
    examined: int
    redelivered: tuple[str, ...]
    failed: tuple[str, ...]


def list_recent(github: GitHubPort, now: float) -> list[HookDelivery]:
    """`GET /app/hook/deliveries`, newest first, until entries are older than 3 days."""
    found: list[HookDelivery] = []
    params: dict[str, str | int] = {"per_page": 100}
    for _ in range(MAX_PAGES):
        response = github.send_as_app(GitHubRequest("GET", "/app/hook/deliveries", params=params))
        items = response.data if isinstance(response.data, list) else []
        page = [d for d in (HookDelivery.from_api(i) for i in items if isinstance(i, dict)) if d]
        found.extend(page)
        following = link_next(response.headers)
        if not following or not page or now - page[-1].delivered_at > RETENTION_SECONDS:
            break
        cursor = parse_qs(urlparse(following).query).get("cursor")
        if not cursor:
            break
        params = {"per_page": 100, "cursor": cursor[0]}
    return found


def reconcile(github: GitHubPort, store: Store, now: float) -> ReconcileResult:
    attempts = list_recent(github, now)
    guids = {a.guid for a in attempts}
    requested = {
        guid: Requested(hook_delivery_id, requests)
        for guid, (hook_delivery_id, requests) in store.redelivery_requests(guids).items()
    }
    wanted = plan(
        attempts, now=now, stored=store.known_deliveries(guids), already_requested=requested
    )
    done: list[str] = []
    failed: list[str] = []
    for item in wanted:
        if not store.mark_redelivery(item.guid, item.hook_delivery_id):
            continue  # another process asked for it
        if _redeliver(github, store, item):
            done.append(item.guid)
        else:
            failed.append(item.guid)
    return ReconcileResult(len(attempts), tuple(done), tuple(failed))


def _redeliver(github: GitHubPort, store: Store, item: Redelivery) -> bool:
    request = GitHubRequest("POST", f"/app/hook/deliveries/{item.hook_delivery_id}/attempts")
    try:
        response = github.send_as_app(request)
    except GitHubError as exc:
        store.forget_redelivery(item.guid, item.hook_delivery_id)  # ask again next pass
        store.record(
            AuditEntry(
                kind="error",
                what=f"redeliver {item.guid}",
                why=f"GitHub answered {exc}",
                delivery_id=item.guid,
                detail={"request": request.as_dict()},
            )
        )
        return False
    store.record(
        AuditEntry(
            kind="action",
            what=f"redeliver {item.guid} ({item.event})",
            why="the delivery failed while Nightshift was unreachable",
            delivery_id=item.guid,
            detail={"request": request.as_dict(), "status": response.status},
        )
    )
    return True
