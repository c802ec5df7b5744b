"""Prometheus metrics: one registry per process, built in the entry point and passed down."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from app.effects.store import Store
from app.effects.tables import escalations, transitions

# Upper bounds, in seconds, of the task histograms: 5 minutes to 2 days (+Inf is added).
CYCLE_BUCKETS: tuple[float, ...] = (
    300,
    900,
    1800,
    3600,
    2 * 3600,
    4 * 3600,
    8 * 3600,
    12 * 3600,
    24 * 3600,
    48 * 3600,
)
# a stay in one state can be short (assigned -> acknowledged), so these start at a minute
STAY_BUCKETS: tuple[float, ...] = (60, *CYCLE_BUCKETS)

ACCEPTED = "queued"  # the first move here is the task's accept (or approve)
FINISHED = ("merged", "done")


class _StoreCollector(Collector):
    """Figures read from the shared database at scrape time, so every process agrees."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        # a gauge, not a counter: `nightshift prune` forgets old deliveries, and a counter
        # that goes down would read as a reset to Prometheus
        deliveries = GaugeMetricFamily(
            "nightshift_deliveries_stored",
            "Stored webhook deliveries by event and outcome (queued, done, ignored, failed).",
            labels=["event", "outcome"],
        )
        depth = GaugeMetricFamily(
            "nightshift_queue_depth", "Deliveries stored and not yet processed."
        )
        queued = 0
        for event, status, count in self.store.delivery_counts():
            deliveries.add_metric([event, status], count)
            if status == "queued":
                queued += count
        depth.add_metric([], queued)
        yield deliveries
        yield depth
        yield from self._reviews()
        yield from self._escalations_raised()
        # histograms rebuilt from the task history on every scrape: their counts only grow
        # because `nightshift prune` keeps transitions (if it ever forgets them, they would
        # read as a counter reset, which rate() and histogram_quantile() tolerate)
        yield self._cycle_time()
        yield self._state_stays()

    def _reviews(self) -> Iterator[Metric]:
        figures = self.store.review_figures()
        tasks = GaugeMetricFamily("nightshift_tasks", "Tasks by state.", labels=["state"])
        for state, count in figures["tasks"]:
            tasks.add_metric([state], count)
        yield tasks
        blocked = GaugeMetricFamily(
            "nightshift_tasks_blocked",
            'Tasks in state blocked now (nightshift_tasks{state="blocked"}, but 0 when none).',
        )
        blocked.add_metric([], sum(n for state, n in figures["tasks"] if state == "blocked"))
        yield blocked
        raised = GaugeMetricFamily(
            "nightshift_escalations_open",
            "Escalations not yet resolved, by level (immediate, deferred) and kind.",
            labels=["level", "kind"],
        )
        for level, kind, count in figures["escalations"]:
            raised.add_metric([level, kind], count)
        yield raised
        for name, text, key in (
            ("nightshift_pulls_reviewed", "Pull requests of tasks reviewed.", "pulls_reviewed"),
            ("nightshift_pulls_merged", "Pull requests of tasks merged.", "pulls_merged"),
            ("nightshift_fix_rounds", "Fix-instruction rounds sent, all PRs.", "fix_rounds"),
            ("nightshift_ci_retries", "CI re-runs requested, all heads.", "ci_retries"),
        ):
            gauge = GaugeMetricFamily(name, text)
            gauge.add_metric([], figures[key])
            yield gauge
        reviewed, merged = figures["pulls_reviewed"], figures["pulls_merged"]
        rework = GaugeMetricFamily(
            "nightshift_rework_rate", "Share of reviewed PRs that needed changes (0..1)."
        )
        rework.add_metric([], figures["pulls_reworked"] / reviewed if reviewed else 0.0)
        yield rework
        handoff = GaugeMetricFamily(
            "nightshift_handoff_quality", "Share of merged PRs merged without changes (0..1)."
        )
        handoff.add_metric([], figures["pulls_merged_clean"] / merged if merged else 0.0)
        yield handoff

    def _escalations_raised(self) -> Iterator[Metric]:
        # one GROUP BY over the escalations table (a few rows per task at most)
        query = sa.select(escalations.c.level, escalations.c.category, sa.func.count()).group_by(
            escalations.c.level, escalations.c.category
        )
        with self.store.engine.connect() as connection:
            rows = connection.execute(query).all()
        raised = GaugeMetricFamily(
            "nightshift_escalations_raised",
            "Escalations ever raised, open or resolved, by level (immediate, deferred) and kind "
            "(the escalation's category); nightshift_escalations_open has the open ones.",
            labels=["level", "kind"],
        )
        for level, kind, count in rows:
            raised.add_metric([str(level), str(kind)], int(count))
        yield raised

    def _cycle_time(self) -> HistogramMetricFamily:
        """From a task's first move to `queued` (its accept or approve; a requeue or unblock
        comes later) to its first move to `merged` or `done`, one observation per finished task.

        Cost: one scan of the transitions moving to queued, merged or done, grouped per task
        in the database; the buckets are counted there too, so one row comes back.
        """
        t = transitions
        accepted = sa.func.min(sa.case((t.c.to_state == ACCEPTED, t.c.at)))
        finished = sa.func.min(sa.case((t.c.to_state.in_(FINISHED), t.c.at)))
        per_task = (
            sa.select((finished - accepted).label("seconds"))
            .where(t.c.to_state.in_((ACCEPTED, *FINISHED)))
            .group_by(t.c.repo, t.c.number)
            # NULL (never accepted, or not finished yet) compares as unknown: left out
            .having(finished >= accepted)
            .subquery()
        )
        with self.store.engine.connect() as connection:
            row = connection.execute(_histogram_query(per_task.c.seconds, CYCLE_BUCKETS)).one()
        histogram = HistogramMetricFamily(
            "nightshift_task_cycle_seconds",
            "Seconds from a task's first accept or approve (moved to queued) to merged or done; "
            "one observation per finished task, read from the task history at scrape time.",
        )
        buckets, total = _buckets(row, CYCLE_BUCKETS)
        histogram.add_metric([], buckets, total)
        return histogram

    def _state_stays(self) -> HistogramMetricFamily:
        """Every completed stay of a task in a state: from the move into it to the next move.

        Cost: one window function (LEAD) over the whole transitions table, sorted per task,
        aggregated per state in the database; one row per state comes back.
        """
        t = transitions
        stays = sa.select(
            t.c.to_state.label("state"),
            t.c.at,
            sa.func.lead(t.c.at, type_=sa.Float)
            .over(partition_by=(t.c.repo, t.c.number), order_by=(t.c.at, t.c.id))
            .label("left_at"),
        ).subquery()
        seconds = stays.c.left_at - stays.c.at
        query = (
            _histogram_query(seconds, STAY_BUCKETS)
            .add_columns(stays.c.state)
            .where(stays.c.left_at.is_not(None))  # the current stay has not ended
            .group_by(stays.c.state)
            .order_by(stays.c.state)
        )
        with self.store.engine.connect() as connection:
            rows = connection.execute(query).all()
        histogram = HistogramMetricFamily(
            "nightshift_task_state_seconds",
            "Seconds tasks spent in each state, one observation per completed stay (entered "
            "and left again; the stays still going on are not counted), by state.",
            labels=["state"],
        )
        for row in rows:
            buckets, total = _buckets(row, STAY_BUCKETS)
            histogram.add_metric([str(row[-1])], buckets, total)
        return histogram


