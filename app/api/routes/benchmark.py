"""POST /api/benchmark: math vs sdpa vs flash, synthetic shapes or one model on one text."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter

from ...web.figures import benchmark_figure, fig_json
from ..deps import ServicesDep
from ..errors import ERRORS
from ..schemas import BenchmarkLatest, BenchmarkRequest, BenchmarkResponse, SyntheticBenchmarkRequest
from ..transport import OrjsonResponse

router = APIRouter(prefix="/api", tags=["benchmark"])


@router.post("/benchmark", response_model=BenchmarkResponse, response_class=OrjsonResponse,
             responses={k: ERRORS[k] for k in (404, 409, 413, 422, 429, 503)})
async def benchmark(req: BenchmarkRequest, services: ServicesDep,
                    format: Literal["json", "figure"] = "json") -> BenchmarkResponse:
    """Per backend: median ms, GFLOP/s, peak memory, max abs diff vs math. One benchmark at a time (429 while
    one runs); each bounded by `benchmark_budget_s`. A body with `model` is the model form (ModelBenchmarkRequest),
    any other the synthetic one (SyntheticBenchmarkRequest); errors name the fields of that form only.
    `format=figure` adds `figure`: time and memory vs T as Plotly JSON (the Backends page's chart)."""
    service = services.benchmark
    if isinstance(req, SyntheticBenchmarkRequest):
        results = await service.synthetic(req.seq_lens, req.backends, req.causal, req.n_heads, req.head_dim,
                                          req.passes)
        form = "synthetic"
    else:
        results = await service.on_model(req.model, req.text, req.backends)
        form = "model"
    service.remember(form, req.model_dump(), results)
    answer = BenchmarkResponse(form=form, budget_s=services.settings.benchmark_budget_s, results=results)
    if format == "figure":
        answer.figure = fig_json(benchmark_figure(results))
    return answer


@router.get("/benchmark/latest", response_model=BenchmarkLatest, response_class=OrjsonResponse)
async def latest_benchmark(services: ServicesDep, format: Literal["json", "figure"] = "json") -> BenchmarkLatest:
    """The last benchmark this server ran (`source: "this server"`), else the results shipped with attnlab
    (`source: "shipped"`, with the machine they were measured on). Measures nothing: the Backends page opens on it
    and measures only when asked (POST /api/benchmark). `format=figure` adds the page's chart."""
    answer = BenchmarkLatest(**services.benchmark.latest())
    if format == "figure":
        answer.figure = fig_json(benchmark_figure(answer.results))
    return answer
