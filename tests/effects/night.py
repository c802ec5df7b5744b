"""A recorded night, written through the store's own API at controlled times.

Six tasks in `octo/repo`, accepted from 18:00 on 2026-01-01 (UTC):
#101 merged the first time (after one CI re-run; 47 tests passed), #102 merged after a fix
round (2 tests failed, then its new head passed 32), #103 blocked by a conflict, #104
escalated for a security finding, #105 lost by dev-agent-3 (no acknowledgement) and taken by
its backup dev-agent-1 (70% done), #106 waiting for #103; and a deferred architecture
decision on #105.
"""

from __future__ import annotations

from datetime import UTC, datetime

from app.effects.store import Store

REPO = "octo/repo"


def at(day: int, hour: int, minute: int = 0) -> float:
    """2026-01-`day` `hour`:`minute` UTC, as epoch seconds."""
    return datetime(2026, 1, day, hour, minute, tzinfo=UTC).timestamp()


class Recorder:
    """The store, with its clock set before each write."""

    def __init__(self, database_url: str, repo: str = REPO) -> None:
        self.now = 0.0
        self.repo = repo
        self.store = Store(database_url, clock=lambda: self.now)

    def at(self, when: float) -> Store:
        self.now = when
        return self.store

    def task(self, number: int, when: float, title: str, labels: list[str]) -> None:
        moved = self.at(when).transition(
            self.repo,
            number,
            None,
            "queued",
            None,
            event="accept",
            reason="intake: accepted for autonomous work",
        )
        assert moved == "moved"
        self.store.record_task(
            self.repo, number, title=title, body=None, labels=labels, depends_on=[], created_at=when
        )

    def move(
        self,
        number: int,
        when: float,
        route: tuple[str, str],
        event: str,
        reason: str = "",
        *,
        previous: str | None = None,
        agent: str | None = None,
        agent_name: str | None = None,
        expect_assignment: int | None = None,
        exclude: str | None = None,
    ) -> None:
        moved = self.at(when).transition(
            self.repo,
            number,
            route[0],
            route[1],
            previous,
            event=event,
            reason=reason,
            agent=agent,
            agent_name=agent_name,
            expect_assignment=expect_assignment,
            exclude=exclude,
        )
        assert moved == "moved", (number, route, moved)

    def assign(
        self,
        number: int,
        when: float,
        route: tuple[str, str],
        who: tuple[str, str],
        reason: str,
        *,
        expect_assignment: int | None = None,
        exclude: str | None = None,
    ) -> None:
        """Give the task to `who` (its GitHub login, its roster name)."""
        self.move(
            number,
            when,
            route,
            "assign",
            reason,
            agent=who[0],
            agent_name=who[1],
            expect_assignment=expect_assignment,
            exclude=exclude,
        )

    def close(self) -> None:
        self.store.dispose()


