"""What the dashboard shows, read from the store in a few queries (SQLAlchemy Core).

Each function takes a `Store` and reads its tables; none writes. They are plain functions so
that the report, the CLI or a later dashboard can share them, and so that what a "session"
is can change in one place (`session_start`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from app.effects.store import AuditEntry, Store
from app.effects.tables import agents, escalations, roster_agents, tasks, transitions

# The board's columns, in the order a task moves through them; always shown.
FLOW = (
    "awaiting_approval",
    "queued",
    "assigned",
    "in_progress",
    "in_review",
    "changes_requested",
    "merged",
    "done",
)
# Detours and ends, shown only when a task is there (and any state added later, after them).
OTHERS = ("blocked", "escalated", "paused", "proposed", "rejected", "cancelled")
# Tasks that count against an agent's `max_tasks` (as the scheduler counts them).
HOLDING = ("assigned", "in_progress", "in_review", "changes_requested")
FINISHED = ("merged", "done")
# Tasks entering the queue from these states were accepted (by intake, or by an approval).
ACCEPTED_FROM = ("proposed", "awaiting_approval")
SESSION_WINDOW = 24 * 3600.0
CARDS_PER_COLUMN = 50
AUDIT_ENTRIES = 50
ESCALATIONS_SHOWN = 100


@dataclass(frozen=True)
class Card:
    repo: str
    number: int
    title: str | None
    agent: str | None  # the agent's GitHub login
    agent_name: str | None  # its roster name
    updated_at: float
    waiting: str | None


@dataclass(frozen=True)
class Column:
    state: str
    total: int
    cards: tuple[Card, ...]  # the most recently moved first, at most CARDS_PER_COLUMN

    @property
    def hidden(self) -> int:
        return self.total - len(self.cards)


@dataclass(frozen=True)
class AgentRow:
    name: str
    github: str | None
    repos: tuple[str, ...]
    status: str  # online | offline | unreachable | unknown (never heard from)
    since: float | None  # when it went offline or unreachable
    last_heartbeat: float | None
    reported: str | None  # what its last heartbeat said it was doing
    task: str | None
    progress: int | None
    load: int
    max_tasks: int | None
    merged: int
    finished: int


@dataclass(frozen=True)
class Progress:
    since: float | None  # when the session began; None: nothing accepted in it yet
    accepted: int
    done: int
    eta_seconds: float | None  # at the session's pace so far; None until one task is done

    @property
    def remaining(self) -> int:
        return max(self.accepted - self.done, 0)

    @property
    def percent(self) -> int:
        return round(100 * self.done / self.accepted) if self.accepted else 0


@dataclass(frozen=True)
class Escalation:
    key: str
    repo: str
    number: int | None
    level: str
    category: str
    summary: str
    created_at: float


@dataclass(frozen=True)
class Snapshot:
    at: float
    columns: tuple[Column, ...]
    agents: tuple[AgentRow, ...]
    progress: Progress
    escalations: tuple[Escalation, ...]
    audit: tuple[AuditEntry, ...]  # newest first
    paused: tuple[str, ...]  # repositories, or "*" for everything


def snapshot(store: Store, now: float | None = None) -> Snapshot:
    """Everything the dashboard shows, read at `now` (default: the store's clock)."""
    at = store.clock() if now is None else now
    return Snapshot(
        at=at,
        columns=tuple(board(store)),
        agents=tuple(agent_rows(store)),
        progress=session_progress(store, at),
        escalations=tuple(open_escalations(store)),
        audit=tuple(reversed(store.audit_log(limit=AUDIT_ENTRIES))),
        paused=tuple(repository for repository, _, _ in store.pauses()),
    )


def board(store: Store, per_column: int = CARDS_PER_COLUMN) -> list[Column]:
    """The tasks by state: every FLOW column, then the other states that hold a task."""
    with store.engine.connect() as connection:
        counts = {
            str(state): int(n)
            for state, n in connection.execute(
                sa.select(tasks.c.state, sa.func.count()).group_by(tasks.c.state)
            )
        }
        extra = sorted(set(counts) - set(FLOW) - set(OTHERS))
        states = [*FLOW, *(s for s in OTHERS if counts.get(s)), *extra]
        columns = []
        for state in states:
            rows = (
                connection.execute(
                    sa.select(
                        tasks.c.repo,
                        tasks.c.number,
                        tasks.c.title,
                        tasks.c.agent,
                        tasks.c.agent_name,
                        tasks.c.updated_at,
                        tasks.c.waiting,
                    )
                    .where(tasks.c.state == state)
                    .order_by(tasks.c.updated_at.desc(), tasks.c.repo, tasks.c.number)
                    .limit(per_column)
                ).all()
                if counts.get(state)
                else []
            )
            cards = tuple(
                Card(str(r), int(n), t, a, an, float(u), w) for r, n, t, a, an, u, w in rows
            )
            columns.append(Column(state, counts.get(state, 0), cards))
    return columns


def agent_rows(store: Store) -> list[AgentRow]:
    """Every agent a roster lists or that was heard from, with its load and record."""
    with store.engine.connect() as connection:
        rostered: dict[str, Any] = {}
        repos: dict[str, set[str]] = {}
        for row in connection.execute(sa.select(roster_agents).order_by(roster_agents.c.seen_at)):
            rostered[str(row.name)] = row  # the most recently read roster wins
            repos.setdefault(str(row.name), set()).add(str(row.repo))
        heard = {str(row.name): row for row in connection.execute(sa.select(agents))}
        by_login = _counts(
            connection,
            sa.select(tasks.c.agent, sa.func.count())
            .where(tasks.c.agent.is_not(None))
            .where(tasks.c.state.in_(HOLDING))
            .group_by(tasks.c.agent),
        )
        by_name = _counts(
            connection,
            sa.select(tasks.c.agent_name, sa.func.count())
            .where(tasks.c.agent_name.is_not(None))
            .where(tasks.c.state.in_(HOLDING))
            .group_by(tasks.c.agent_name),
        )
        # transitions.agent is the task's agent (roster name) after the move
        record: dict[tuple[str, str], int] = {
            (str(agent), str(state)): int(n)
            for agent, state, n in connection.execute(
                sa.select(transitions.c.agent, transitions.c.to_state, sa.func.count())
                .where(transitions.c.agent.is_not(None))
                .where(transitions.c.to_state.in_(FINISHED))
                .group_by(transitions.c.agent, transitions.c.to_state)
            )
        }
    rows = []
    for name in sorted(set(rostered) | set(heard), key=str.lower):
        listed, seen = rostered.get(name), heard.get(name)
        github = str(listed.github) if listed is not None else None
        status, since = _status(seen)
        rows.append(
            AgentRow(
                name=name,
                github=github,
                repos=tuple(sorted(repos.get(name, ()))),
                status=status,
                since=since,
                last_heartbeat=seen.last_heartbeat if seen is not None else None,
                reported=seen.status if seen is not None else None,
                task=seen.task if seen is not None else None,
                progress=seen.progress if seen is not None else None,
                load=by_login.get(github, 0) if github else by_name.get(name, 0),
                max_tasks=int(listed.max_tasks) if listed is not None else None,
                merged=record.get((name, "merged"), 0),
                finished=record.get((name, "done"), 0),
            )
        )
    return rows


def _counts(connection: sa.Connection, query: sa.Select[Any]) -> dict[str, int]:
    return {str(key): int(n) for key, n in connection.execute(query)}


def _status(row: Any) -> tuple[str, float | None]:
    if row is None:
        return "unknown", None
    if row.offline_since is not None:
        return "offline", float(row.offline_since)
    if row.unreachable_since is not None:
        return "unreachable", float(row.unreachable_since)
    if row.last_heartbeat is None:
        return "unknown", None
    return "online", None


def session_start(store: Store, now: float) -> float | None:
    """When the current session began: the first task accepted in the last 24 hours.

    Nightshift keeps no record of its reports yet; once it does, a session is what happened
    since the latest report, and this is the one place to say so.
    """
    with store.engine.connect() as connection:
        value = connection.execute(
            sa.select(sa.func.min(transitions.c.at))
            .where(transitions.c.to_state == "queued")
            .where(transitions.c.from_state.in_(ACCEPTED_FROM))
            .where(transitions.c.at >= now - SESSION_WINDOW)
        ).scalar_one_or_none()
    return float(value) if value is not None else None


def session_progress(store: Store, now: float) -> Progress:
    """Tasks finished (merged or done) of the tasks accepted since the session began."""
    since = session_start(store, now)
    if since is None:
        return Progress(since=None, accepted=0, done=0, eta_seconds=None)
    with store.engine.connect() as connection:
        accepted = (
            sa.select(transitions.c.repo, transitions.c.number)
            .where(transitions.c.to_state == "queued")
            .where(transitions.c.from_state.in_(ACCEPTED_FROM))
            .where(transitions.c.at >= since)
            .distinct()
            .subquery()
        )
        states = [
            str(state)
            for (state,) in connection.execute(
                sa.select(tasks.c.state).join(
                    accepted,
                    sa.and_(tasks.c.repo == accepted.c.repo, tasks.c.number == accepted.c.number),
                )
            )
        ]
    done = sum(state in FINISHED for state in states)
    eta = None
    elapsed = now - since
    if done and elapsed > 0:
        eta = (len(states) - done) * elapsed / done
    return Progress(since=since, accepted=len(states), done=done, eta_seconds=eta)


def open_escalations(store: Store, limit: int = ESCALATIONS_SHOWN) -> list[Escalation]:
    """Escalations not resolved yet, the newest first."""
    with store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(escalations)
            .where(escalations.c.resolved_at.is_(None))
            .order_by(escalations.c.created_at.desc())
            .limit(limit)
        ).all()
    return [
        Escalation(
            key=str(row.key),
            repo=str(row.repo),
            number=row.number,
            level=str(row.level),
            category=str(row.category),
            summary=str(row.summary),
            created_at=float(row.created_at),
        )
        for row in rows
    ]


def duration(seconds: float) -> str:
    """A duration as people say it: "40 s", "5 min", "3 h 20 min", "2 d 4 h"."""
    seconds = max(seconds, 0.0)
    if seconds < 60:
        return f"{int(seconds)} s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def ago(seconds: float) -> str:
    """How long ago: "just now", "5 min ago"."""
    return "just now" if seconds < 10 else f"{duration(seconds)} ago"


def iso(ts: float | None) -> str:
    if ts is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))
