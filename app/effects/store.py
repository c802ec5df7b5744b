"""The state store: deliveries, audit log, effect keys, workers, pauses (SQLite or PostgreSQL)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy.dialects import postgresql, sqlite

from app.core.pump import Waiting
from app.core.roster import Agent
from app.core.state import AgentStatus, Escalation, Pull, TaskFacts
from app.core.tasks import State as TaskState
from app.core.tasks import Task, parse_previous
from app.effects.tables import (
    agents,
    audit,
    ci_retries,
    deliveries,
    effects,
    escalations,
    pauses,
    pulls,
    redeliveries,
    repositories,
    roster_agents,
    tasks,
    timers,
    transitions,
    workers,
)

Clock = Callable[[], float]
MIGRATIONS = Path(__file__).parent / "migrations"
ALL_REPOSITORIES = "*"
TIMER_KEPT_SECONDS = 24 * 3600  # fired timers are kept this long (see fired_timer)


def sqlalchemy_url(database_url: str) -> str:
    """Nightshift's DATABASE_URL as SQLAlchemy wants it (psycopg 3 for PostgreSQL)."""
    if database_url.startswith("postgresql://"):
        return "postgresql+psycopg://" + database_url.removeprefix("postgresql://")
    return database_url


@dataclass(frozen=True, slots=True)  # slots: a burst keeps tens of thousands
class NewDelivery:
    id: str
    event: str
    action: str | None
    repository: str | None
    installation_id: int | None
    body: bytes
    status: str = "queued"  # or "ignored" when no rule listens to it
    received_at: float | None = None  # when stored later than received (the inbox journal)


@dataclass(frozen=True)
class DeliveryRow:
    id: str
    event: str
    action: str | None
    repository: str | None
    installation_id: int | None
    received_at: float
    status: str
    dispatched_at: float | None
    finished_at: float | None
    error: str | None


@dataclass(frozen=True)
class AuditEntry:
    kind: str
    what: str
    why: str
    delivery_id: str | None = None
    repository: str | None = None
    detail: dict[str, Any] | None = None
    at: float | None = None