def _histogram_query(
    seconds: sa.ColumnElement[float], bounds: Sequence[float]
) -> sa.Select[*tuple[Any, ...]]:
    """count, sum, then the cumulative count at or below each bound."""
    return sa.select(
        sa.func.count(seconds),
        sa.func.coalesce(sa.func.sum(seconds), 0.0),
        *(sa.func.count(seconds).filter(seconds <= bound) for bound in bounds),
    )


def _buckets(row: Sequence[Any], bounds: Sequence[float]) -> tuple[list[tuple[str, float]], float]:
    """The (le, cumulative count) pairs and the sum of a `_histogram_query` row (the bounds
    are whole seconds, so str(float) writes them as prometheus_client does: "300.0")."""
    count, total, *cumulative = row[: 2 + len(bounds)]
    buckets = [(str(float(b)), float(n)) for b, n in zip(bounds, cumulative, strict=True)]
    buckets.append(("+Inf", float(count)))
    return buckets, float(total)


class _RateLimits(Collector):
    """What GitHub last said was left of this process's rate limit, by resource.

    Per process: each process making GitHub calls (web, workers) reports what its own calls
    saw on its /metrics. Nothing is exported before the first response with the header.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._remaining: dict[str, float] = {}

    def observe(self, headers: Mapping[str, str]) -> None:
        lowered = {key.lower(): value for key, value in headers.items()}
        value = lowered.get("x-ratelimit-remaining")
        if value is None:
            return
        try:
            remaining = float(value)
        except ValueError:
            return
        # core, graphql, search...: each has its own limit, and search's 30 a minute
        # must not read as the core limit running out
        resource = lowered.get("x-ratelimit-resource") or "core"
        with self._lock:
            self._remaining[resource] = remaining

    def clear(self) -> None:
        with self._lock:
            self._remaining.clear()

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "nightshift_github_rate_limit_remaining",
            "Requests left in GitHub's current rate-limit window, by resource (core, graphql, "
            "search...), from the x-ratelimit-remaining header of this process's latest "
            "response; absent until a response carried it.",
            labels=["resource"],
        )
        with self._lock:
            seen = sorted(self._remaining.items())
        for resource, remaining in seen:
            gauge.add_metric([resource], remaining)
        yield gauge


RATE_LIMITS = _RateLimits()


def observe_rate_limit(headers: Mapping[str, str]) -> None:
    """Note the rate limit left from a GitHub response's headers (any case); other
    responses (no header, e.g. a failure before GitHub answered) change nothing."""
    RATE_LIMITS.observe(headers)


class Metrics:
    def __init__(self, store: Store | None = None) -> None:
        self.registry = CollectorRegistry()
        self.ingress_requests = Counter(
            "nightshift_ingress_requests",
            "Webhook requests by HTTP status.",
            ["status"],
            registry=self.registry,
        )
        self.ingress_seconds = Histogram(
            "nightshift_ingress_seconds",
            "Time to verify, store and acknowledge one webhook request.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.handling_seconds = Histogram(
            "nightshift_delivery_handling_seconds",
            "Time to decide and carry out one delivery in a worker, by event.",
            ["event"],
            registry=self.registry,
        )
        self.inbox_journaled = Gauge(
            "nightshift_inbox_journaled",
            "Deliveries acknowledged and waiting in the inbox journal (SQLite) to be moved "
            "into the table, where nightshift_queue_depth counts them.",
            registry=self.registry,
        )
        self.registry.register(RATE_LIMITS)
        if store is not None:
            self.registry.register(_StoreCollector(store))

    def watch_inbox(self, journaled: Callable[[], int]) -> None:
        """Read the inbox's count of journaled deliveries at each scrape."""
        self.inbox_journaled.set_function(journaled)
