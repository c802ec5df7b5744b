"""Prometheus metrics: one registry per process, built in the entry point and passed down."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from app.effects.store import Store


class _StoreCollector(Collector):
    """Figures read from the shared database at scrape time, so every process agrees."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
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

    def _reviews(self) -> Iterator[GaugeMetricFamily]:
        figures = self.store.review_figures()
        tasks = GaugeMetricFamily("nightshift_tasks", "Tasks by state.", labels=["state"])
        for state, count in figures["tasks"]:
            tasks.add_metric([state], count)
        yield tasks
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
        if store is not None:
            self.registry.register(_StoreCollector(store))
