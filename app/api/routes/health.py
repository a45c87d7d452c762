"""GET /api/health and GET /api/metrics (Prometheus text)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from starlette.responses import Response

from ..deps import ServicesDep
from ..schemas import Health

router = APIRouter(prefix="/api", tags=["meta"])


@router.get("/health", response_model=Health)
async def health(request: Request, services: ServicesDep) -> Health:
    """Liveness: answers at once even while a model computes (inference runs in threads)."""
    preparing = dict(services.preparer.preparing)
    return Health(status="preparing" if preparing else "ok", preparing=preparing, version=request.app.version,
                  loaded_models=services.hub.loaded(),
                  n_models=len(services.hub.registry.ids()), uptime_s=time.time() - services.started,
                  device=services.hub.placement.device.type, dtype=services.hub.placement.dtype_name)


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
async def metrics(services: ServicesDep) -> Response:
    """Prometheus text: requests by route/status, latency histogram, cache bytes, loaded models."""
    return Response(services.metrics.render(), media_type=services.metrics.content_type)
