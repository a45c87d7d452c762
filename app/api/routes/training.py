"""GET /api/training: the zoo's training logs (loss and LR figure) and attention snapshots."""

from __future__ import annotations

from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Path, Query
from starlette.responses import Response

from ...services.training import checkpoints, snapshot_maps, training_record
from ...web import figures
from ...web.figures import fig_json
from ..deps import ServicesDep
from ..errors import ERRORS
from ..schemas import Kind
from ..transport import OrjsonResponse

router = APIRouter(prefix="/api/training", tags=["figures"])

ZooName = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
                              description="a directory of models/zoo, or my-<name>: the user's own lab run")]


@router.get("")
async def training_list(services: ServicesDep) -> Response:
    """Zoo checkpoints that have a training log (and whether they have attention snapshots)."""
    return OrjsonResponse(checkpoints(services.settings.zoo_dir, services.settings.labs_dir))


@router.get("/{name}", responses={404: ERRORS[404]})
async def training(name: ZooName, services: ServicesDep) -> Response:
    """Loss and LR curves (figure + log records), results and the snapshot index of a checkpoint."""
    record = training_record(services.settings.zoo_dir, name, services.settings.labs_dir)
    return OrjsonResponse({"figure": fig_json(figures.training_curves(record["log"])), **record})


@router.get("/{name}/snapshots", responses={k: ERRORS[k] for k in (404, 422)})
async def training_snapshots(name: ZooName, services: ServicesDep, probe: str = Query(..., max_length=64),
                             kind: Kind | None = Query(None, description="default: the probe's first recorded kind"),
                             layer: int = Query(0, ge=0, lt=1024),
                             head: int = Query(0, ge=0, lt=1024)) -> Response:
    """One head's attention on a probe at every snapshot step: ``maps[step][query][key]``."""
    answer = await anyio.to_thread.run_sync(snapshot_maps, services.settings.zoo_dir, name, probe, kind, layer,
                                               head, services.settings.labs_dir)
    return OrjsonResponse(answer)
