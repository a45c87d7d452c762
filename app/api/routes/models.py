"""GET /api/models and GET /api/models/{model_id}."""

from __future__ import annotations

from fastapi import APIRouter, Path

from ..deps import ServicesDep
from ..errors import ERRORS
from ..schemas import ModelDetail, ModelInfoOut

router = APIRouter(prefix="/api/models", tags=["models"])


@router.get("", response_model=list[ModelInfoOut])
async def list_models(services: ServicesDep) -> list[ModelInfoOut]:
    """Every registered model, available or not (with the reason)."""
    return [ModelInfoOut(**info.to_dict()) for info in services.hub.list()]


@router.get("/{model_id:path}", response_model=ModelDetail, responses={k: ERRORS[k] for k in (404, 409)})
async def model_detail(model_id: str = Path(max_length=200), *, services: ServicesDep) -> ModelDetail:
    """The model's config for the architecture page (loads the model on first use)."""
    return ModelDetail(**await services.hub.describe(model_id))
