"""Prometheus metrics of one app instance (its own registry, so test apps do not share).

With several worker processes (``attnlab serve --workers N``), ``PROMETHEUS_MULTIPROC_DIR`` names a folder
where each process writes its values (prometheus_client's multiprocess mode; the CLI sets it up), and
``/api/metrics`` answers the sum over all workers: counters and histograms add up, gauges are summed over
the live workers (``livesum``), whichever worker serves the scrape.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """The folder of prometheus_client's multiprocess mode, when this process runs in it."""
    return os.environ.get(MULTIPROC_ENV) or None

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.multiprocess = multiprocess_dir() is not None
        # gauges in multiprocess mode: the sum over live workers (ignored in one process)
        live = {"multiprocess_mode": "livesum"}
        self.requests = Counter("attnlab_requests", "HTTP requests by route, method and status",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("attnlab_request_seconds", "HTTP request latency by route", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.in_flight = Gauge("attnlab_requests_in_flight", "HTTP requests being served", registry=self.registry,
                               **live)
        self.cache_bytes = Gauge("attnlab_run_cache_bytes", "bytes of captures in the run cache",
                                 registry=self.registry, **live)
        self.cache_runs = Gauge("attnlab_run_cache_runs", "runs in the run cache", registry=self.registry, **live)
        self.cache_evictions = Gauge("attnlab_run_cache_evictions", "runs evicted from the run cache",
                                     registry=self.registry, **live)
        self.loaded_models = Gauge("attnlab_loaded_models", "models loaded (summed over workers)",
                                   registry=self.registry, **live)
        self.model_running = Gauge("attnlab_model_requests_running", "requests holding a model slot", ["model"],
                                   registry=self.registry, **live)
        self.model_waiting = Gauge("attnlab_model_requests_waiting", "requests queued for a model slot", ["model"],
                                   registry=self.registry, **live)
        self.runs_restored = Gauge("attnlab_runs_restored", "runs recomputed from the shared run store",
                                   registry=self.registry, **live)
        self.generation_stops = Counter("attnlab_generation_stops", "generations ended, by reason", ["reason"],
                                        registry=self.registry)
        self.generated_tokens = Counter("attnlab_generated_tokens", "tokens generated", registry=self.registry)
        self._collect_hooks: list[Callable[[], None]] = []

    def on_collect(self, hook: Callable[[], None]) -> None:
        """Refresh gauges from live state just before each scrape."""
        self._collect_hooks.append(hook)

    def refresh(self) -> None:
        for hook in self._collect_hooks:
            hook()

    def after_request(self) -> None:
        """With several workers, a scrape reads the other workers' gauges from their files: keep this
        worker's current after each request (a few gauge writes), not only when it serves a scrape."""
        if self.multiprocess:
            self.refresh()

    def render(self) -> bytes:
        self.refresh()
        if self.multiprocess:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)

    def close(self) -> None:
        """At shutdown: this worker's live gauges leave the sums."""
        if self.multiprocess:
            multiprocess.mark_process_dead(os.getpid())
