"""Figure JSON for the pages, drawn by app.web.figures.

``/api/figures/...`` answers ``{"figure": <plotly figure JSON>, ...data}``: the data the
figure was drawn from travels with it, so the page can export exactly what it shows.
(A scheme's figures and the benchmark chart are ``format=figure`` of /api/positional/{scheme}
and /api/benchmark.) Handlers stay thin: the work is in app.services and models.introspection.
"""

from __future__ import annotations

from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Path, Query
from starlette.responses import Response

from ...services import architecture as architecture_service
from ...services.errors import Invalid, NotFound
from ...services.positional import describe_similarity, extrapolation_results
from ...web import figures
from ...web.figures import fig_json
from ..deps import ServicesDep
from ..errors import ERRORS
from ..schemas import Kind, PositionalDModel, PositionalHeads, PositionalLen
from ..transport import OrjsonResponse

router = APIRouter(tags=["figures"])

RunIdPath = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]
ModelIdPath = Annotated[str, Path(min_length=1, max_length=200)]


def _answer(fig, **data: object) -> Response:
    return OrjsonResponse({"figure": fig_json(fig), **data})


# ----------------------------------------------------------------------------- positional


@router.get("/api/figures/similarity", responses={k: ERRORS[k] for k in (413, 422)})
async def similarity_figure(services: ServicesDep, d_model: PositionalDModel = 64,
                            max_len: PositionalLen = 128, n_heads: PositionalHeads = 8) -> Response:
    """Similarity vs offset for every scheme (learned and T5 at their seeded random initialisation); `skipped`
    names a scheme that cannot take these sizes, and why (the figure says so too)."""
    descs, skipped = await anyio.to_thread.run_sync(describe_similarity, d_model, max_len, n_heads,
                                                    services.settings)
    data = {s: d.get("similarity") for s, d in descs.items()}
    return _answer(figures.positional_similarity(descs, skipped), data=data, skipped=skipped,
                   definition=figures.SIMILARITY_DEFINITION)


@router.get("/api/figures/extrapolation")
async def extrapolation_figure(services: ServicesDep) -> Response:
    """The extrapolation lab's curve; ``available: false`` with the reason when it has not run."""
    try:
        results = extrapolation_results(services.settings)
    except NotFound:
        return OrjsonResponse({"available": False, "reason": "no extrapolation results on this server yet: run "
                               "`attnlab lab extrapolation` (writes models/zoo/extrapolation/results.json)"})
    return _answer(figures.extrapolation_curve(results), available=True, data=results)


# ----------------------------------------------------------------------------- heads


@router.get("/api/figures/heads/{run_id}", responses={k: ERRORS[k] for k in (404, 409, 413, 422, 429, 503)})
async def heads_figure(run_id: RunIdPath, services: ServicesDep,
                       kind: Kind | None = Query(None, description="default: the run's first kind")) -> Response:
    """Head-type scores of a run as one layers x heads heatmap per detector, each with its own colour bar and
    unit; cross-attention (encoder-decoder) has the scores that apply to two sequences."""
    run = await services.runs.get(run_id)
    stats = await services.runs.heads(run)
    kind = kind or next(iter(stats), None)
    if kind not in stats:
        raise Invalid(f"kind: run {run_id} has head scores for {sorted(stats)}, not {kind!r}")
    return _answer(figures.head_type_grids(stats[kind]), kind=kind, scores=stats[kind])


# ----------------------------------------------------------------------------- architecture


@router.get("/api/figures/architecture/{model_id}", responses={k: ERRORS[k] for k in (404, 409)})
async def architecture(model_id: ModelIdPath, services: ServicesDep,
                       context: int = Query(128, ge=1, le=131072)) -> Response:
    """Blocks, shapes, parameters and FLOPs per token by component, from the model's config."""
    arch = await architecture_service.architecture(services.hub, model_id, context)
    return _answer(figures.architecture_figure(arch), architecture=arch)


@router.get("/api/figures/profile/{model_id}", responses={k: ERRORS[k] for k in (404, 409, 413)})
async def profile(model_id: ModelIdPath, services: ServicesDep, tokens: int = Query(32, ge=4, le=512)) -> Response:
    """Forward and backward time per component on a fresh copy of the architecture (cached). Bounded by
    `profile_max_gflop`: a profile estimated above it is refused with 413 before it starts."""
    result = await architecture_service.profile(services.hub, services.settings, model_id, tokens)
    return _answer(figures.profile_figure(result), profile=result)
