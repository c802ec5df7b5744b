"""Wiring: the store, GitHub, the executor and the DBOS engine, built once per process.

Roles: `serve` runs the ingress and (unless --no-workers) the workers; `worker` runs only
workers. Workers pump stored deliveries from the inbox into delivery workflows, run those
workflows, recover the workflows of workers that died and never came back (PostgreSQL),
and reconcile missed deliveries.

The pump is what keeps a burst cheap: the ingress only commits to the inbox and wakes
the pump; the pump starts workflows as fast as the workers finish them, so a burst of
webhooks costs the ingress one group commit each and never thousands of engine writes at
once. A repository's deliveries run one at a time (rules read and change its state):
- with SQLite, one process runs every workflow: the pump starts each delivery's workflow
  itself, one per repository, and is woken when one ends. Nothing polls the engine for
  deliveries (DBOS's queue poll costs several ms of CPU, ten times a second);
- with PostgreSQL, several workers share DBOS's delivery queue, which serializes a
  repository across them; the pump enqueues (at most `IN_FLIGHT_PER_WORKER_SLOT` per
  concurrency slot, `IN_FLIGHT_PER_PARTITION` per repository).
While the ingress in this process is taking a burst (`watch_ingress`: SQLite's inbox has
been journaling deliveries for `BURST_AFTER` with no pause between them), the pump starts
nothing new unless a delivery has waited `YIELD_AT_MOST` seconds, and the engine's queues
poll every `QUIET_POLL` seconds instead of their usual fraction of a second (each poll
costs several ms of CPU and the GIL): webhooks must be answered within GitHub's 10 s,
processing can wait for the burst to pass. The journal moves its deliveries into the table
at each pause, and the pump, woken by that, starts them. (bench/ingest_designs.py,
2026-12-07, one round set each: 1.14x Probot's throughput with the queues polling as
usual under a burst, 1.40x without; the engine's threads took 240 of 900 CPU ticks of an
8 s burst before, about 30 after.)
"""

from __future__ import annotations

import logging
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from dbos import DBOS, SetEnqueueOptions, SetWorkflowID

from app.core.pump import Room, choose
from app.effects.agents import AgentMessages, ProjectCards
from app.effects.executor import Executor
from app.effects.git import Mirrors
from app.effects.github import GitHubApp, GitHubPort
from app.effects.projects import ProjectBoard
from app.effects.repo_config import ConfigSource
from app.effects.revert import Reverts
from app.effects.sandbox import Sandbox
from app.effects.store import NewDelivery, Store
from app.effects.transports import Transports
from app.engine.delivery import DELIVERY_QUEUE, ENGINE_VERSION, delivery_engine
from app.engine.dispatch import DISPATCH_QUEUE, TIMER_QUEUE, dispatch_engine, web_url_for
from app.engine.reconciler import reconcile
from app.engine.report import REPORT_QUEUE, report_engine
from app.engine.review import MERGEABLE_POLL_SECONDS, REVIEW_QUEUE, ReviewTools, review_engine
from app.metrics import Metrics
from app.settings import Settings, agent_secret

log = logging.getLogger("nightshift")

PUMP_INTERVAL = 0.25  # polling, for deliveries stored by another process
PUMP_MIN_GAP = 0.05
IN_FLIGHT_PER_WORKER_SLOT = 4
IN_FLIGHT_PER_PARTITION = 4  # deliveries of one repository enqueued at once
BURST_AFTER = 0.5  # seconds of deliveries coming in with no pause: a burst
YIELD_AT_MOST = 30.0  # seconds a stored delivery waits for a burst to pass, at most
QUIET_POLL = 2.0  # how often the engine's queues poll during a burst
QUIET_HOLD = 2.0  # seconds without a burst before they go back to their usual pace
LEFTOVER_POLL = 5.0  # queues that hold only what an earlier version enqueued
# how often each queue of this process's engine looks for work, outside a burst
QUEUE_POLL = {REVIEW_QUEUE: 0.5, DISPATCH_QUEUE: 0.5, REPORT_QUEUE: 1.0}
UNHEALTHY_AFTER_FAILURES = 5  # pump passes in a row
FENCED_EXIT = 75  # EX_TEMPFAIL: the orchestrator restarts the worker
REAP_INTERVAL = 30.0
RECONCILE_STARTUP_DELAY = 30.0
REAP_AFTER = 60.0  # seconds after dispatch before an unfinished row is looked at
HEARTBEAT_INTERVAL = 10.0
WATCHDOG_INTERVAL = 20.0  # how often agents' heartbeats are looked at
TIMER_INTERVAL = 1.0  # how often due dispatch timers are turned into passes
SPARE_IDLE = 24 * 3600.0  # a spare worktree nobody took for a day is removed (disk)
SPARE_EVICT_INTERVAL = 3600.0


