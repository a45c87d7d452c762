"""GET /api/backends: which attention backends and SDPA kernels exist on this machine, and why not."""

from __future__ import annotations

from fastapi import APIRouter

from attnlab.services.backends import backends_report

from ..deps import ServicesDep
from ..schemas import BackendsReport

router = APIRouter(prefix="/api", tags=["meta"])


@router.get("/backends", response_model=BackendsReport)
async def backends(services: ServicesDep) -> BackendsReport:
    """The models' device and dtype, SDPA's kernels and every backend attnlab knows: offered by the
    toggle here (`registered`), able to run on the device (`available`), and the reason when not."""
    return BackendsReport(**backends_report(services.hub.placement))
