"""The dependency aliases routes declare: ``ServicesDep``, ``SettingsDep``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..core.settings import Settings, get_settings
from ..services import Services
from .errors import NotStarted


def get_services(request: Request) -> Services:
    services = getattr(request.app.state, "services", None)
    if services is None:
        raise NotStarted("the server is starting (lifespan not run yet); retry shortly", {"Retry-After": "1"})
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
