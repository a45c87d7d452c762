"""create_app(): the FastAPI application, its lifespan, middleware, error handlers and routers."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path

import torch
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.gzip import DEFAULT_EXCLUDED_CONTENT_TYPES, GZipMiddleware
from starlette.responses import Response

from models import Registry, default_registry
from models.memory import measure_peak

from . import pages
from .docs import install_openapi, mount_docs
from .limits import SettingsContext
from .middleware import BodyLimitMiddleware, RequestLogMiddleware, SecurityHeadersMiddleware
from .routes import attention, benchmark, generate, health, positional, runs
from .routes import models as models_routes
from .services import build_services
from .services.errors import ApiError
from .services.metrics import Metrics
from .settings import Settings, get_settings
from .transport import BINARY_MEDIA_TYPE, EXPOSED_HEADERS, OrjsonResponse

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent.parent / "static"
API_ROUTERS = (health.router, models_routes.router, attention.router, runs.router, generate.router,
               positional.router, benchmark.router)

DESCRIPTION = """Per-layer, per-head attention of from-scratch and pretrained Transformers.

Small inputs: `POST /api/attention` (JSON or NPY). Long inputs: `POST /api/runs`, then exact tiles and
pooled overviews from `GET /api/runs/{run_id}/attention`, computed from the captured (Q, K, LSE).
Errors are `{"detail": "<field>: <what is wrong and the limit>", "errors": [...]}`: 422 for a value that is
invalid (outside the bounds stated here, or a layer, head or kind the model or run does not have), 413 for an
input larger than a limit (more tokens than the model's positions or the server's `max_tokens`, over a budget),
the same for every model family. Bounds marked `x-setting` are this server's settings."""


def _field(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
    """422 with one readable line per error, each naming its field; the input is never echoed back."""
    errors = [{"field": _field(tuple(e.get("loc", ()))), "msg": e.get("msg", ""), "type": e.get("type", "")}
              for e in exc.errors()]
    detail = "; ".join(f"{e['field']}: {e['msg']}" for e in errors) or "invalid request"
    return OrjsonResponse({"detail": detail, "errors": errors}, status_code=422)


async def _api_error(request: Request, exc: ApiError) -> Response:
    return OrjsonResponse({"detail": exc.detail}, status_code=exc.status, headers=exc.headers)


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    """FastAPI answers 400 to a body it cannot decode (not UTF-8): for us that is an invalid request like any
    other, 422 in the same shape. Other HTTP errors (404 and 405 of unknown routes) keep FastAPI's answer."""
    if exc.status_code != 400:
        return await http_exception_handler(request, exc)
    reason = str(exc.__cause__) if exc.__cause__ is not None else "not JSON"
    error = {"field": "body", "msg": f"could not be decoded: {reason}", "type": "json_invalid"}
    return OrjsonResponse({"detail": f"body: {error['msg']}", "errors": [error]}, status_code=422)


def create_app(settings: Settings | None = None, registry: Registry | None = None) -> FastAPI:
    """The app. ``registry`` replaces the default one (tests register tiny models there)."""
    settings = settings or get_settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        torch.set_num_threads(settings.threads_per_forward())
        # kineto registers its profiler client on the first profile and complains (an ERROR line) when that
        # first profile runs on a worker thread; one empty measurement here, on the main thread, costs ~3 ms
        measure_peak(lambda: None)
        reg = registry if registry is not None else default_registry(
            settings.allowlist, settings.model_dir, settings.zoo_dir)
        services = build_services(settings, reg, metrics)
        app.state.services = services
        log.info("attnlab starting: %d models registered", len(reg.ids()))
        if settings.preload:
            for model_id in settings.default_models:
                try:
                    await services.hub.adapter(model_id)
                except ApiError as err:
                    log.warning("preload of %s skipped: %s", model_id, err.detail)
        yield
        app.state.services = None
        log.info("attnlab stopped")

    app = FastAPI(title="attnlab", version="0.1.0", description=DESCRIPTION, lifespan=lifespan,
                  default_response_class=OrjsonResponse, docs_url=None, redoc_url=None)
    mount_docs(app)
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.services = None
    app.dependency_overrides[get_settings] = lambda: settings

    install_openapi(app, settings)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(ApiError, _api_error)

    for router in API_ROUTERS:
        app.include_router(router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")

    # the last added runs first: log (times everything) -> security headers -> CORS -> body limit -> gzip ->
    # this app's settings bound for validation (app.limits)
    app.add_middleware(SettingsContext, settings=settings)
    app.add_middleware(GZipMiddleware, minimum_size=settings.gzip_min_bytes, compresslevel=settings.gzip_level,
                       exclude_content_types=DEFAULT_EXCLUDED_CONTENT_TYPES + (BINARY_MEDIA_TYPE,))
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.body_limit_bytes())
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Content-Type", "X-Request-ID"], expose_headers=EXPOSED_HEADERS)
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(RequestLogMiddleware, metrics=metrics)
    return app
