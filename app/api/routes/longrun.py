"""Long inputs: GET /api/long-text (a demo passage that fits the model), POST /api/runs/stream (a run with its
estimate and per-layer progress over Server-Sent Events, cancelled when the client goes) and
GET /api/runs/{id}/overviews (every head's pooled thumbnail of a band of layers in one answer)."""

from __future__ import annotations

import logging
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from pydantic import Field
from sse_starlette import EventSourceResponse
from starlette.responses import Response

from ...services.errors import ServiceError
from ...services.runs import Run
from ..deps import ServicesDep
from ..errors import ERRORS, status_of
from ..limits import Limit
from ..schemas import Kind, LongTextResponse, OverviewsResponse, RunResponse, StreamRunRequest
from ..transport import META_BOUND_DOC, OrjsonResponse, block_response, dumps

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api", tags=["runs"])

RunIdPath = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="32 hex digits, from POST /api/runs")]
RANGE = r"^[0-9]{0,9}:[0-9]{0,9}$"

STREAM_DOC = """The run of POST /api/runs, as `text/event-stream`: one `estimate` event (`{n_tokens, backend,
backend_reason, n_steps, estimate_s, run_id}`), one `progress` event per recorded attention layer (`{done, total,
kind, layer, elapsed_s}`), then `done` (RunResponse). A run already cached answers `done` at once. An `error`
event carries `{detail, status}` if the run fails midway. Closing the connection cancels the run: the server
stops it at the next layer. `backend: auto` (the default) picks flash from auto_flash_min_tokens tokens on."""

SSE_EVENT = {
    "type": "object", "required": ["data"],
    "properties": {
        "event": {"type": "string", "enum": ["estimate", "progress", "done", "error"]},
        "data": {"type": "string", "description": "JSON: estimate, progress, RunResponse (done), {detail, status} "
                                                   "(error)"},
    },
}


MAX_DEMO_TOKENS = 32768  # the longest any shipped model runs (the extrapolation decoders)


@router.get("/long-text", response_model=LongTextResponse, response_class=OrjsonResponse,
            responses={k: ERRORS[k] for k in (404, 409, 422)})
async def long_text(services: ServicesDep,
                    model: str = Query(..., min_length=1, max_length=200, description="a model id"),
                    tokens: Annotated[int, Field(ge=16, le=MAX_DEMO_TOKENS)] | None = Query(
                        None, description="at most this many tokens, as far as the model's positions and the run cache "
                                    "budget go (default: long_text_tokens)"),
                    ) -> LongTextResponse:
    """The long-text demo: a bundled passage that fits the model (its positions, the run cache),
    in characters the model can read, with the backend `auto` picks for it and the run's estimated time."""
    lt = await services.longrun.long_text(model, tokens)
    return LongTextResponse(model=model, text=lt.text, n_tokens=lt.n_tokens, limit=lt.limit,
                            limit_reason=lt.limit_reason, backend=lt.backend, backend_reason=lt.backend_reason,
                            estimate_s=float(f"{lt.estimate_s:.3g}"), dropped=lt.dropped, lowercased=lt.lowercased)


@router.post("/runs/stream", response_model=RunResponse, description=STREAM_DOC,
             responses={200: {"content": {"text/event-stream": {"schema": SSE_EVENT}}},
                        **{k: ERRORS[k] for k in (404, 409, 413, 422, 429, 503)}})
async def stream_run(req: StreamRunRequest, services: ServicesDep) -> Response:
    stream = services.longrun.stream(req.model, req.text, req.text_pair, req.backend, req.values)
    first = await anext(stream)  # bad input fails as 4xx before the stream starts

    def event(name: str, data: object) -> dict:
        if isinstance(data, Run):
            return {"event": "done", "data": RunResponse.of(data, name == "cached").model_dump_json()}
        return {"event": name, "data": dumps(data)}

    async def events():
        try:
            yield event(*first)
            async for name, data in stream:
                yield event(name, data)
        except ServiceError as err:
            yield {"event": "error", "data": dumps({"detail": err.detail, "status": status_of(err)})}
        except Exception:  # a bug: the 200 is already sent, so say it in the stream, and log it
            log.exception("run stream failed")
            yield {"event": "error", "data": dumps({"detail": "internal error while running; see the server log",
                                                    "status": 500})}
        finally:
            await stream.aclose()  # the client went: the run stops at its next layer

    return EventSourceResponse(events(), ping=15, headers={"Cache-Control": "no-store"})


@router.get("/runs/{run_id}/overviews", response_model=OverviewsResponse, response_class=OrjsonResponse,
            description="Pooled overviews of every head of layers a:b in one answer (the model view's thumbnails): "
                        "`format=f16` raw little-endian float16 (layers, heads, rows, cols) with `X-Shape` and "
                        "`X-Attnlab-Meta` (the other fields), `u8` with `X-Scale`, or JSON. " + META_BOUND_DOC,
            responses={200: {"content": {"application/octet-stream": {"schema": {"type": "string",
                                                                                 "format": "binary"}}}},
                       **{k: ERRORS[k] for k in (404, 413, 422)}})
async def run_overviews(
    run_id: RunIdPath,
    services: ServicesDep,
    kind: Kind | None = Query(None, description="default: the run's first kind"),
    layers: str | None = Query(None, pattern=RANGE, description="layer range a:b (half-open); default all"),
    pool: Annotated[int, Field(ge=1), Limit("max_pool")] | None = Query(
        None, description="overview side, at most max_pool (default 48, the model view's thumbnails)"),
    pool_mode: Literal["max", "mean"] = "max",
    format: Literal["json", "f16", "u8"] = "f16",
) -> Response:
    run = await services.runs.get(run_id)
    pool = pool or 48
    kind, span, maps, factor = await services.longrun.overviews(run, kind, layers, pool, pool_mode)
    meta = {"run_id": run_id, "kind": kind, "layers": list(span), "pool": pool, "pool_mode": pool_mode,
            "factor": factor, "shape": list(maps.shape)}
    if format == "json":
        return OrjsonResponse({**meta, "attention": maps})
    return block_response(maps, format, meta)
