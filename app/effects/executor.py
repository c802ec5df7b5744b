"""The executor: runs each decided action through the GitHub port, and audits it.

In dry-run (or with no App credentials) nothing is sent: the exact request is recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from app.core.actions import (
    Action,
    Comment,
    ForgetConfigError,
    RememberConfigError,
    RemoveLabel,
    Transition,
)
from app.effects.github import GitHubError, GitHubPort, GitHubRequest, marker, request_for
from app.effects.store import AuditEntry, Store

Outcome = Literal["sent", "recorded", "skipped", "failed", "conflict"]

NO_CREDENTIALS = "no GitHub App credentials are configured: recorded instead of sent"
DRY_RUN = "dry-run: recorded instead of sent"


@dataclass(frozen=True)
class Context:
    delivery_id: str
    installation_id: int | None


class Executor:
    def __init__(self, store: Store, github: GitHubPort | None, *, dry_run: bool) -> None:
        self.store = store
        self.github = github
        self.dry_run = dry_run

    def execute(self, ctx: Context, action: Action) -> Outcome:
        if isinstance(action, RememberConfigError | ForgetConfigError):
            return self._remember(ctx, action)
        if isinstance(action, Transition):
            return self._transition(ctx, action)
        request = request_for(action)
        entry = _entry_for(ctx, action, request)
        if self.dry_run or self.github is None:
            why = DRY_RUN if self.dry_run else NO_CREDENTIALS
            self.store.record(entry(kind="dry-run", why=f"{action.reason} ({why})"))
            return "recorded"
        if ctx.installation_id is None:
            self.store.record(entry(kind="error", why="the delivery names no installation"))
            return "failed"
        github = self.github
        if isinstance(action, Comment) and self._already_posted(github, ctx, action):
            self.store.record(entry(kind="skipped", why="already posted by an earlier attempt"))
            return "skipped"
        try:
            response = github.send(ctx.installation_id, request)
        except GitHubError as exc:
            if isinstance(action, RemoveLabel) and exc.status == 404:
                # already absent: a re-run after a crash, or someone removed it meanwhile
                self.store.record(entry(kind="skipped", why=f"{action.reason} (already absent)"))
                return "skipped"
            self.store.record(entry(kind="error", why=f"{action.reason}: GitHub answered {exc}"))
            if exc.transient:
                raise  # the workflow step runs again, with back-off
            return "failed"
        if isinstance(action, Comment):
            self.store.finish_effect(action.key)
        self.store.record(entry(kind="action", why=action.reason, status=response.status))
        return "sent"

    def _record_dry_run(self, ctx: Context, action: Action) -> Outcome:
        """In dry-run Nightshift's own state is not changed either: when dry-run is switched
        off, nothing it merely previewed stands in the way (a task `queued` without its
        label on GitHub, a configuration problem never actually reported)."""
        self.store.record(
            AuditEntry(
                kind="dry-run",
                what=action.describe(),
                why=f"{action.reason} ({DRY_RUN})",
                delivery_id=ctx.delivery_id,
                repository=action.repo,
                detail={"action": action.kind},
            )
        )
        return "recorded"

    def _remember(self, ctx: Context, action: RememberConfigError | ForgetConfigError) -> Outcome:
        """Nightshift's memory of what it told the maintainers about the configuration."""
        if self.dry_run:
            return self._record_dry_run(ctx, action)
        problem = action.problem if isinstance(action, RememberConfigError) else None
        self.store.set_reported_config_error(action.repo, problem)
        self.store.record(
            AuditEntry(
                kind="state",
                what=action.describe(),
                why=action.reason,
                delivery_id=ctx.delivery_id,
                repository=action.repo,
                detail={"action": action.kind},
            )
        )
        return "sent"

    def _transition(self, ctx: Context, action: Transition) -> Outcome:
        """Move a task (compare-and-set); `conflict` stops the actions that depended on it."""
        if self.dry_run:
            return self._record_dry_run(ctx, action)
        result = self.store.transition(
            action.repo, action.number, action.from_state, action.to_state, action.previous
        )
        outcomes: dict[str, tuple[str, str, Outcome]] = {
            "moved": ("transition", action.reason, "sent"),
            "already": ("skipped", f"{action.reason} (made by an earlier attempt)", "skipped"),
            "conflict": (
                "error",
                f"{action.reason}: the task is no longer {action.from_state or 'new'}; "
                "the actions that depended on this move were not taken",
                "conflict",
            ),
        }
        kind, why, outcome = outcomes[result]
        self.store.record(
            AuditEntry(
                kind=kind,
                what=action.describe(),
                why=why,
                delivery_id=ctx.delivery_id,
                repository=action.repo,
                detail={"action": action.kind, "event": action.event},
            )
        )
        return outcome

    def _already_posted(self, github: GitHubPort, ctx: Context, action: Comment) -> bool:
        """True when an earlier attempt of this step posted the comment (a crash in between).

        The first attempt claims the key and posts; only a re-run finds the key claimed and
        looks for the hidden marker among the comments before posting again.
        """
        if self.store.begin_effect(action.key):
            return False
        if self.store.effect_finished(action.key):
            return True
        assert ctx.installation_id is not None
        wanted = marker(action.key)
        page = 1
        while True:
            response = github.send(
                ctx.installation_id,
                GitHubRequest(
                    "GET",
                    f"/repos/{action.repo}/issues/{action.number}/comments",
                    params={"per_page": 100, "page": page},
                ),
            )
            comments = response.data if isinstance(response.data, list) else []
            if any(wanted in str(c.get("body", "")) for c in comments if isinstance(c, dict)):
                self.store.finish_effect(action.key)
                return True
            if len(comments) < 100:
                return False
            page += 1


def _entry_for(ctx: Context, action: Action, request: GitHubRequest) -> Callable[..., AuditEntry]:
    def build(kind: str, why: str, status: int | None = None) -> AuditEntry:
        detail: dict[str, object] = {"request": request.as_dict(), "action": action.kind}
        if status is not None:
            detail["status"] = status
        return AuditEntry(
            kind=kind,
            what=action.describe(),
            why=why,
            delivery_id=ctx.delivery_id,
            repository=action.repo,
            detail=detail,
        )

    return build
