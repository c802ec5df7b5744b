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
