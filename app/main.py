"""create_app(): the FastAPI application, its lifespan, middleware, error handlers and routers.

The composition root: it wires app.core (settings, middleware, metrics), app.services, app.api (routers,
errors, the OpenAPI document) and app.web (pages, /docs, static files); nothing imports it but the CLI."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

import torch
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from starlette.middleware.gzip import DEFAULT_EXCLUDED_CONTENT_TYPES, GZipMiddleware

from attnlab.models import Registry, default_registry
from attnlab.models.memory import measure_peak

from .api.errors import HANDLERS
from .api.limits import SettingsContext
from .api.openapi import install_openapi
from .api.routes import ROUTERS
from .api.transport import BINARY_MEDIA_TYPE, EXPOSED_HEADERS, OrjsonResponse
from .core.metrics import Metrics
from .core.middleware import BodyLimitMiddleware, RequestLogMiddleware, SecurityHeadersMiddleware
from .core.settings import Settings, get_settings
from .services import build_services
from .services.errors import ServiceError
from .web import pages
from .web.assets import STATIC
from .web.docs import mount_docs

log = logging.getLogger(__name__)

DESCRIPTION = """Per-layer, per-head attention of from-scratch and pretrained Transformers.

Small inputs: `POST /api/attention` (JSON or NPY). Long inputs: `POST /api/runs`, then exact tiles and
pooled overviews from `GET /api/runs/{run_id}/attention`, computed from the captured (Q, K, LSE).
Errors are `{"detail": "<field>: <what is wrong and the limit>", "errors": [...]}`: 422 for a value that is
invalid (outside the bounds stated here, or a layer, head or kind the model or run does not have), 413 for an
input larger than a limit (more tokens than the model's own `max_positions`, over a budget),
the same for every model family. Bounds marked `x-setting` are this server's settings."""


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
            settings.allowlist, settings.model_dir, settings.zoo_dir, user_labs=settings.labs_dir,
            model_paths=settings.model_paths, placement=settings.placement())
        services = build_services(settings, reg, metrics)
        app.state.services = services
        log.info("attnlab starting: %d models registered", len(reg.ids()))
        if settings.preload:
            for model_id in settings.default_models:
                try:
                    await services.hub.adapter(model_id)
                except ServiceError as err:
                    log.warning("preload of %s skipped: %s", model_id, err.detail)
        if settings.prepare_on_start:  # in the background: the server answers (health says `preparing`) meanwhile
            services.preparer.start(settings.default_models)
        yield
        await services.preparer.stop()
        services.runs.close()
        app.state.services = None
        await services.runs.store.close()
        metrics.close()
        log.info("attnlab stopped")

    app = FastAPI(title="attnlab", version="0.1.0", description=DESCRIPTION, lifespan=lifespan,
                  default_response_class=OrjsonResponse, docs_url=None, redoc_url=None)
    mount_docs(app)
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.services = None
    app.dependency_overrides[get_settings] = lambda: settings

    install_openapi(app, settings)
    for exc_class, handler in HANDLERS:
        app.add_exception_handler(exc_class, handler)

    for router in (*ROUTERS, pages.router):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")

    # the last added runs first: log (times everything) -> security headers -> CORS -> body limit -> gzip ->
    # this app's settings bound for validation (app.api.limits)
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
