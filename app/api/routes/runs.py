"""Runs: POST /api/runs, then tiles, pooled overviews, head scores and rollout from the capture."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from pydantic import Field
from starlette.responses import Response

from ..deps import ServicesDep
from ..errors import ERRORS
from ..limits import Limit
from ..schemas import TOKENS_DOC, HeadsResponse, Kind, RolloutResponse, RunRequest, RunResponse, SelfKind, TileResponse
from ..transport import META_BOUND_DOC, OrjsonResponse, block_response

router = APIRouter(prefix="/api/runs", tags=["runs"])

RunIdPath = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="32 hex digits, from POST /api/runs")]
RANGE = r"^[0-9]{0,9}:[0-9]{0,9}$"  # ASCII digits: `\d` would also match other scripts' digits
TILE_DOC = """One head's map: an exact block (`rows=a:b&cols=c:d`, half-open, default the whole map, at most
`max_tile_cells`) or, with `pool=N`, an overview of at most N x N cells, each the max or mean of a
factor x factor block. Computed from the capture (Q, K, LSE); no T x T tensor is built.

`format=json`: TileResponse. `format=f16`: raw little-endian float16, C order; `format=u8`: raw uint8 with
`weight = byte * X-Scale` (error at most X-Scale/2). Binary answers carry `X-Shape` (`rows,cols`),
`X-Dtype`, and `X-Attnlab-Meta`: base64url JSON (no padding) of the TileResponse fields other than
`attention` (plus `scale` for u8). """ + META_BOUND_DOC


@router.post("", response_model=RunResponse, response_class=OrjsonResponse,
             description="Run the model once and keep its capture; the id is a content hash (same input, same id, "
                         "any worker).\n\n" + TOKENS_DOC,
             responses={k: ERRORS[k] for k in (404, 409, 413, 422, 429, 503)})
async def create_run(req: RunRequest, services: ServicesDep) -> RunResponse:
    run, cached = await services.runs.create(req.model, req.text, req.text_pair, req.backend, req.values)
    return RunResponse.of(run, cached)


@router.get("/{run_id}/attention", response_model=TileResponse, response_class=OrjsonResponse,
            description=TILE_DOC,
            responses={200: {"content": {"application/octet-stream": {"schema": {"type": "string",
                                                                                 "format": "binary"}}}},
                       **{k: ERRORS[k] for k in (404, 409, 413, 422, 429, 503)}})
async def run_attention(
    run_id: RunIdPath,
    services: ServicesDep,
    kind: Kind | None = Query(None, description="default: the run's first kind"),
    layer: int = Query(0, ge=0, lt=1024),
    head: int = Query(0, ge=0, lt=1024),
    rows: str | None = Query(None, pattern=RANGE, description="query range a:b (half-open)"),
    cols: str | None = Query(None, pattern=RANGE, description="key range c:d (half-open)"),
    pool: Annotated[int, Field(ge=1), Limit("max_pool")] | None = Query(
        None, description="overview of at most pool x pool cells (at most max_pool)"),
    pool_mode: Literal["max", "mean"] = "max",
    format: Literal["json", "f16", "u8"] = "json",
    weighting: Literal["raw", "value_norm"] = Query(
        "raw", description="value_norm: alpha_ij ||v_j W_O^h|| normalised per row (Kobayashi et al. 2020, arXiv "
                           "2004.10102); needs a run created with values: true (422 otherwise)"),
) -> Response:
    run = await services.runs.get(run_id)
    view = None
    if weighting == "value_norm":
        kind, view = await services.explain.value_weighted(run, kind, layer, head)
    kind, tile = await services.runs.tile(run, kind, layer, head, rows, cols, pool, pool_mode, view)
    meta = {"run_id": run_id, "kind": kind, "layer": layer, "head": head, "rows": list(tile.rows),
            "cols": list(tile.cols), "pool": pool, "pool_mode": pool_mode, "factor": tile.factor,
            "shape": list(tile.data.shape), "row_tokens": tile.row_tokens, "col_tokens": tile.col_tokens,
            "weighting": weighting}
    if format == "json":
        return OrjsonResponse({**meta, "attention": tile.data})
    return block_response(tile.data, format, meta)


@router.get("/{run_id}/heads", response_model=HeadsResponse, response_class=OrjsonResponse,
            responses={k: ERRORS[k] for k in (404, 409, 413, 422, 429, 503)})
async def run_heads(run_id: RunIdPath, services: ServicesDep) -> HeadsResponse:
    """Head-type scores per kind, [layer][head] each: previous_token, induction, duplicate_token,
    first_token_sink, special_sink ([CLS]/[SEP]), mean_offset, diagonality, entropy."""
    run = await services.runs.get(run_id)
    return HeadsResponse(run_id=run_id, model=run.model, scores=await services.runs.heads(run))


@router.get("/{run_id}/loss", response_class=OrjsonResponse,
            responses={k: ERRORS[k] for k in (404, 409, 422, 429, 503)})
async def run_loss(run_id: RunIdPath, services: ServicesDep,
                   bucket: int = Query(1, ge=1, le=4096, description="average over buckets of this many positions")
                   ) -> Response:
    """A decoder run's next-token loss by position (nats; position i predicts token i + 1), averaged over
    buckets: the extrapolation lab's per-position loss, for any text. A model trained at 64 tokens shows
    where its loss rises past them (sinusoidal) or stays flat (ALiBi)."""
    run = await services.runs.get(run_id)
    return OrjsonResponse({"run_id": run_id, "model": run.model, **services.runs.loss(run, bucket)})


@router.get("/{run_id}/rollout", response_model=RolloutResponse, response_class=OrjsonResponse,
            responses={k: ERRORS[k] for k in (404, 409, 413, 422, 429, 503)})
async def run_rollout(run_id: RunIdPath, services: ServicesDep,
                      kind: SelfKind | None = Query(None, description="default: the run's first kind"),
                      add_residual: bool = True) -> Response:
    """Attention rollout (Abnar & Zuidema 2020, arXiv 2005.00928) and flow across layers, [L][T][T]."""
    run = await services.runs.get(run_id)
    kind, maps = await services.runs.rollout(run, kind, add_residual)
    tokens = run.axis(kind)[0].fields()
    return OrjsonResponse({"run_id": run_id, "kind": kind, **tokens, "shape": list(maps["rollout"].shape),
                           "add_residual": add_residual, **maps})
