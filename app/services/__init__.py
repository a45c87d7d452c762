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
from .interventions import InterventionService
from .longrun import LongRunService, Preparer
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
    interventions: InterventionService
    longrun: LongRunService
    preparer: Preparer
    started: float = field(default_factory=time.time)
    explain: ExplainService | None = None  # set by build_services
    trained_positional: TrainedPositional | None = None  # set by build_services


def build_services(settings: Settings, registry: Registry, metrics: Metrics) -> Services:
    hub = ModelHub(registry, settings)
    runs = RunService(hub, settings)

    async def find_run(run_id: str):
        run = await runs.get(run_id)
        return run.model, run.backend, run.input

    services = Services(settings, hub, runs, AttentionService(hub, settings), GenerationService(hub, settings, metrics),
                        BenchmarkService(hub, settings), metrics,
                        interventions=InterventionService(hub, settings, find_run),
                        longrun=LongRunService(hub, runs, settings), preparer=Preparer(hub))

    def refresh() -> None:
        metrics.cache_bytes.set(runs.cache.nbytes)
        metrics.cache_runs.set(len(runs.cache))
        metrics.cache_evictions.set(runs.cache.evictions)
        metrics.runs_restored.set(runs.restored)
        metrics.loaded_models.set(len(hub.loaded()))
        for model_id, gate in hub.gates().items():
            metrics.model_running.labels(model_id).set(gate.running)
            metrics.model_waiting.labels(model_id).set(gate.waiting)

    services.explain = ExplainService(hub, settings)
    services.trained_positional = TrainedPositional(hub, settings)
    metrics.on_collect(refresh)
    return services
