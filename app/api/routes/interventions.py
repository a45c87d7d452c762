"""Interventions: POST /api/interventions/{ablate,importance,patch}, GET /api/interventions/lab, POST /api/lens."""

from __future__ import annotations

from fastapi import APIRouter

from ...services.interventions import Source
from ..deps import ServicesDep
from ..errors import ERRORS
from ..schemas import TOKENS_DOC
from ..schemas_interventions import (
    INPUT_DOC,
    AblateRequest,
    AblateResponse,
    HeadsLabResponse,
    ImportanceRequest,
    ImportanceResponse,
    LensRequest,
    LensResponse,
    PatchRequest,
    PatchResponse,
)
from ..transport import OrjsonResponse

router = APIRouter(prefix="/api", tags=["interventions"])
STATUSES = {k: ERRORS[k] for k in (404, 409, 413, 422, 429, 503)}


@router.post("/interventions/ablate", response_model=AblateResponse, response_class=OrjsonResponse,
             responses=STATUSES, description="Ablate heads and see the loss per position and the changed top-1 "
                                             "predictions (or, without an LM head, the change of the final hidden "
                                             "states).\n\n" + INPUT_DOC + "\n\n" + TOKENS_DOC)
async def ablate(req: AblateRequest, services: ServicesDep) -> OrjsonResponse:
    src = Source(req.model, req.text, req.run_id, req.backend)
    heads = [(int(a), int(b)) for a, b in req.heads]
    return OrjsonResponse(await services.interventions.ablate(src, heads, req.mode))


@router.post("/interventions/importance", response_model=ImportanceResponse, response_class=OrjsonResponse,
             responses=STATUSES, description="Head importance from one backward pass (Michel et al. 2019), and the "
                                             "exact single-head ablation grid for small models.\n\n" + INPUT_DOC)
async def importance(req: ImportanceRequest, services: ServicesDep) -> OrjsonResponse:
    src = Source(req.model, req.text, req.run_id, req.backend)
    return OrjsonResponse(await services.interventions.importance(src, req.probes))


@router.post("/interventions/patch", response_model=PatchResponse, response_class=OrjsonResponse,
             responses=STATUSES, description="Activation patching (Wang et al. 2022, arXiv 2211.00593): each head's "
                                             "clean output put into the corrupted run, and the fraction of the "
                                             "target logit's clean - corrupted difference it restores. `clean` "
                                             "plays the part of `text`. " + INPUT_DOC)
async def patch(req: PatchRequest, services: ServicesDep) -> OrjsonResponse:
    src = Source(req.model, req.clean, req.run_id, req.backend, field="clean")
    return OrjsonResponse(await services.interventions.patch(src, req.corrupted, req.target))


@router.get("/interventions/lab", response_model=HeadsLabResponse, response_class=OrjsonResponse,
            responses={404: ERRORS[404]}, description="Results of `attnlab lab heads` (shipped in the zoo).")
async def lab(services: ServicesDep) -> OrjsonResponse:
    return OrjsonResponse(services.interventions.lab_results())


@router.post("/lens", response_model=LensResponse, response_class=OrjsonResponse, responses=STATUSES,
             description="The logit lens (nostalgebraist 2020) and the residual stream's norms.\n\n" + INPUT_DOC)
async def lens(req: LensRequest, services: ServicesDep) -> OrjsonResponse:
    src = Source(req.model, req.text, req.run_id, req.backend)
    return OrjsonResponse(await services.interventions.lens(src, req.k, req.layers))
