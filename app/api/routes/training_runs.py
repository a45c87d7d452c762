"""GET /api/training/runs (every shipped and user run, to overlay) and /api/training/checkpointing.

Registered before ``training``'s ``/api/training/{name}``, so ``runs`` and ``checkpointing`` are these."""

from __future__ import annotations

from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Path

from ...services.training_runs import checkpointing_results, run_index, run_series
from ...web.figures import fig_json
from ...web.training_figures import checkpointing_bars
from ..deps import ServicesDep
from ..errors import ERRORS
from ..training_schemas import CheckpointingResponse, RunSeries, RunsIndex
from ..transport import OrjsonResponse

router = APIRouter(prefix="/api/training", tags=["training"])

RunIdPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$",
                                description="a run id from GET /api/training/runs")]


@router.get("/runs", response_model=RunsIndex, response_class=OrjsonResponse)
async def training_runs(services: ServicesDep) -> OrjsonResponse:
    """Every training run to overlay: the zoo's checkpoints and comparison labs, and the user's own re-runs
    (`my-` ids); each with a caption saying what to look for, and each lab's claims."""
    return OrjsonResponse(await anyio.to_thread.run_sync(run_index, services.settings))


@router.get("/runs/{run_id}", response_model=RunSeries, response_class=OrjsonResponse,
            responses={404: ERRORS[404]})
async def training_run(run_id: RunIdPath, services: ServicesDep) -> OrjsonResponse:
    """One run's series: loss, learning rate, gradient norm per step, spike and skip steps, per-layer gradient
    norms where recorded."""
    return OrjsonResponse(await anyio.to_thread.run_sync(run_series, services.settings, run_id))


@router.get("/checkpointing", response_model=CheckpointingResponse, response_class=OrjsonResponse,
            responses={404: ERRORS[404]})
async def checkpointing(services: ServicesDep) -> OrjsonResponse:
    """Gradient checkpointing measured per architecture: peak training memory (torch's allocator) and step time,
    without and with (`attnlab bench checkpointing`; the user's re-run if there is one, else the shipped table)."""
    results = checkpointing_results(services.settings)
    return OrjsonResponse({**results, "figure": fig_json(checkpointing_bars(results["rows"]))})
