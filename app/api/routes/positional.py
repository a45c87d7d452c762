"""GET /api/positional (the schemes), /api/positional/extrapolation and /api/positional/{scheme}."""

from __future__ import annotations

from typing import Literal

import anyio.to_thread
from fastapi import APIRouter

from ...services.positional import describe_scheme, extrapolation_results, schemes
from ...web.figures import scheme_figures
from ..deps import SettingsDep
from ..errors import ERRORS
from ..schemas import PositionalDModel, PositionalHeads, PositionalLen, PositionalResponse, Scheme, SchemeOut
from ..transport import OrjsonResponse

router = APIRouter(prefix="/api/positional", tags=["positional"])


@router.get("", response_model=list[SchemeOut], response_class=OrjsonResponse)
async def positional_schemes() -> list[SchemeOut]:
    """Every scheme with its label, one-line summary and paper, in the order the pages list them."""
    return [SchemeOut(**s) for s in schemes()]


@router.get("/extrapolation", response_model=dict[str, object], response_class=OrjsonResponse,
            responses={404: {"description": "the lab has not been run: `attnlab lab extrapolation`"}})
async def extrapolation(settings: SettingsDep) -> dict[str, object]:
    """The stored results of the extrapolation lab (models/zoo/extrapolation/results.json)."""
    return extrapolation_results(settings)


@router.get("/{scheme}", response_model=PositionalResponse, response_class=OrjsonResponse,
            responses={k: ERRORS[k] for k in (413, 422)})
async def positional(scheme: Scheme, settings: SettingsDep, d_model: PositionalDModel = 64,
                     max_len: PositionalLen = 128, n_heads: PositionalHeads = 8,
                     format: Literal["json", "figure"] = "json") -> PositionalResponse:
    """describe() of a scheme: encoding matrix, similarity vs offset, biases (H, T, T), RoPE frequencies and
    rotations, ALiBi slopes, T5 buckets. `format=figure` adds `figures`: each of them drawn as Plotly JSON
    (the Positional page's figures; the data stays beside them, for export)."""
    desc = await anyio.to_thread.run_sync(describe_scheme, scheme, d_model, max_len, n_heads, settings)
    if format == "figure":
        desc["figures"] = await anyio.to_thread.run_sync(scheme_figures, desc)
    return PositionalResponse(**desc)
