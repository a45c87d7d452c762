"""Explaining a head of a run: GET /api/runs/{run_id}/computation and /qk (app.services.explain)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from ..deps import ServicesDep
from ..errors import ERRORS
from ..schemas import ComputationResponse, Kind, QKMethod, QKResponse, TrainedPositionalResponse, TrainedSource
from ..transport import OrjsonResponse

router = APIRouter(prefix="/api/runs", tags=["explain"])
trained_router = APIRouter(prefix="/api/positional/trained", tags=["positional"])

RunIdPath = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="32 hex digits, from POST /api/runs")]
KindQuery = Annotated[Kind | None, Query(description="default: the run's first kind")]
LayerQuery = Annotated[int, Query(ge=0, lt=1024)]
HeadQuery = Annotated[int, Query(ge=0, lt=1024)]


@router.get("/{run_id}/computation", response_model=ComputationResponse, response_class=OrjsonResponse,
            responses={k: ERRORS[k] for k in (404, 422, 429, 503)})
async def computation(run_id: RunIdPath, services: ServicesDep, kind: KindQuery = None, layer: LayerQuery = 0,
                      head: HeadQuery = 0,
                      query: int = Query(0, ge=0, lt=1 << 20, description="the query token's index")) -> OrjsonResponse:
    """How one query's weights come about in one head: q, k_j, q * k_j, q . k_j, x scale, + bias, mask,
    softmax, and (for a run created with `"values": true`) x v_j, the sum (the head's output) and the head's
    share of the block output through its slice of W_O (read from the model's weights). Shapes are in the
    schema. The weights equal the run's map row; the sum over heads of `output_projected` plus `output_bias`
    is the attention block's output before the residual addition. 422 for a layer, head, kind or query the
    run does not have."""
    run = services.runs.get(run_id)
    return OrjsonResponse(await services.explain.computation(run, kind, layer, head, query))


@router.get("/{run_id}/qk", response_model=QKResponse, response_class=OrjsonResponse,
            responses={k: ERRORS[k] for k in (404, 413, 422, 429, 503)})
async def qk_geometry(run_id: RunIdPath, services: ServicesDep, kind: KindQuery = None, layer: LayerQuery = 0,
                      head: HeadQuery = 0, method: QKMethod = "pca",
                      seed: int = Query(0, ge=0, lt=2**31, description="seed of t-SNE and UMAP")) -> OrjsonResponse:
    """One head's queries and keys in one 2-D map (AttentionViz, Yeh et al. 2023, arXiv 2305.03210): keys
    translated so their centroid meets the queries', queries and keys scaled so their mean norms match (no
    softmax changes), then PCA (scikit-learn, deterministic), t-SNE (scikit-learn, seeded) or UMAP
    (umap-learn, the optional extra `attnlab[umap]`; 503 without it). t-SNE and UMAP take at most
    `qk_max_points` queries + keys (413 past it)."""
    run = services.runs.get(run_id)
    return OrjsonResponse(await services.explain.qk(run, kind, layer, head, method, seed))


@trained_router.get("/{source}", response_model=TrainedPositionalResponse, response_class=OrjsonResponse,
                    responses={k: ERRORS[k] for k in (404, 422, 503)})
async def trained_positional(source: TrainedSource, services: ServicesDep,
                             max_len: int = Query(128, ge=2, le=512, description="positions shown")) -> OrjsonResponse:
    """The positional tables a trained model learned: MiniLM's absolute position embeddings (cosine similarity
    of positions, their norms, similarity by offset), the zoo's T5-style seq2seq model's relative biases (per
    bucket and head, and as a function of the offset; encoder and decoder), the extrapolation lab's learned
    table. 404 when the model is not registered on this server, 503 when its weights are not installed."""
    return OrjsonResponse(await services.trained_positional.describe(source, max_len))
