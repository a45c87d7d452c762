"""Prometheus metrics of one app instance (its own registry, so test apps do not share)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("attnlab_requests", "HTTP requests by route, method and status",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("attnlab_request_seconds", "HTTP request latency by route", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.in_flight = Gauge("attnlab_requests_in_flight", "HTTP requests being served", registry=self.registry)
        self.cache_bytes = Gauge("attnlab_run_cache_bytes", "bytes of captures in the run cache",
                                 registry=self.registry)
        self.cache_runs = Gauge("attnlab_run_cache_runs", "runs in the run cache", registry=self.registry)
        self.cache_evictions = Gauge("attnlab_run_cache_evictions", "runs evicted from the run cache",
                                     registry=self.registry)
        self.loaded_models = Gauge("attnlab_loaded_models", "models loaded in this process", registry=self.registry)
        self.model_running = Gauge("attnlab_model_requests_running", "requests holding a model slot", ["model"],
                                   registry=self.registry)
        self.model_waiting = Gauge("attnlab_model_requests_waiting", "requests queued for a model slot", ["model"],
                                   registry=self.registry)
        self.generation_stops = Counter("attnlab_generation_stops", "generations ended, by reason", ["reason"],
                                        registry=self.registry)
        self.generated_tokens = Counter("attnlab_generated_tokens", "tokens generated", registry=self.registry)
        self._collect_hooks: list[Callable[[], None]] = []

    def on_collect(self, hook: Callable[[], None]) -> None:
        """Refresh gauges from live state just before each scrape."""
        self._collect_hooks.append(hook)

    def render(self) -> bytes:
        for hook in self._collect_hooks:
            hook()
        return generate_latest(self.registry)
