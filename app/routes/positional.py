"""GET /api/positional/extrapolation and GET /api/positional/{scheme}."""

from __future__ import annotations

from fastapi import APIRouter, Query

from ..schemas import PositionalResponse, Scheme
from ..services.positional import describe_scheme, extrapolation_results
from ..transport import OrjsonResponse
from . import ERRORS, SettingsDep

router = APIRouter(prefix="/api/positional", tags=["positional"])


@router.get("/extrapolation", response_model=dict[str, object], response_class=OrjsonResponse,
            responses={404: {"description": "the lab has not been run: `attnlab lab extrapolation`"}})
async def extrapolation(settings: SettingsDep) -> dict[str, object]:
    """The stored results of the extrapolation lab (models/zoo/extrapolation/results.json)."""
    return extrapolation_results(settings)


@router.get("/{scheme}", response_model=PositionalResponse, response_class=OrjsonResponse,
            responses={k: ERRORS[k] for k in (413, 422)})
async def positional(scheme: Scheme, settings: SettingsDep, d_model: int = Query(64, ge=2, le=2048),
                     max_len: int = Query(128, ge=1, le=4096), n_heads: int = Query(8, ge=1, le=64)
                     ) -> PositionalResponse:
    """describe() of a scheme: encoding matrix, similarity vs offset, biases (H, T, T), RoPE frequencies and
    rotations, ALiBi slopes, T5 buckets."""
    return PositionalResponse(**describe_scheme(scheme, d_model, max_len, n_heads, settings))
