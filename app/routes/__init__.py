"""API routers (one per module) and the dependency aliases they share."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..schemas import ErrorOut
from ..services import Services
from ..services.errors import ApiError
from ..settings import Settings, get_settings


class NotStarted(ApiError):
    status = 503


def get_services(request: Request) -> Services:
    services = getattr(request.app.state, "services", None)
    if services is None:
        raise NotStarted("the server is starting (lifespan not run yet); retry shortly", {"Retry-After": "1"})
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
SettingsDep = Annotated[Settings, Depends(get_settings)]

ERRORS = {
    404: {"description": "unknown model or run (the message lists the known ones / says how to recreate the run)",
          "model": ErrorOut},
    409: {"description": "the model is registered but unavailable here; the message gives the reason",
          "model": ErrorOut},
    413: {"description": "valid, but larger than a limit: more tokens than the model's max_positions or the "
                         "server's max_tokens, or over a budget (dense_budget, max_tile_cells, run_cache_bytes, ...); "
                         "the message names it",
          "model": ErrorOut},
    422: {"description": "invalid request: a value outside the bounds stated here, or one this model or run does not "
                         "have (a layer, a head, a kind); `detail` names the field and the limit",
          "model": ErrorOut},
    429: {"description": "too many requests queued for this model; see Retry-After",
          "model": ErrorOut},
    503: {"description": "waited too long for a model slot; see Retry-After",
          "model": ErrorOut},
}
