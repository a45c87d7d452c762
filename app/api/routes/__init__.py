"""API routers, one per module; ``ROUTERS`` is the one list create_app registers (in order: ``training_runs``'s
``/api/training/runs`` before ``training``'s ``/api/training/{name}``)."""

from __future__ import annotations

from . import (
    attention,
    backends,
    benchmark,
    explain,
    figures,
    generate,
    health,
    interventions,
    longrun,
    models,
    objectives,
    positional,
    runs,
    training,
    training_runs,
)

# training_runs before training: /api/training/{name} would catch /api/training/runs
ROUTERS = (health.router, models.router, attention.router, runs.router, generate.router, positional.router,
           benchmark.router, figures.router, training_runs.router, training.router, objectives.router,
           interventions.router, longrun.router, backends.router)
ROUTERS += (explain.router, explain.trained_router, explain.sparse_router)