class Store:
    """Synchronous store; the ingress calls it from a writer thread, workflows from steps."""

    def __init__(self, database_url: str, *, clock: Clock = time.time) -> None:
        self.url = sqlalchemy_url(database_url)
        self.clock = clock
        self.is_sqlite = self.url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        else:
            kwargs.update(pool_size=5, max_overflow=5, pool_pre_ping=True)
        self.engine = sa.create_engine(self.url, **kwargs)
        if self.is_sqlite:
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)

    def migrate(self) -> None:
        """Bring the schema to the newest migration (idempotent; safe from several processes)."""
        config = AlembicConfig()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as connection:
            if not self.is_sqlite:
                # serialize concurrent start-ups on PostgreSQL
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(727270001)"))
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def schema_is_current(self) -> bool:
        """True when the database has every migration (so reading it needs no upgrade)."""
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        config = AlembicConfig()
        config.set_main_option("script_location", str(MIGRATIONS))
        head = ScriptDirectory.from_config(config).get_current_head()
        with self.engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
        return current == head

    def dispose(self) -> None:
        self.engine.dispose()

    # deliveries -----------------------------------------------------------------------------

    def insert_deliveries(self, batch: Sequence[NewDelivery]) -> set[str]:
        """Store a batch in one transaction; return the ids that were new (the rest are dupes)."""
        if not batch:
            return set()
        now = self.clock()
        rows = {
            item.id: {
                "id": item.id,
                "event": item.event,
                "action": item.action,
                "repository": item.repository,
                "installation_id": item.installation_id,
                "received_at": item.received_at if item.received_at is not None else now,
                "body": item.body,
                "status": item.status,
            }
            for item in batch
        }
        if self.is_sqlite:
            return self._insert_deliveries_sqlite(rows)
        statement = (
            postgresql.insert(deliveries)
            .on_conflict_do_nothing(index_elements=["id"])
            .returning(deliveries.c.id)
        )
        with self.engine.begin() as connection:
            inserted = connection.execute(statement, list(rows.values())).scalars().all()
        return set(inserted)

    @staticmethod
    def unavailable(exc: BaseException) -> bool:
        """The database could not be used (locked, gone), as against refusing what was
        asked of it: worth trying the same thing again later."""
        return isinstance(exc, sa.exc.OperationalError)

    def delivery_ids(self) -> Iterator[str]:
        """Every stored delivery id, streamed."""
        with self.engine.connect() as connection:
            rows = connection.execution_options(yield_per=10_000).execute(
                sa.select(deliveries.c.id)
            )
            yield from rows.scalars()

    def known_deliveries(self, ids: Iterable[str]) -> set[str]:
        """Which of these delivery ids (GUIDs) are stored: the inbox's duplicate check, the
        reconciler's "was it ever received"."""
        wanted = list(set(ids))
        found: set[str] = set()
        # plain SQL: on SQLite the ingress asks this once per group commit
        with self.engine.connect() as connection:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" if self.is_sqlite else "%s" for _ in chunk)
                found.update(
                    connection.exec_driver_sql(
                        f"SELECT id FROM deliveries WHERE id IN ({marks})",  # noqa: S608
                        tuple(chunk),
                    ).scalars()
                )
        return found

    def _insert_deliveries_sqlite(self, rows: dict[str, dict[str, Any]]) -> set[str]:
        """The ingest hot path on SQLite, in plain SQL: a third of the Core version's CPU.

        One process writes to a SQLite inbox, so the ids found absent are the ids inserted;
        `OR IGNORE` keeps a rare race with another writer from failing the whole batch.
        """
        ids = list(rows)
        marks = ",".join("?" * len(ids))
        columns = (
            "id",
            "event",
            "action",
            "repository",
            "installation_id",
            "received_at",
            "body",
            "status",
        )
        with self.engine.begin() as connection:
            existing = set(
                connection.exec_driver_sql(
                    f"SELECT id FROM deliveries WHERE id IN ({marks})",  # noqa: S608
                    tuple(ids),
                ).scalars()
            )
            fresh = [row for key, row in rows.items() if key not in existing]
            if fresh:
                connection.exec_driver_sql(
                    f"INSERT OR IGNORE INTO deliveries ({', '.join(columns)}) "  # noqa: S608
                    f"VALUES ({', '.join('?' * len(columns))})",
                    [tuple(row[c] for c in columns) for row in fresh],
                )
        return {row["id"] for row in fresh}

    def prune(self, older_than: float) -> dict[str, int]:
        """Forget finished deliveries (their bodies too) and effect keys older than the cutoff.

        Queued deliveries are never pruned; the audit log is kept.
        """
        with self.engine.begin() as connection:
            gone = connection.execute(
                sa.delete(deliveries)
                .where(deliveries.c.status.in_(("done", "ignored", "failed")))
                .where(deliveries.c.received_at < older_than)
            ).rowcount
            keys = connection.execute(
                sa.delete(effects).where(effects.c.started_at < older_than)
            ).rowcount
            asked = connection.execute(
                sa.delete(redeliveries).where(redeliveries.c.requested_at < older_than)
            ).rowcount
        return {"deliveries": int(gone), "effect_keys": int(keys), "redeliveries": int(asked)}

    def delivery(self, delivery_id: str) -> tuple[DeliveryRow, bytes] | None:
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(deliveries).where(deliveries.c.id == delivery_id)
            ).one_or_none()
        if row is None:
            return None
        return _delivery_row(row._mapping), bytes(row.body)

    def finish_delivery(self, delivery_id: str, status: str, error: str | None = None) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                sa.update(deliveries)
                .where(deliveries.c.id == delivery_id)
                .values(status=status, finished_at=self.clock(), error=error)
            )

    def undispatched(self, limit: int) -> list[Waiting]:
        """Queued deliveries whose workflow has not been started yet, oldest first."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(
                    deliveries.c.id,
                    deliveries.c.repository,
                    deliveries.c.installation_id,
                    deliveries.c.received_at,
                )
                .where(deliveries.c.status == "queued")
                .where(deliveries.c.dispatched_at.is_(None))
                .order_by(deliveries.c.received_at)
                .limit(limit)
            ).all()
        return [
            Waiting(str(id_), _partition(repo, installation), float(received))
            for id_, repo, installation, received in rows
        ]

    def in_flight(self) -> dict[str, int]:
        """Deliveries whose workflow is enqueued or running, by partition key."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(deliveries.c.repository, deliveries.c.installation_id, sa.func.count())
                .where(deliveries.c.status == "queued")
                .where(deliveries.c.dispatched_at.is_not(None))
                .group_by(deliveries.c.repository, deliveries.c.installation_id)
            ).all()
        counts: dict[str, int] = {}
        for repo, installation, count in rows:
            key = _partition(repo, installation)
            counts[key] = counts.get(key, 0) + int(count)
        return counts

    def dispatched_before(self, cutoff: float, limit: int = 500) -> list[str]:
        """Queued deliveries whose workflow was enqueued before `cutoff`."""
        with self.engine.connect() as connection:
            return list(
                connection.execute(
                    sa.select(deliveries.c.id)
                    .where(deliveries.c.status == "queued")
                    .where(deliveries.c.dispatched_at < cutoff)
                    .order_by(deliveries.c.dispatched_at)
                    .limit(limit)
                ).scalars()
            )

    def mark_dispatched(self, ids: Sequence[str]) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                sa.update(deliveries)
                .where(deliveries.c.id.in_(list(ids)))
                .values(dispatched_at=self.clock())
            )

    def list_deliveries(self, limit: int = 100, status: str | None = None) -> list[DeliveryRow]:
        query = sa.select(*[c for c in deliveries.c if c.name != "body"])
        if status is not None:
            query = query.where(deliveries.c.status == status)
        query = query.order_by(deliveries.c.received_at.desc()).limit(limit)
        with self.engine.connect() as connection:
            return [_delivery_row(row._mapping) for row in connection.execute(query)]

    def delivery_counts(self) -> list[tuple[str, str, int]]:
        """(event, status, count) over all stored deliveries, for /metrics."""
        query = sa.select(deliveries.c.event, deliveries.c.status, sa.func.count()).group_by(
            deliveries.c.event, deliveries.c.status
        )
        with self.engine.connect() as connection:
            return [(str(e), str(s), int(n)) for e, s, n in connection.execute(query)]

    def review_figures(self) -> dict[str, Any]:
        """Tasks by state, escalations, and the review's record, for /metrics."""
        with self.engine.connect() as connection:
            states = connection.execute(
                sa.select(tasks.c.state, sa.func.count()).group_by(tasks.c.state)
            ).all()
            raised = connection.execute(
                sa.select(escalations.c.level, escalations.c.category, sa.func.count())
                .where(escalations.c.resolved_at.is_(None))
                .group_by(escalations.c.level, escalations.c.category)
            ).all()
            reviewed, reworked, rounds, merged, clean = connection.execute(
                sa.select(
                    sa.func.count(),
                    sa.func.count().filter(pulls.c.fix_rounds > 0),
                    sa.func.coalesce(sa.func.sum(pulls.c.fix_rounds), 0),
                    sa.func.count().filter(pulls.c.merged_sha.is_not(None)),
                    sa.func.count().filter(
                        sa.and_(pulls.c.merged_sha.is_not(None), pulls.c.fix_rounds == 0)
                    ),
                )
            ).one()
            retries = connection.execute(sa.select(sa.func.count()).select_from(ci_retries))
        return {
            "tasks": [(str(state), int(n)) for state, n in states],
            "escalations": [(str(level), str(kind), int(n)) for level, kind, n in raised],
            "pulls_reviewed": int(reviewed),
            "pulls_reworked": int(reworked),
            "fix_rounds": int(rounds),
            "pulls_merged": int(merged),
            "pulls_merged_clean": int(clean),
            "ci_retries": int(retries.scalar_one()),
        }

    # audit ----------------------------------------------------------------------------------

    def record(self, *entries: AuditEntry) -> None:
        if not entries:
            return
        now = self.clock()
        with self.engine.begin() as connection:
            connection.execute(
                sa.insert(audit),
                [
                    {
                        "at": entry.at if entry.at is not None else now,
                        "delivery_id": entry.delivery_id,
                        "repository": entry.repository,
                        "kind": entry.kind,
                        "what": entry.what,
                        "why": entry.why,
                        "detail": entry.detail,
                    }
                    for entry in entries
                ],
            )

    def has_decision(self, delivery_id: str) -> bool:
        with self.engine.connect() as connection:
            return (
                connection.execute(
                    sa.select(audit.c.id)
                    .where(audit.c.delivery_id == delivery_id)
                    .where(audit.c.kind == "decision")
                    .limit(1)
                ).first()
                is not None
            )

    def audit_log(self, limit: int = 100, delivery_id: str | None = None) -> list[AuditEntry]:
        query = sa.select(audit)
        if delivery_id is not None:
            query = query.where(audit.c.delivery_id == delivery_id)
        query = query.order_by(audit.c.id.desc()).limit(limit)
        with self.engine.connect() as connection:
            rows = list(connection.execute(query))
        return [
            AuditEntry(
                kind=row.kind,
                what=row.what,
                why=row.why,
                delivery_id=row.delivery_id,
                repository=row.repository,
                detail=row.detail,
                at=row.at,
            )
            for row in reversed(rows)
        ]

    # effect keys: at-most-once intent for effects that are not idempotent by nature -------

    def begin_effect(self, key: str) -> bool:
        """Claim `key`; False when an earlier (crashed or finished) attempt already claimed it."""
        dialect = sqlite if self.is_sqlite else postgresql
        statement = (
            dialect.insert(effects)
            .values(key=key, started_at=self.clock())
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(effects.c.key)
        )
        with self.engine.begin() as connection:
            return connection.execute(statement).first() is not None

    def finish_effect(self, key: str, result: str | None = None) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                sa.update(effects)
                .where(effects.c.key == key)
                .values(finished_at=self.clock(), result=result)
            )

    def effect_result(self, key: str) -> str | None:
        """What a finished effect left to remember (the id of a check run it created)."""
        with self.engine.connect() as connection:
            value = connection.execute(
                sa.select(effects.c.result).where(effects.c.key == key)
            ).scalar_one_or_none()
        return str(value) if value is not None else None

    def effect_finished(self, key: str) -> bool:
        with self.engine.connect() as connection:
            value = connection.execute(
                sa.select(effects.c.finished_at).where(effects.c.key == key)
            ).scalar_one_or_none()
        return value is not None

    # redeliveries ---------------------------------------------------------------------------

    def redelivery_requests(self, guids: Iterable[str]) -> dict[str, tuple[int, int]]:
        """guid -> (the attempt last asked for, how many times asked)."""
        wanted = list(set(guids))
        found: dict[str, tuple[int, int]] = {}
        with self.engine.connect() as connection:
            for start in range(0, len(wanted), 500):
                rows = connection.execute(
                    sa.select(
                        redeliveries.c.guid,
                        redeliveries.c.hook_delivery_id,
                        redeliveries.c.requests,
                    ).where(redeliveries.c.guid.in_(wanted[start : start + 500]))
                )
                found.update({str(g): (int(h), int(n)) for g, h, n in rows})
        return found

    def mark_redelivery(self, guid: str, hook_delivery_id: int) -> bool:
        """Record a request for this attempt; False when another process already made it."""
        dialect = sqlite if self.is_sqlite else postgresql
        now = self.clock()
        statement = dialect.insert(redeliveries).values(
            guid=guid, hook_delivery_id=hook_delivery_id, requested_at=now, requests=1
        )
        statement = statement.on_conflict_do_update(
            index_elements=["guid"],
            set_={
                "hook_delivery_id": hook_delivery_id,
                "requested_at": now,
                "requests": redeliveries.c.requests + 1,
            },
            # compare-and-set: only a request for a newer attempt than the last one counts
            where=redeliveries.c.hook_delivery_id < hook_delivery_id,
        ).returning(redeliveries.c.guid)
        with self.engine.begin() as connection:
            return connection.execute(statement).first() is not None

    def forget_redelivery(self, guid: str, hook_delivery_id: int) -> None:
        """Undo a request GitHub refused, so the next pass asks again."""
        with self.engine.begin() as connection:
            row = connection.execute(
                sa.select(redeliveries.c.requests).where(redeliveries.c.guid == guid)
            ).first()
            if row is None:
                return
            if int(row[0]) <= 1:
                connection.execute(sa.delete(redeliveries).where(redeliveries.c.guid == guid))
            else:
                # "asked for something older than this attempt": the next pass asks again
                connection.execute(
                    sa.update(redeliveries)
                    .where(redeliveries.c.guid == guid)
                    .values(
                        requests=redeliveries.c.requests - 1,
                        hook_delivery_id=hook_delivery_id - 1,
                    )
                )

    # workers --------------------------------------------------------------------------------

    def _db_now(self) -> sa.ColumnElement[float]:
        """The database's clock as epoch seconds: one clock for every machine's workers."""
        if self.is_sqlite:
            return sa.literal_column("((julianday('now') - 2440587.5) * 86400.0)")
        return sa.literal_column("extract(epoch from clock_timestamp())")

    def touch_worker(self, executor_id: str) -> None:
        dialect = sqlite if self.is_sqlite else postgresql
        now = self._db_now()
        statement = dialect.insert(workers).values(executor_id=executor_id, last_seen=now)
        statement = statement.on_conflict_do_update(
            index_elements=["executor_id"], set_={"last_seen": now}
        )
        with self.engine.begin() as connection:
            connection.execute(statement)

    def dead_workers(self, me: str, silent_for: float) -> list[str]:
        """Workers whose last heartbeat is older than `silent_for` by the database's clock.

        Recovering one is idempotent (DBOS re-enqueues a pending workflow once), so two
        live workers may both act on the same dead one; there is no claim to be left
        half-done by a worker that dies while recovering.
        """
        with self.engine.connect() as connection:
            return list(
                connection.execute(
                    sa.select(workers.c.executor_id)
                    .where(workers.c.last_seen < self._db_now() - silent_for)
                    .where(workers.c.executor_id != me)
                ).scalars()
            )

    def live_workers(self, silent_for: float) -> int:
        with self.engine.connect() as connection:
            return int(
                connection.execute(
                    sa.select(sa.func.count())
                    .select_from(workers)
                    .where(workers.c.last_seen >= self._db_now() - silent_for)
                ).scalar_one()
            )

    def forget_worker(self, executor_id: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(sa.delete(workers).where(workers.c.executor_id == executor_id))

    # pauses (the kill switch) ---------------------------------------------------------------

    def is_paused(self, repository: str | None) -> bool:
        # GitHub's repository names are case-insensitive
        names = [ALL_REPOSITORIES] + ([repository.lower()] if repository else [])
        with self.engine.connect() as connection:
            return (
                connection.execute(
                    sa.select(pauses.c.repository).where(pauses.c.repository.in_(names))
                ).first()
                is not None
            )

    def pause(self, repository: str, by: str) -> bool:
        """Stop automatic action in a repository (or `*`: everywhere); False if already."""
        dialect = sqlite if self.is_sqlite else postgresql
        statement = (
            dialect.insert(pauses)
            .values(repository=repository.lower(), since=self.clock(), by=by)
            .on_conflict_do_nothing(index_elements=["repository"])
            .returning(pauses.c.repository)
        )
        with self.engine.begin() as connection:
            return connection.execute(statement).first() is not None

    def resume(self, repository: str) -> bool:
        with self.engine.begin() as connection:
            result = connection.execute(sa.delete(pauses).where(pauses.c.repository == repository))
            return bool(result.rowcount)

    def pauses(self) -> list[tuple[str, float, str]]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(pauses.c.repository, pauses.c.since, pauses.c.by).order_by(
                    pauses.c.repository
                )
            ).all()
        return [(str(r), float(t), str(b)) for r, t, b in rows]

    # tasks ----------------------------------------------------------------------------------

    def task(self, repo: str, number: int) -> Task | None:
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(
                    tasks.c.state,
                    tasks.c.previous_state,
                    tasks.c.agent,
                    tasks.c.agent_name,
                    tasks.c.assignment,
                )
                .where(tasks.c.repo == repo)
                .where(tasks.c.number == number)
            ).first()
        if row is None:
            return None
        return _task(repo, number, row)

    def set_task_agent(self, repo: str, number: int, agent: str | None) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                sa.update(tasks)
                .where(tasks.c.repo == repo)
                .where(tasks.c.number == number)
                .values(agent=agent, updated_at=self.clock())
            )

    def transition(
        self,
        repo: str,
        number: int,
        from_state: str | None,
        to_state: str,
        previous: str | None,
        *,
        event: str = "",
        reason: str = "",
        agent: str | None = None,
        agent_name: str | None = None,
        expect_assignment: int | None = None,
        exclude: str | None = None,
    ) -> Literal["moved", "already", "conflict"]:
        """Compare-and-set: move the task only if it is still in `from_state` (and, when
        `expect_assignment` is given, still at that assignment).

        "already": it is in `to_state` with that return stack (a re-run of this very move);
        "conflict": it is somewhere else (something moved it since the decision).
        An `assign` gives the task to `agent` (a new assignment, not yet acknowledged); an
        `acknowledge` records when; a `requeue` clears the agent and excludes `exclude`.
        Every move is kept in the `transitions` history.
        """
        now = self.clock()
        with self.engine.begin() as connection:
            if from_state is None:
                dialect = sqlite if self.is_sqlite else postgresql
                statement = (
                    dialect.insert(tasks)
                    .values(
                        repo=repo,
                        number=number,
                        state=to_state,
                        previous_state=previous,
                        created_at=now,
                        updated_at=now,
                        state_since=now,
                    )
                    .on_conflict_do_nothing(index_elements=["repo", "number"])
                    .returning(tasks.c.number)
                )
                moved = connection.execute(statement).first() is not None
            else:
                values: dict[str, Any] = {
                    "state": to_state,
                    "previous_state": previous,
                    "updated_at": now,
                    "state_since": now,
                    "level": 0,
                }
                if exclude:
                    current = connection.execute(
                        sa.select(tasks.c.excluded)
                        .where(tasks.c.repo == repo)
                        .where(tasks.c.number == number)
                    ).scalar_one_or_none()
                    names = {n for n in (current or "").split(",") if n} | {exclude}
                    values["excluded"] = ",".join(sorted(names))
                if event in ("assign", "hand_over"):
                    values.update(
                        agent=agent,
                        agent_name=agent_name,
                        assignment=tasks.c.assignment + 1,
                        assigned_at=now,
                        acked_at=None,
                    )
                elif event == "acknowledge":
                    values["acked_at"] = now
                elif event in ("requeue", "cancel"):
                    values.update(agent=None, agent_name=None)
                update = (
                    sa.update(tasks)
                    .where(tasks.c.repo == repo)
                    .where(tasks.c.number == number)
                    .where(tasks.c.state == from_state)
                )
                if expect_assignment is not None:
                    update = update.where(tasks.c.assignment == expect_assignment)
                moved = bool(connection.execute(update.values(**values)).rowcount)
            if moved:
                after = connection.execute(
                    sa.select(tasks.c.agent_name)
                    .where(tasks.c.repo == repo)
                    .where(tasks.c.number == number)
                ).scalar_one_or_none()
                connection.execute(
                    sa.insert(transitions).values(
                        repo=repo,
                        number=number,
                        event=event or to_state,
                        from_state=from_state,
                        to_state=to_state,
                        agent=after,
                        at=now,
                        reason=reason[:2000],
                    )
                )
                return "moved"
            now_at = connection.execute(
                sa.select(tasks.c.state, tasks.c.previous_state, tasks.c.assignment)
                .where(tasks.c.repo == repo)
                .where(tasks.c.number == number)
            ).first()
        same = now_at is not None and (now_at.state, now_at.previous_state) == (to_state, previous)
        # a re-run of an assign finds the count one up; of anything else, unchanged
        counted = (
            expect_assignment is None
            or now_at is None
            or now_at.assignment
            == expect_assignment + (1 if event in ("assign", "hand_over") else 0)
        )
        if same and counted:
            return "already"
        return "conflict"

    def record_task(
        self,
        repo: str,
        number: int,
        *,
        title: str,
        body: str | None,
        labels: Sequence[str],
        depends_on: Sequence[int],
        created_at: float,
    ) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                sa.update(tasks)
                .where(tasks.c.repo == repo)
                .where(tasks.c.number == number)
                .values(
                    title=title[:512],
                    body=body,
                    labels=list(labels),
                    depends_on=sorted(set(depends_on)),
                    issue_created_at=created_at,
                )
            )

    def record_waiting(self, repo: str, number: int, waiting: str | None) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                sa.update(tasks)
                .where(tasks.c.repo == repo)
                .where(tasks.c.number == number)
                .values(waiting=waiting)
            )

    def record_level(self, repo: str, number: int, level: int, since: float) -> bool:
        """The escalation level the task's block reached; False when it was there already
        or the block the decision saw (started at `since`) is over."""
        with self.engine.begin() as connection:
            result = connection.execute(
                sa.update(tasks)
                .where(tasks.c.repo == repo)
                .where(tasks.c.number == number)
                .where(tasks.c.state == "blocked")
                .where(tasks.c.level < level)
                .where(sa.func.coalesce(tasks.c.state_since, tasks.c.updated_at) == since)
                .values(level=level)
            )
            return bool(result.rowcount)

    def clear_exclusions(self, repo: str, number: int) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                sa.update(tasks)
                .where(tasks.c.repo == repo)
                .where(tasks.c.number == number)
                .values(excluded=None)
            )

    def dispatch_tasks(self, repo: str) -> list[TaskFacts]:
        """The repository's tasks a dispatch pass looks at (all but the final ones)."""
        final = ("rejected", "done", "cancelled", "proposed")
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(tasks)
                .where(tasks.c.repo == repo)
                .where(tasks.c.state.not_in(final))
                .order_by(tasks.c.number)
            ).all()
            blocked = [int(row.number) for row in rows if row.state == "blocked"]
            why = self._block_reasons(connection, repo, blocked)
        return [
            TaskFacts(
                task=_task(repo, int(row.number), row),
                title=row.title or "",
                body=row.body,
                labels=tuple(row.labels or ()),
                depends_on=frozenset(int(n) for n in (row.depends_on or ())),
                created_at=float(row.issue_created_at or row.created_at),
                assigned_at=row.assigned_at,
                excluded=frozenset(n for n in (row.excluded or "").split(",") if n),
                waiting=row.waiting,
                # rows older than migration 0008 have no state_since: their last change
                state_since=float(row.state_since or row.updated_at),
                level=int(row.level or 0),
                blocked_why=why.get(int(row.number)),
            )
            for row in rows
        ]

    @staticmethod
    def _block_reasons(connection: sa.Connection, repo: str, numbers: list[int]) -> dict[int, str]:
        """Why each of these blocked tasks was blocked: the reason of its latest move."""
        if not numbers:
            return {}
        latest = (
            sa.select(transitions.c.number, sa.func.max(transitions.c.id).label("id"))
            .where(transitions.c.repo == repo)
            .where(transitions.c.number.in_(numbers))
            .where(transitions.c.to_state == "blocked")
            .group_by(transitions.c.number)
            .subquery()
        )
        rows = connection.execute(
            sa.select(transitions.c.number, transitions.c.reason).join(
                latest, transitions.c.id == latest.c.id
            )
        ).all()
        return {int(number): str(reason) for number, reason in rows}

    def finished_tasks(self, repo: str, numbers: Iterable[int]) -> set[int]:
        """Those of `numbers` that are tasks Nightshift finished (merged or done)."""
        wanted = sorted(set(numbers))
        if not wanted:
            return set()
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(tasks.c.number)
                .where(tasks.c.repo == repo)
                .where(tasks.c.number.in_(wanted))
                .where(tasks.c.state.in_(("merged", "done")))
            ).all()
        return {int(n) for (n,) in rows}

    def agent_loads(self) -> dict[str, int]:
        """Tasks each agent (roster name) holds, in every repository."""
        holding = ("assigned", "in_progress", "in_review", "changes_requested")
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(tasks.c.agent_name, sa.func.count())
                .where(tasks.c.agent_name.is_not(None))
                .where(tasks.c.state.in_(holding))
                .group_by(tasks.c.agent_name)
            ).all()
        return {str(name): int(count) for name, count in rows}

    # timers ---------------------------------------------------------------------------------

    def add_timer(self, repo: str, cause: str, installation_id: int, due_at: float) -> bool:
        """A dispatch pass to queue at `due_at`, once per (repo, cause); False when that
        timer exists already (set by an earlier pass, or fired)."""
        dialect = sqlite if self.is_sqlite else postgresql
        statement = (
            dialect.insert(timers)
            .values(repo=repo, cause=cause[:300], installation_id=installation_id, due_at=due_at)
            .on_conflict_do_nothing(index_elements=["repo", "cause"])
            .returning(timers.c.cause)
        )
        with self.engine.begin() as connection:
            return connection.execute(statement).first() is not None

    def due_timers(self, now: float, limit: int = 200) -> list[tuple[str, str, int]]:
        """(repo, cause, installation id) of the timers due and not fired, earliest first."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(timers.c.repo, timers.c.cause, timers.c.installation_id)
                .where(timers.c.fired_at.is_(None))
                .where(timers.c.due_at <= now)
                .order_by(timers.c.due_at)
                .limit(limit)
            ).all()
        return [(str(r), str(c), int(i)) for r, c, i in rows]

    def fired_timer(self, repo: str, cause: str, now: float) -> None:
        """The timer's pass is queued. The row stays a day, so a pass that asks for the same
        timer again (its cause names the deadline) does not set it twice."""
        with self.engine.begin() as connection:
            connection.execute(
                sa.update(timers)
                .where(timers.c.repo == repo)
                .where(timers.c.cause == cause)
                .values(fired_at=now)
            )
            connection.execute(
                sa.delete(timers).where(timers.c.fired_at < now - TIMER_KEPT_SECONDS)
            )

    def pending_timers(self, repo: str) -> list[tuple[str, float]]:
        """(cause, due at) of the repository's timers not fired yet."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(timers.c.cause, timers.c.due_at)
                .where(timers.c.repo == repo)
                .where(timers.c.fired_at.is_(None))
                .order_by(timers.c.due_at)
            ).all()
        return [(str(c), float(d)) for c, d in rows]

    # agents ---------------------------------------------------------------------------------

    def heartbeat(self, name: str, status: str, task: str | None, progress: int | None) -> None:
        now = self.clock()
        values = {
            "last_heartbeat": now,
            "status": status,
            "task": task,
            "progress": progress,
            "updated_at": now,
        }
        dialect = sqlite if self.is_sqlite else postgresql
        statement = dialect.insert(agents).values(name=name, **values)
        statement = statement.on_conflict_do_update(index_elements=["name"], set_=values)
        with self.engine.begin() as connection:
            connection.execute(statement)

    def mark_agent(
        self, name: str, *, offline: bool | None = None, unreachable: bool | None = None
    ) -> bool:
        """Record an agent offline/online or unreachable/reachable; False if already so."""
        now = self.clock()
        values: dict[str, Any] = {"updated_at": now}
        condition: Any = sa.true()
        if offline is not None:
            values["offline_since"] = now if offline else None
            condition = agents.c.offline_since.is_(None)
            if not offline:  # back: heard from again, so reachable too
                values["unreachable_since"] = None
                condition = sa.or_(
                    agents.c.offline_since.is_not(None), agents.c.unreachable_since.is_not(None)
                )
        if unreachable is not None:
            values["unreachable_since"] = now if unreachable else None
            condition = sa.true() if unreachable else agents.c.unreachable_since.is_not(None)
        with self.engine.begin() as connection:
            exists = connection.execute(
                sa.select(agents.c.name).where(agents.c.name == name)
            ).first()
            if exists is None:
                connection.execute(sa.insert(agents).values(name=name, **values))
                return True
            result = connection.execute(
                sa.update(agents).where(agents.c.name == name).where(condition).values(**values)
            )
            return bool(result.rowcount)

    def agent_statuses(self, names: Iterable[str] | None = None) -> dict[str, AgentStatus]:
        query = sa.select(agents)
        if names is not None:
            query = query.where(agents.c.name.in_(sorted(set(names))))
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        return {
            str(row.name): AgentStatus(
                name=str(row.name),
                last_heartbeat=row.last_heartbeat,
                task=row.task,
                offline_since=row.offline_since,
                unreachable_since=row.unreachable_since,
            )
            for row in rows
        }

    def remember_roster(self, repo: str, roster: Sequence[Agent]) -> None:
        """The repository's roster as a dispatch pass read it (the dashboard, `agents`)."""
        now = self.clock()
        with self.engine.begin() as connection:
            connection.execute(sa.delete(roster_agents).where(roster_agents.c.repo == repo))
            if roster:
                connection.execute(
                    sa.insert(roster_agents),
                    [
                        {
                            "repo": repo,
                            "name": agent.name,
                            "github": agent.github,
                            "capabilities": sorted(agent.capabilities),
                            "transport": agent.transport,
                            "endpoint": agent.endpoint,
                            "max_tasks": agent.max_tasks,
                            "backup": agent.backup,
                            "seen_at": now,
                        }
                        for agent in roster
                    ],
                )

    def roster_agent(self, repo: str, name: str) -> Agent | None:
        """The agent as the repository's roster listed it when a pass last read it."""
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(roster_agents)
                .where(roster_agents.c.repo == repo)
                .where(roster_agents.c.name == name)
            ).first()
        if row is None:
            return None
        return Agent(
            name=row.name,
            github=row.github,
            capabilities=frozenset(row.capabilities or ()),
            transport=row.transport,
            endpoint=row.endpoint,
            max_tasks=int(row.max_tasks),
            backup=row.backup,
            line=0,
        )

    def rostered_in(self, name: str) -> list[str]:
        """The repositories whose roster (as last read) lists the agent."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(roster_agents.c.repo).where(roster_agents.c.name == name)
            ).all()
        return sorted(str(r) for (r,) in rows)

    def roster_snapshot(self) -> list[dict[str, Any]]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(roster_agents).order_by(roster_agents.c.name, roster_agents.c.repo)
            ).all()
        return [dict(row._mapping) for row in rows]

    def installation_of(self, repo: str) -> int | None:
        """The installation of the repository's latest delivery."""
        with self.engine.connect() as connection:
            value = connection.execute(
                sa.select(deliveries.c.installation_id)
                .where(deliveries.c.repository == repo)
                .where(deliveries.c.installation_id.is_not(None))
                .order_by(deliveries.c.received_at.desc())
                .limit(1)
            ).scalar_one_or_none()
        return int(value) if value is not None else None

    def watch_list(self) -> list[tuple[str, int, str, str | None]]:
        """(repo, number, state, agent name) of every task queued, assigned or in progress:
        what the dispatch watchdog looks at."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(tasks.c.repo, tasks.c.number, tasks.c.state, tasks.c.agent_name).where(
                    tasks.c.state.in_(("assigned", "in_progress", "queued"))
                )
            ).all()
        return [(str(r), int(n), str(s), a) for r, n, s, a in rows]

    def open_escalations(self, repo: str, prefix: str) -> tuple[bool, int]:
        """Whether an escalation whose key starts with `prefix` is open, and how many there
        were in all."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(escalations.c.resolved_at)
                .where(escalations.c.repo == repo)
                .where(escalations.c.key.startswith(prefix))
            ).all()
        return any(r is None for (r,) in rows), len(rows)

    def tasks_by_state(self, repo: str | None = None) -> list[tuple[str, int, str, float]]:
        query = sa.select(tasks.c.repo, tasks.c.number, tasks.c.state, tasks.c.updated_at)
        if repo is not None:
            query = query.where(tasks.c.repo == repo)
        with self.engine.connect() as connection:
            rows = connection.execute(query.order_by(tasks.c.repo, tasks.c.number)).all()
        return [(str(r), int(n), str(s), float(t)) for r, n, s, t in rows]

    # pull requests under review --------------------------------------------------------------

    def pull(self, repo: str, number: int) -> Pull | None:
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(pulls).where(pulls.c.repo == repo).where(pulls.c.number == number)
            ).first()
        return _pull(row) if row is not None else None

    def pull_by_head(self, repo: str, head_sha: str) -> Pull | None:
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(pulls)
                .where(pulls.c.repo == repo)
                .where(pulls.c.head_sha == head_sha)
                .order_by(pulls.c.updated_at.desc())
            ).first()
        return _pull(row) if row is not None else None

    def pull_by_merge(self, repo: str, merged_sha: str) -> Pull | None:
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(pulls).where(pulls.c.repo == repo).where(pulls.c.merged_sha == merged_sha)
            ).first()
        return _pull(row) if row is not None else None

    def record_pull(
        self, repo: str, number: int, task: int, head_sha: str, author: str, fork: bool
    ) -> None:
        """Track the pull request at this head; its rounds and approvals are kept."""
        dialect = sqlite if self.is_sqlite else postgresql
        now = self.clock()
        values = {"task": task, "head_sha": head_sha, "author": author, "fork": fork}
        statement = (
            dialect.insert(pulls)
            .values(repo=repo, number=number, created_at=now, updated_at=now, **values)
            .on_conflict_do_update(
                index_elements=["repo", "number"], set_={**values, "updated_at": now}
            )
        )
        with self.engine.begin() as connection:
            connection.execute(statement)

    def record_tests(
        self, repo: str, number: int, head_sha: str, passed: int | None, failed: int | None
    ) -> bool:
        """The test counts of the review of `head_sha`; False when the pull request moved on
        to another head meanwhile (a late review must not overwrite the newer head's)."""
        with self.engine.begin() as connection:
            result = connection.execute(
                sa.update(pulls)
                .where(pulls.c.repo == repo)
                .where(pulls.c.number == number)
                .where(pulls.c.head_sha == head_sha)
                .values(tests_passed=passed, tests_failed=failed, updated_at=self.clock())
            )
        return bool(result.rowcount)

    def allow_tests(self, repo: str, number: int, head_sha: str, by: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                sa.update(pulls)
                .where(pulls.c.repo == repo)
                .where(pulls.c.number == number)
                .values(ok_to_test_sha=head_sha, ok_to_test_by=by, updated_at=self.clock())
            )

    def count_fix_round(self, repo: str, number: int, head_sha: str) -> bool:
        """One more round, unless this head's review already counted one (a re-run)."""
        with self.engine.begin() as connection:
            result = connection.execute(
                sa.update(pulls)
                .where(pulls.c.repo == repo)
                .where(pulls.c.number == number)
                .where(sa.or_(pulls.c.fix_round_sha.is_(None), pulls.c.fix_round_sha != head_sha))
                .values(
                    fix_rounds=pulls.c.fix_rounds + 1,
                    fix_round_sha=head_sha,
                    updated_at=self.clock(),
                )
            )
        return bool(result.rowcount)

    def mark_merged(self, repo: str, number: int, merged_sha: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                sa.update(pulls)
                .where(pulls.c.repo == repo)
                .where(pulls.c.number == number)
                .values(merged_sha=merged_sha, updated_at=self.clock())
            )

    def count_ci_retry(self, repo: str, head_sha: str, run: str) -> bool:
        """Count a re-run of `run` for the head; False when it was counted already."""
        dialect = sqlite if self.is_sqlite else postgresql
        statement = (
            dialect.insert(ci_retries)
            .values(repo=repo, head_sha=head_sha, run=run, at=self.clock())
            .on_conflict_do_nothing(index_elements=["repo", "head_sha", "run"])
            .returning(ci_retries.c.run)
        )
        with self.engine.begin() as connection:
            return connection.execute(statement).first() is not None

    def ci_retries(self, repo: str, head_sha: str) -> int:
        with self.engine.connect() as connection:
            value = connection.execute(
                sa.select(sa.func.count())
                .select_from(ci_retries)
                .where(ci_retries.c.repo == repo)
                .where(ci_retries.c.head_sha == head_sha)
            ).scalar_one()
        return int(value)

    # escalations ----------------------------------------------------------------------------

    def record_escalation(
        self,
        key: str,
        repo: str,
        number: int | None,
        level: str,
        category: str,
        summary: str,
        *,
        meanwhile: str | None = None,
        reversible: bool | None = None,
    ) -> bool:
        """Record an escalation once per key; False when it was recorded already."""
        dialect = sqlite if self.is_sqlite else postgresql
        statement = (
            dialect.insert(escalations)
            .values(
                key=key,
                repo=repo,
                number=number,
                level=level,
                category=category,
                summary=summary,
                created_at=self.clock(),
                meanwhile=meanwhile,
                reversible=reversible,
            )
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(escalations.c.key)
        )
        with self.engine.begin() as connection:
            return connection.execute(statement).first() is not None

    def resolve_escalation(self, key: str) -> bool:
        with self.engine.begin() as connection:
            result = connection.execute(
                sa.update(escalations)
                .where(escalations.c.key == key)
                .where(escalations.c.resolved_at.is_(None))
                .values(resolved_at=self.clock())
            )
            return bool(result.rowcount)

    def escalation_of_issue(self, repo: str, number: int) -> Escalation | None:
        """The open escalation whose urgent issue is `number` (its key's effect result)."""
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(escalations)
                .join(effects, effects.c.key == escalations.c.key)
                .where(escalations.c.repo == repo)
                .where(effects.c.result == str(number))
                .where(escalations.c.resolved_at.is_(None))
            ).first()
        if row is None:
            return None
        task = self.task(repo, int(row.number)) if row.number is not None else None
        return Escalation(
            key=str(row.key),
            level=str(row.level),
            category=str(row.category),
            task=int(row.number) if row.number is not None else None,
            task_state=task.state.value if task is not None else None,
            task_previous=tuple(s.value for s in task.previous) if task is not None else (),
        )

    def escalations(self, repo: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(escalations).order_by(escalations.c.created_at)
        if repo is not None:
            query = query.where(escalations.c.repo == repo)
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    # per-repository memory ----------------------------------------------------------------

    def reported_config_error(self, repository: str | None) -> str | None:
        if repository is None:
            return None
        with self.engine.connect() as connection:
            value = connection.execute(
                sa.select(repositories.c.reported_config_error).where(
                    repositories.c.name == repository
                )
            ).scalar_one_or_none()
        return str(value) if value is not None else None

    def set_reported_config_error(self, repository: str, problem: str | None) -> None:
        dialect = sqlite if self.is_sqlite else postgresql
        now = self.clock()
        statement = dialect.insert(repositories).values(
            name=repository, reported_config_error=problem, updated_at=now
        )
        statement = statement.on_conflict_do_update(
            index_elements=["name"], set_={"reported_config_error": problem, "updated_at": now}
        )
        with self.engine.begin() as connection:
            connection.execute(statement)


def _partition(repository: str | None, installation_id: int | None) -> str:
    """What serializes a delivery's processing: its repository, else its installation."""
    return repository or f"installation:{installation_id or '-'}"


def _task(repo: str, number: int, row: Any) -> Task:
    return Task(
        repo,
        number,
        TaskState(row.state),
        parse_previous(row.previous_state),
        row.agent,
        row.agent_name,
        int(row.assignment or 0),
    )


def _pull(row: Any) -> Pull:
    return Pull(
        repo=row.repo,
        number=row.number,
        task=row.task,
        head_sha=row.head_sha,
        author=row.author,
        fork=bool(row.fork),
        fix_rounds=row.fix_rounds,
        fix_round_sha=row.fix_round_sha,
        ok_to_test_sha=row.ok_to_test_sha,
        merged_sha=row.merged_sha,
    )


def _delivery_row(row: Any) -> DeliveryRow:
    return DeliveryRow(
        id=row["id"],
        event=row["event"],
        action=row["action"],
        repository=row["repository"],
        installation_id=row["installation_id"],
        received_at=row["received_at"],
        status=row["status"],
        dispatched_at=row["dispatched_at"],
        finished_at=row["finished_at"],
        error=row["error"],
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL: an acknowledged delivery survives power loss too, not only a killed process
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