def seed_night(database_url: str) -> None:
    r = Recorder(database_url)
    r.task(101, at(1, 18), "User Authentication", ["autonomous", "backend"])
    r.task(102, at(1, 18), "Password Reset | v2 @admin <!-- x -->", ["autonomous", "backend"])
    r.task(103, at(1, 18, 1), "Session Management", ["autonomous", "backend"])
    r.task(104, at(1, 18, 2), "Rate limiter", ["autonomous", "security"])
    r.task(105, at(1, 18, 3), "Export CSV", ["autonomous", "frontend"])
    r.task(106, at(1, 18, 4), "Docs for [auth](http://x)", ["autonomous", "docs"])
    ready = "dispatch: ready"
    acked = "dispatch: acknowledged"

    # 101: merged the first time, after one CI re-run
    one = ("dev1-bot", "dev-agent-1")
    r.assign(101, at(1, 18, 5), ("queued", "assigned"), one, ready)
    r.move(101, at(1, 18, 10), ("assigned", "in_progress"), "acknowledge", acked)
    r.move(101, at(1, 19), ("in_progress", "in_review"), "open_pr", "review: #147 opened")
    r.at(at(1, 19)).record_pull(REPO, 147, 101, "a" * 40, "dev1-bot", False)
    assert r.at(at(1, 20)).record_tests(REPO, 147, "a" * 40, 47, 0)
    assert r.at(at(1, 19, 30)).count_ci_retry(REPO, "a" * 40, "run-1")
    r.move(101, at(1, 20, 5), ("in_review", "done"), "finish", "review: #147 merged")
    r.at(at(1, 20, 5)).mark_merged(REPO, 147, "e" * 40)

    # 102: merged after a fix round
    two = ("dev2-bot", "dev-agent-2")
    r.assign(102, at(1, 18, 5), ("queued", "assigned"), two, ready)
    r.move(102, at(1, 18, 6), ("assigned", "in_progress"), "acknowledge", acked)
    r.move(102, at(1, 19, 10), ("in_progress", "in_review"), "open_pr", "review: #148 opened")
    r.at(at(1, 19, 10)).record_pull(REPO, 148, 102, "b" * 40, "dev2-bot", False)
    r.move(102, at(1, 19, 40), ("in_review", "changes_requested"), "request_changes", "review: fix")
    assert r.at(at(1, 19, 40)).count_fix_round(REPO, 148, "b" * 40)
    assert r.at(at(1, 19, 40)).record_tests(REPO, 148, "b" * 40, 30, 2)
    r.move(102, at(1, 20, 30), ("changes_requested", "in_review"), "push_fix", "review: pushed")
    r.at(at(1, 20, 30)).record_pull(REPO, 148, 102, "9" * 40, "dev2-bot", False)
    assert not r.at(at(1, 20, 40)).record_tests(REPO, 148, "b" * 40, 0, 32)  # a late review
    assert r.at(at(1, 20, 50)).record_tests(REPO, 148, "9" * 40, 32, 0)
    r.move(102, at(1, 21), ("in_review", "done"), "finish", "review: #148 merged")
    r.at(at(1, 21)).mark_merged(REPO, 148, "f" * 40)

    # 103: blocked by a conflict
    r.assign(103, at(1, 20, 10), ("queued", "assigned"), one, ready)
    r.move(103, at(1, 20, 12), ("assigned", "in_progress"), "acknowledge", acked)
    r.move(103, at(1, 22), ("in_progress", "in_review"), "open_pr", "review: #149 opened")
    r.at(at(1, 22)).record_pull(REPO, 149, 103, "c" * 40, "dev1-bot", False)
    r.move(
        103,
        at(1, 22, 30),
        ("in_review", "blocked"),
        "block",
        "review: #149 conflicts with main; the agent was asked to rebase",
        previous="in_review",
    )

    # 104: a security finding, escalated at once
    r.assign(104, at(1, 21, 5), ("queued", "assigned"), two, ready)
    r.move(104, at(1, 21, 6), ("assigned", "in_progress"), "acknowledge", acked)
    r.move(104, at(1, 23), ("in_progress", "in_review"), "open_pr", "review: #150 opened")
    r.at(at(1, 23)).record_pull(REPO, 150, 104, "d" * 40, "dev2-bot", False)
    assert r.at(at(1, 23, 10)).record_escalation(
        f"security:{REPO}#150",
        REPO,
        104,
        "immediate",
        "security",
        "possible secret at `config.py:3` in #150 @evil",
    )
    r.move(
        104,
        at(1, 23, 10),
        ("in_review", "escalated"),
        "escalate",
        "review: a security finding",
        previous="in_review",
    )

    # 105: dev-agent-3 never acknowledged; its backup dev-agent-1 took it
    three = ("dev3-bot", "dev-agent-3")
    r.assign(105, at(1, 18, 5), ("queued", "assigned"), three, ready)
    r.assign(
        105,
        at(1, 18, 20),
        ("assigned", "assigned"),
        one,
        "dispatch: dev-agent-3 did not acknowledge in 10 min; to its backup dev-agent-1",
        expect_assignment=1,
        exclude="dev-agent-3",
    )
    r.move(105, at(1, 18, 25), ("assigned", "in_progress"), "acknowledge", acked)
    r.at(at(2, 5)).heartbeat("dev-agent-1", "working", f"{REPO}#105", 70)
    assert r.at(at(1, 19)).record_escalation(
        f"architecture:{REPO}#105",
        REPO,
        105,
        "deferred",
        "architecture",
        "Redis or Memcached for session storage? Went with Redis (reversible)",
    )

    # 106: waits for #103
    r.store.record_waiting(REPO, 106, "waiting for #103")
    r.close()
