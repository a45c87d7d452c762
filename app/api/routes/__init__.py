"""API routers, one per module; ``ROUTERS`` is the one list create_app registers."""

from __future__ import annotations

from . import attention, backends, benchmark, figures, generate, health, models, positional, runs, training

ROUTERS = (health.router, models.router, attention.router, runs.router, generate.router, positional.router,
           benchmark.router, figures.router, training.router, backends.router)