def engine_database_url(database_url: str) -> str:
    """The DBOS system database: the same PostgreSQL database (schema `dbos`), or for SQLite
    a sibling file, so the engine's writes never wait on the inbox's group commits."""
    if not database_url.startswith("sqlite:///"):
        return database_url
    path = Path(database_url.removeprefix("sqlite:///"))
    stem = path.name.removesuffix(".db")
    return f"sqlite:///{path.with_name(stem + '.engine.db')}"


def _use_wal(url: str) -> None:
    """Put the engine's SQLite file in write-ahead-log mode (a lasting property of the file).

    DBOS leaves SQLite in its default rollback-journal mode, where every checkpoint creates
    and deletes a journal file with several fsyncs; with WAL a commit is one append and one
    fsync, and readers never block the writer.
    """
    if not url.startswith("sqlite:///"):
        return
    connection = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
    finally:
        connection.close()


def clone_url_for(api_url: str) -> Callable[[str], str]:
    """Where a repository is cloned from: github.com, or the Enterprise Server of the API URL
    (`https://HOST/api/v3` -> `https://HOST/owner/name.git`)."""
    base = api_url.rstrip("/")
    if base == "https://api.github.com":
        host = "https://github.com"
    else:
        host = base.removesuffix("/api/v3")

    def url(repo: str) -> str:
        return f"{host}/{repo}.git"

    return url


