"""The service layer: everything routes call. Built once per app in its lifespan."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from attnlab.models import Registry

from ..core.metrics import Metrics
from ..core.settings import Settings
from .attention import AttentionService
from .benchmark import BenchmarkService
from .explain import ExplainService, TrainedPositional
from .generation import GenerationService
from .hub import ModelHub
from .runs import RunService


@dataclass
class Services:
    settings: Settings
    hub: ModelHub
    runs: RunService
    attention: AttentionService
    generation: GenerationService
    benchmark: BenchmarkService
    metrics: Metrics
    started: float = field(default_factory=time.time)
    explain: ExplainService | None = None  # set by build_services
    trained_positional: TrainedPositional | None = None  # set by build_services


def build_services(settings: Settings, registry: Registry, metrics: Metrics) -> Services:
    hub = ModelHub(registry, settings)
    runs = RunService(hub, settings)
    services = Services(settings, hub, runs, AttentionService(hub, settings), GenerationService(hub, settings, metrics),
                        BenchmarkService(hub, settings), metrics)

    def refresh() -> None:
        metrics.cache_bytes.set(runs.cache.nbytes)
        metrics.cache_runs.set(len(runs.cache))
        metrics.cache_evictions.set(runs.cache.evictions)
        metrics.loaded_models.set(len(hub.loaded()))
        for model_id, gate in hub.gates().items():
            metrics.model_running.labels(model_id).set(gate.running)
            metrics.model_waiting.labels(model_id).set(gate.waiting)

    services.explain = ExplainService(hub, settings)
    services.trained_positional = TrainedPositional(hub, settings)
    metrics.on_collect(refresh)
    return services
