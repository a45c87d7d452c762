"""Explaining a head of a run: GET /api/runs/{run_id}/computation and /qk (app.services.explain)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import Field

from ..deps import ServicesDep
from ..errors import ERRORS
from ..limits import Limit
from ..schemas import Kind
from ..schemas_explain import ComputationResponse, QKMethod, QKResponse, TrainedPositionalResponse, TrainedSource
from ..transport import OrjsonResponse

router = APIRouter(prefix="/api/runs", tags=["explain"])
trained_router = APIRouter(prefix="/api/positional/trained", tags=["positional"])
sparse_router = APIRouter(prefix="/api/sparse", tags=["explain"])

RunIdPath = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="32 hex digits, from POST /api/runs")]
KindQuery = Annotated[Kind | None, Query(description="default: the run's first kind")]
LayerQuery = Annotated[int, Query(ge=0, lt=1024)]
HeadQuery = Annotated[int, Query(ge=0, lt=1024)]


@router.get("/{run_id}/computation", response_model=ComputationResponse, response_class=OrjsonResponse,
            responses={k: ERRORS[k] for k in (404, 409, 422, 429, 503)})
async def computation(run_id: RunIdPath, services: ServicesDep, kind: KindQuery = None, layer: LayerQuery = 0,
                      head: HeadQuery = 0,
                      query: int = Query(0, ge=0, lt=1 << 20, description="the query token's index")) -> OrjsonResponse:
    """How one query's weights come about in one head: q, k_j, q * k_j, q . k_j, x scale, + bias, mask,
    softmax, and (for a run created with `"values": true`) x v_j, the sum (the head's output) and the head's
    share of the block output through its slice of W_O (read from the model's weights). Shapes are in the
    schema. The weights equal the run's map row; the sum over heads of `output_projected` plus `output_bias`
    is the attention block's output before the residual addition. 422 for a layer, head, kind or query the
    run does not have."""
    run = await services.runs.get(run_id)
    return OrjsonResponse(await services.explain.computation(run, kind, layer, head, query))


@router.get("/{run_id}/qk", response_model=QKResponse, response_class=OrjsonResponse,
            responses={k: ERRORS[k] for k in (404, 409, 413, 422)})
async def qk_geometry(run_id: RunIdPath, services: ServicesDep, kind: KindQuery = None, layer: LayerQuery = 0,
                      head: HeadQuery = 0, method: QKMethod = "pca",
                      seed: int = Query(0, ge=0, lt=2**31, description="seed of t-SNE and UMAP"),
                      also: Annotated[list[Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]],
                                      Query(max_length=7, description="run ids of other texts of the same model "
                                                                      "to pool into the map")] = ()) -> OrjsonResponse:
    """One head's queries and keys in one 2-D map (AttentionViz, Yeh et al. 2023, arXiv 2305.03210): keys
    translated so their centroid meets the queries', queries and keys scaled so their mean norms match (no
    softmax changes), then PCA (scikit-learn, deterministic), t-SNE (scikit-learn, seeded) or UMAP
    (umap-learn, the optional extra `attnlab[umap]`; 409 without it). t-SNE and UMAP take at most
    `qk_max_points` queries + keys (413 past it). `also=<run_id>` (repeatable) pools the points of other texts
    of the same model: `run` says which run (0: this one, then the `also` order) each point came from."""
    run = await services.runs.get(run_id)
    others = [await services.runs.get(other) for other in also]
    return OrjsonResponse(await services.explain.qk(run, kind, layer, head, method, seed, others))


@trained_router.get("/{source}", response_model=TrainedPositionalResponse, response_class=OrjsonResponse,
                    responses={k: ERRORS[k] for k in (404, 409, 422)})
async def trained_positional(source: TrainedSource, services: ServicesDep,
                             max_len: int = Query(128, ge=2, le=512, description="positions shown")) -> OrjsonResponse:
    """The positional tables a trained model learned: MiniLM's absolute position embeddings (cosine similarity
    of positions, their norms, similarity by offset), the zoo's T5-style seq2seq model's relative biases (per
    bucket and head, and as a function of the offset; encoder and decoder), the extrapolation lab's learned
    table. 404 when the model is not registered on this server, 409 when its weights are not installed."""
    return OrjsonResponse(await services.trained_positional.describe(source, max_len))


class PatternParams:
    """The sparse pattern of a request: Longformer (window, leading global tokens) or BigBird (blocks)."""

    def __init__(
        self,
        pattern: Literal["longformer", "bigbird"] = Query("longformer", description="Longformer (arXiv 2004.05150) "
                                                          "or BigBird (arXiv 2007.14062)"),
        window: int = Query(16, ge=0, le=65536, description="longformer: the window's total span (w/2 each side)"),
        global_tokens: int = Query(1, ge=0, le=64, description="longformer: this many leading positions are global"),
        block: int = Query(8, ge=1, le=4096, description="bigbird: tokens per block"),
        window_blocks: int = Query(3, ge=1, le=64, description="bigbird: blocks in the sliding window"),
        global_blocks: int = Query(1, ge=0, le=64, description="bigbird: leading global blocks"),
        random_blocks: int = Query(1, ge=0, le=64, description="bigbird: random key blocks per query block"),
        seed: int = Query(0, ge=0, lt=2**31, description="bigbird: seed of the random blocks"),
    ):
        self.name = pattern
        if pattern == "longformer":
            self.params = {"window": window, "global_tokens": tuple(range(global_tokens))}
        else:
            self.params = {"block": block, "window_blocks": window_blocks, "global_blocks": global_blocks,
                           "random_blocks": random_blocks, "seed": seed}


PatternDep = Annotated[PatternParams, Depends(PatternParams)]


@router.get("/{run_id}/sparse", response_model=dict[str, object], response_class=OrjsonResponse,
            responses={k: ERRORS[k] for k in (404, 413, 422)})
async def sparse_on_run(run_id: RunIdPath, services: ServicesDep, pattern: PatternDep, kind: KindQuery = None,
                        layer: LayerQuery = 0, head: HeadQuery = 0) -> OrjsonResponse:
    """A sparse pattern applied to one head of a real input: `dense` [Tq][Tk] (the head's weights), `allowed`
    (0/1: the pattern and the head's own mask), `sparse` (softmax of the same scores over the allowed keys),
    `kept` [Tq] (the share of each dense row inside the pattern; `kept_mean`, `kept_min`), `density` (allowed
    pairs over the pairs the head's own mask allows), `max_abs_diff`. At most `sparse_max_tokens` tokens."""
    run = await services.runs.get(run_id)
    return OrjsonResponse(await services.explain.sparse(run, kind, layer, head, pattern.name, pattern.params))


@sparse_router.get("/cost", response_model=dict[str, object], response_class=OrjsonResponse,
                   responses={k: ERRORS[k] for k in (413, 422)})
async def sparse_cost(services: ServicesDep, pattern: PatternDep,
                      seq_lens: Annotated[list[Annotated[int, Field(ge=16), Limit("sparse_cost_max_len")]],
                                          Query(min_length=1, max_length=8)] = (256, 512, 1024, 2048),
                      n_heads: int = Query(4, ge=1, le=32), head_dim: int = Query(32, ge=8, le=256)) -> OrjsonResponse:
    """The measured cost of the pattern vs dense at growing lengths: our flash backend's forward (it skips
    the blocks the pattern leaves empty) on random (1, n_heads, T, head_dim) float32 inputs, median of 3 calls
    per length; `rows`: seq_len, density, dense_ms, sparse_ms, speedup. T at most `sparse_cost_max_len`;
    n_heads x T^2 at most `benchmark_max_cells` (413); rows after `benchmark_budget_s` is spent come back with
    `skipped`."""
    return OrjsonResponse(await services.explain.sparse_cost(pattern.name, pattern.params, list(seq_lens), n_heads,
                                                            head_dim))