def default_executor_id(settings: Settings) -> str:
    if settings.executor_id:
        return settings.executor_id
    if not settings.is_postgres:
        return "local"  # one process: DBOS recovers its own pending workflows on restart
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class Runtime:
    def __init__(
        self,
        settings: Settings,
        *,
        github: GitHubPort | None = None,
        clock: Callable[[], float] = time.time,
        clone_url: Callable[[str], str] | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        # SQLite: this process is the only worker, so the pump starts workflows itself
        self.direct = not settings.is_postgres
        self.store = Store(settings.database_url, clock=clock)
        self.metrics = Metrics(self.store)
        if github is None and settings.has_app_credentials:
            assert settings.app_id is not None
            github = GitHubApp(
                settings.app_id,
                settings.app_private_key(),
                settings.github_api_url,
                write_interval=settings.write_interval_seconds,
            )
        self.github = github
        self.executor = Executor(self.store, github, dry_run=settings.dry_run)
        self.configs = ConfigSource(github)
        self.engine = delivery_engine().bind(
            self.store,
            self.executor,
            self.metrics,
            self.configs,
            settings.app_id,
            # SQLite: the pump starts a repository's next delivery when one ends
            on_finished=self.wake if self.direct else None,
        )
        self.mirrors = Mirrors(
            settings.cache_dir,
            clone_url=clone_url or clone_url_for(settings.github_api_url),
            spares=settings.spare_worktrees,
        )
        self.reviews = review_engine().bind(
            self.store,
            self.executor,
            github,
            self.configs,
            ReviewTools(
                mirrors=self.mirrors,
                sandbox=Sandbox(read_only_paths=settings.sandbox_readonly_paths),
                poll_seconds=settings.ci_poll_seconds,
                env_allowed=frozenset(settings.sandbox_env_allow),
                mergeable_poll_seconds=min(MERGEABLE_POLL_SECONDS, settings.ci_poll_seconds),
            ),
            system_database_url=engine_database_url(settings.database_url),
            version=ENGINE_VERSION,
        )
        self.executor.reviews = self.reviews
        self.dispatch = dispatch_engine().bind(
            self.store,
            self.executor,
            github,
            self.configs,
            system_database_url=engine_database_url(settings.database_url),
            version=ENGINE_VERSION,
            clock=clock,
            web_url=web_url_for(settings.github_api_url),
            public_url=getattr(settings, "public_url", None),
        )
        self.executor.dispatcher = self.dispatch
        self.report = report_engine().bind(
            self.store,
            self.executor,
            github,
            self.configs,
            system_database_url=engine_database_url(settings.database_url),
            version=ENGINE_VERSION,
            clock=clock,
        )
        self.executor.reports = self.report
        self.executor.agents = AgentMessages(
            self.store,
            Transports(github, secret_for=lambda agent: agent_secret(agent, "SECRET")),
        )
        if github is not None:
            self.executor.cards = ProjectCards(ProjectBoard(github), self.configs)
        if github is not None:
            self.executor.reverts = Reverts(github, self.mirrors)
        self.executor_id = default_executor_id(settings)
        self.workers = False
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._wake = threading.Event()
        self._last_heartbeat = time.monotonic()
        self._pump_failures = 0
        self._burst: Callable[[], float] = lambda: 0.0
        self._quiet = False
        self._loud_since = 0.0  # monotonic: when the last burst was seen, while quiet
        self._fence: Callable[[], None] = lambda: os._exit(FENCED_EXIT)

    # lifecycle ------------------------------------------------------------------------------

    def launch(self, *, workers: bool) -> None:
        """Migrate the store; with workers, start the engine and the background jobs.

        An ingress-only process needs no engine: it commits to the inbox, and the workers'
        pumps (which poll) start the workflows.
        """
        self.store.migrate()
        self.workers = workers
        if not workers:
            return
        _use_wal(engine_database_url(self.settings.database_url))
        DBOS(
            config={
                "name": "nightshift",
                "system_database_url": engine_database_url(self.settings.database_url),
                "application_version": ENGINE_VERSION,
                "executor_id": self.executor_id,
                "log_level": "WARNING",
            }
        )
        DBOS.launch()
        # one delivery per repository at a time: rules read and change per-repository state
        # (tasks, the configuration problem already reported), so they must not race. With
        # SQLite the pump starts them itself; the queue only drains what an earlier version
        # enqueued
        self.queue = DBOS.register_queue(
            DELIVERY_QUEUE,
            worker_concurrency=self.settings.worker_concurrency,
            partition_concurrency=1,
            polling_interval_sec=LEFTOVER_POLL if self.direct else 0.1,
        )
        # reviews check out and run code: few at once, one per repository (partition)
        DBOS.register_queue(
            REVIEW_QUEUE,
            worker_concurrency=self.settings.review_concurrency,
            partition_concurrency=1,
            polling_interval_sec=QUEUE_POLL[REVIEW_QUEUE],
        )
        # dispatch passes: one at a time per repository
        DBOS.register_queue(
            DISPATCH_QUEUE,
            worker_concurrency=self.settings.worker_concurrency,
            partition_concurrency=1,
            polling_interval_sec=QUEUE_POLL[DISPATCH_QUEUE],
        )
        # timers are rows now (app/engine/dispatch.py); the queue stays for timers queued
        # by an earlier version, which become rows when they run
        DBOS.register_queue(TIMER_QUEUE, polling_interval_sec=LEFTOVER_POLL)
        self.report.launch(
            schedule=self.settings.schedule_reports, polling_interval=QUEUE_POLL[REPORT_QUEUE]
        )  # registering also undoes a quiet pace a crash left in the engine's database
        self._spawn("watchdog", WATCHDOG_INTERVAL, self.dispatch.watch)
        self._spawn("timers", TIMER_INTERVAL, self.dispatch.fire_due)
        if self.settings.spare_worktrees:
            self._spawn("spares", SPARE_EVICT_INTERVAL, self.evict_spares)
        removed = self.mirrors.cleanup()
        if removed:
            log.warning("removed %d review worktree(s) left by an earlier crash", removed)
        self.store.touch_worker(self.executor_id)
        pump = threading.Thread(target=self._pump_loop, name="nightshift-pump", daemon=True)
        pump.start()
        self._threads.append(pump)
        interval = max(0.5, min(HEARTBEAT_INTERVAL, self.settings.dead_worker_seconds / 4))
        self._spawn("heartbeat", interval, self.heartbeat)
        if self.github is not None and not self.settings.dry_run:
            # the first pass waits until the ingress is surely listening: a redelivery asked
            # for before that would fail again
            self._spawn(
                "reconciler",
                self.settings.reconcile_interval_seconds,
                self.reconcile,
                first_delay=RECONCILE_STARTUP_DELAY,
            )

    def alive(self) -> bool:
        """The background work runs: the pump thread is up, nothing asked it to stop, and its
        last passes did not all fail (the database is reachable)."""
        pump = next((t for t in self._threads if t.name == "nightshift-pump"), None)
        return (
            pump is not None
            and pump.is_alive()
            and not self._stop.is_set()
            and self._pump_failures < UNHEALTHY_AFTER_FAILURES
        )

    def shutdown(self) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self.mirrors.settle(timeout=10)  # a spare cut short is removed at the next start
        self.reviews.close()
        self.dispatch.close()
        self.report.close()
        if self.workers:
            DBOS.destroy(workflow_completion_timeout_sec=5)
        self.store.dispose()

    def _spawn(
        self,
        name: str,
        interval: float,
        job: Callable[[], object],
        *,
        first_delay: float | None = None,
    ) -> None:
        def loop() -> None:
            if self._stop.wait(interval if first_delay is None else first_delay):
                return
            while True:
                try:
                    job()
                except Exception:
                    log.exception("background job %s failed; it runs again in %ss", name, interval)
                if self._stop.wait(interval):
                    return

        thread = threading.Thread(target=loop, name=f"nightshift-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    # work -----------------------------------------------------------------------------------

    def wake(self, _stored: Sequence[NewDelivery] = ()) -> None:
        """Tell the pump that deliveries were stored (the inbox calls this after a commit,
        with what it stored; the pump reads the inbox itself), or that a delivery's
        workflow ended (its repository may start the next)."""
        self._wake.set()

    def watch_ingress(self, burst: Callable[[], float]) -> None:
        """`burst()` says for how long deliveries have been coming in to this process's
        ingress with no pause (0: not now). Past `BURST_AFTER` the pump starts no workflow
        (for up to `YIELD_AT_MOST`) and the queues poll slowly. Only with SQLite: with
        PostgreSQL the ingress is another process, and the queues' polling intervals are
        shared by every worker."""
        if self.direct:
            self._burst = burst

    def _bursting(self) -> bool:
        return self._burst() > BURST_AFTER

    def _pace(self, bursting: bool) -> None:
        """Slow the engine's queues down during a burst; back to their usual pace once
        there was none for `QUIET_HOLD` (a burst with short pauses would otherwise switch
        them back and forth). A queue's worker takes a new interval after its current wait,
        and back from a slow one gradually: DBOS shortens it by a tenth per poll (from 2 s
        to 0.5 s in about 15 s)."""
        now = time.monotonic()
        if bursting:
            self._loud_since = now
        quiet = bursting or (self._quiet and now - self._loud_since < QUIET_HOLD)
        if quiet == self._quiet:
            return
        try:
            for name, usual in QUEUE_POLL.items():
                queue = DBOS.retrieve_queue(name)
                if queue is not None:
                    queue.set_polling_interval_sec(QUIET_POLL if quiet else usual)
        except Exception:  # the database is busy: tried again at the next pass
            log.warning("could not change the queues' polling pace", exc_info=True)
            return
        self._quiet = quiet

    def _pump_loop(self) -> None:
        next_reap = 0.0
        while not self._stop.is_set():
            self._pace(self._bursting())
            try:
                self.pump()
                if time.monotonic() >= next_reap:
                    self.reap()
                    next_reap = time.monotonic() + REAP_INTERVAL
                self._pump_failures = 0
            except Exception:
                self._pump_failures += 1
                log.exception("the pump failed; it tries again in %ss", PUMP_INTERVAL)
            # during a burst the inbox's moves wake the pump; nothing else needs it sooner
            self._wake.wait(QUIET_POLL if self._quiet else PUMP_INTERVAL)
            self._wake.clear()
            # under a burst the ingress wakes the pump after every commit; one pass per
            # PUMP_MIN_GAP is enough and leaves the CPU to the ingress
            self._stop.wait(PUMP_MIN_GAP)

    def pump(self) -> int:
        """Start or enqueue the workflows of stored deliveries, those app/core/pump.py
        chooses.

        Idempotent: the delivery GUID is the workflow id, so a delivery enqueued twice (two
        pumps, or a crash before `mark_dispatched`) still runs once.
        """
        in_flight = self.store.in_flight()
        if self.direct:  # nothing waits in a queue: as many run as are started
            room = Room(total=self.settings.worker_concurrency, per_partition=1)
        else:
            workers = self.store.live_workers(self.settings.dead_worker_seconds)
            slots = self.settings.worker_concurrency * max(1, workers)
            room = Room(slots * IN_FLIGHT_PER_WORKER_SLOT, IN_FLIGHT_PER_PARTITION)
        free = room.free(in_flight)
        if free <= 0:  # no room: not even a query for what waits
            return 0
        chosen = choose(
            self.store.undispatched(limit=free * 8),
            in_flight,
            room,
            bursting=self._bursting(),
            now=self.clock(),
            yield_at_most=YIELD_AT_MOST,
        )
        for delivery in chosen:
            self.start(delivery.id, delivery.partition)
        if chosen:
            self.store.mark_dispatched([delivery.id for delivery in chosen])
        return len(chosen)

    def reap(self, older_than: float = REAP_AFTER) -> int:
        """Finish the rows of workflows that ended without finishing them.

        A delivery workflow finishes its row as its last step; one that ended in an error
        the engine could not get past (or that is missing) would otherwise stay queued
        forever and hold a place in the pump.
        """
        finished = 0
        for delivery_id in self.store.dispatched_before(self.clock() - older_than):
            status = DBOS.get_workflow_status(delivery_id)
            if status is not None and status.status in ("PENDING", "ENQUEUED", "DELAYED"):
                continue
            if status is not None and status.status == "SUCCESS":
                result: object = DBOS.retrieve_workflow(delivery_id).get_result()
                self.store.finish_delivery(delivery_id, str(result))
            else:
                ended = status.status if status is not None else "missing"
                error = f"the workflow ended without finishing: {ended}"
                if status is not None and status.error is not None:
                    error += f" ({type(status.error).__name__}: {status.error})"
                self.store.finish_delivery(delivery_id, "failed", error)
            finished += 1
        return finished

    def start(self, delivery_id: str, partition: str) -> None:
        """Start (SQLite) or enqueue (PostgreSQL) the delivery's workflow; a second start
        returns the first one's handle and runs nothing."""
        if self.direct:
            with SetWorkflowID(delivery_id):
                DBOS.start_workflow(self.engine.handle, delivery_id)
            return
        with SetWorkflowID(delivery_id), SetEnqueueOptions(queue_partition_key=partition):
            self.queue.enqueue(self.engine.handle, delivery_id)

    def evict_spares(self) -> None:
        evicted = self.mirrors.evict_spares(SPARE_IDLE)
        if evicted:
            log.info("removed %d spare worktree(s) nobody took for a day", evicted)

    def heartbeat(self) -> None:
        """Say this worker is alive; recover the pending workflows of workers that are not.

        On PostgreSQL a dead worker's workflows stay PENDING under its executor id until a
        process with that id restarts, which may be never (a rescheduled pod gets a new
        id). Live workers re-enqueue the work of one silent for `dead_worker_seconds`.

        Fencing: a worker that cannot record its heartbeat for half that time stops at
        once, before anyone can presume it dead and run its workflows a second time.
        """
        try:
            self.store.touch_worker(self.executor_id)
        except Exception:
            silent = time.monotonic() - self._last_heartbeat
            # only workers that share a database can be presumed dead by another
            if self.settings.is_postgres and silent > self.settings.dead_worker_seconds / 2:
                log.critical(
                    "no heartbeat recorded for %.0fs: stopping this worker before another "
                    "one recovers its workflows",
                    silent,
                )
                self._fence()
            raise
        self._last_heartbeat = time.monotonic()
        for dead in self.store.dead_workers(self.executor_id, self.settings.dead_worker_seconds):
            handles = DBOS._recover_pending_workflows([dead])
            log.warning("recovered %d workflow(s) of dead worker %s", len(handles), dead)
            self.store.forget_worker(dead)

    def reconcile(self) -> None:
        assert self.github is not None
        result = reconcile(self.github, self.store, self.clock())
        if result.redelivered or result.failed:
            log.info(
                "reconciler: %d redelivered, %d failed of %d examined",
                len(result.redelivered),
                len(result.failed),
                result.examined,
            )
