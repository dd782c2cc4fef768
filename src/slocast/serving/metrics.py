"""Prometheus metrics of a prediction server, in a registry of its own (no global state)."""

from __future__ import annotations

import time
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["DomainCounters", "ServingMetrics"]

_LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0)
_BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)


@dataclass(frozen=True)
class DomainCounters:
    """One domain's series, bound once: ``labels()`` is a lock and a dict walk per call, which
    a one-row prediction would otherwise pay four times."""

    batch_size: Any
    predictions: Any
    cache_hits: Any
    cache_misses: Any


class ServingMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "slocast_requests",
            "Requests by route (HTTP route template or gRPC method) and status (HTTP status or "
            "gRPC code).",
            ["route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "slocast_request_latency_seconds",
            "Request latency by route.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "slocast_batch_size",
            "Items per prediction call.",
            ["domain"],
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.predictions = Counter(
            "slocast_predictions", "Predictions served.", ["domain"], registry=r
        )
        # Every prediction is one or the other: a batch too large to look up counts as misses.
        self.cache_hits = Counter(
            "slocast_cache_hits", "Predictions served from the cache.", ["domain"], registry=r
        )
        self.cache_misses = Counter(
            "slocast_cache_misses",
            "Predictions the model computed (not found in the cache, or not looked up).",
            ["domain"],
            registry=r,
        )
        self.cache_errors = Counter(
            "slocast_cache_errors",
            "Cache lookups and stores that failed, or were skipped while the cache rested after "
            "a failure; their predictions were computed.",
            registry=r,
        )
        self.model_info = Gauge(
            "slocast_model_info",
            "1 for the model version serving each domain.",
            ["domain", "version", "coverage"],
            registry=r,
        )
        self.model_created = Gauge(
            "slocast_model_created_timestamp_seconds",
            "When the bundle serving each domain was written (Unix time; no series for a "
            "cold-start model): time() minus this is the age of the served model and "
            "calibration, and a trainer that published later has not been synced from.",
            ["domain"],
            registry=r,
        )
        self.model_swaps = Counter(
            "slocast_model_swaps", "Model versions swapped in.", ["domain"], registry=r
        )
        self._model_labels: dict[str, tuple[str, str, str]] = {}
        self._domains: dict[str, DomainCounters] = {}
        self._requests: dict[tuple[str, int | str], tuple[Any, Any]] = {}
        self.bundles_refused = Counter(
            "slocast_bundles_refused", "Bundles refused (hash or schema mismatch).", registry=r
        )

    def request_done(self, route: str, status: int | str, started: float) -> None:
        """Count a request of ``route`` answered with ``status`` and time it from ``started``
        (a ``time.perf_counter()`` reading); each (route, status) binds its series once."""
        series = self._requests.get((route, status))
        if series is None:
            series = (self.requests.labels(route, str(status)), self.latency.labels(route))
            self._requests[(route, status)] = series
        series[0].inc()
        series[1].observe(time.perf_counter() - started)

    def domain(self, name: str) -> DomainCounters:
        counters = self._domains.get(name)
        if counters is None:
            counters = DomainCounters(
                self.batch_size.labels(name),
                self.predictions.labels(name),
                self.cache_hits.labels(name),
                self.cache_misses.labels(name),
            )
            self._domains[name] = counters
        return counters

    def set_model(
        self, domain: str, version: str, coverage: float, created: datetime | None = None
    ) -> None:
        """Point the model-info gauge of ``domain`` at its new version (the old series goes),
        and record when its bundle was written (``created``; None: a cold-start model)."""
        labels = (domain, version, f"{coverage:g}")
        previous = self._model_labels.get(domain)
        if previous is not None and previous != labels:
            self.model_info.remove(*previous)
        self.model_info.labels(*labels).set(1)
        self._model_labels[domain] = labels
        if created is None:
            with suppress(KeyError):
                self.model_created.remove(domain)
        else:
            self.model_created.labels(domain).set(created.timestamp())

    def render(self) -> bytes:
        return generate_latest(self.registry)
