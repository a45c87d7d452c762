"""POST /api/fill-mask (a masked LM's guesses) and POST /api/objectives (causal vs masked LM on one text)."""

from __future__ import annotations

from fastapi import APIRouter

from ...services.objectives import fill_mask_answer, objectives_answer
from ..deps import ServicesDep
from ..errors import ERRORS
from ..training_schemas import FillMaskRequest, FillMaskResponse, ObjectivesRequest, ObjectivesResponse
from ..transport import OrjsonResponse

router = APIRouter(prefix="/api", tags=["objectives"])


@router.post("/fill-mask", response_model=FillMaskResponse, response_class=OrjsonResponse,
             description="A masked LM's top-k guesses at each mask token (`[MASK]`) of a text, special tokens "
                         "excluded, and the `run_id` of the same text's capture for its attention maps (the mask "
                         "token's row shows what the guess attends to).",
             responses={k: ERRORS[k] for k in (404, 409, 413, 422, 429, 503)})
async def fill_mask(req: FillMaskRequest, services: ServicesDep) -> OrjsonResponse:
    answer = await fill_mask_answer(services.hub, services.runs, services.settings, req.model, req.text, req.k)
    return OrjsonResponse(answer)


@router.post("/objectives", response_model=ObjectivesResponse, response_class=OrjsonResponse,
             description="The causal (CLM) and the masked (MLM) objective on the same text: per token, the "
                         "probability each model gives the actual token and its top guess; at `position`, the "
                         "top-k and the attention row of the query that predicts it (causal: `position - 1`, over "
                         "the keys before it; masked: `position` itself, masked, over every key). At most "
                         "`objectives_max_tokens` tokens (413).",
             responses={k: ERRORS[k] for k in (404, 409, 413, 422, 429, 503)})
async def objectives(req: ObjectivesRequest, services: ServicesDep) -> OrjsonResponse:
    answer = await objectives_answer(services.hub, services.settings, req.text, req.clm_model, req.mlm_model,
                                     req.position, req.k)
    return OrjsonResponse(answer)
