"""create_app(): the FastAPI application, its lifespan and routers."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI

from .settings import Settings, get_settings

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        log.info("attnlab starting")
        yield
        log.info("attnlab stopped")

    app = FastAPI(title="attnlab", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings

    @app.get("/api/health", tags=["meta"])
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
