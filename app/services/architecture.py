"""A model's architecture (blocks, shapes, parameters, FLOPs per component) and its measured profile."""

from __future__ import annotations

import anyio.to_thread

from attnlab.models.introspection import describe_architecture, profile_architecture, profile_cost_gflop

from ..core.settings import Settings
from .errors import Invalid, TooLarge
from .hub import ModelHub
from .inputs import too_many_tokens

MODEL_FIELDS = ("id", "family", "source", "n_params", "positional", "description")


async def architecture(hub: ModelHub, model_id: str, context: int) -> dict:
    """attnlab.models.introspection.describe_architecture of a model's config at ``context`` tokens, with the model's
    catalogue fields under ``model``. NotFound/Unavailable from the hub; Invalid for a model without a config."""
    detail = await hub.describe(model_id)
    config = detail.get("config") or {}
    if not config:
        raise Invalid(f"model: {model_id!r} does not describe its config")
    arch = describe_architecture(detail["family"], config, context)
    arch["model"] = {k: detail.get(k) for k in MODEL_FIELDS}
    return arch


async def profile(hub: ModelHub, settings: Settings, model_id: str, tokens: int) -> dict:
    """Forward and backward seconds per component at ``tokens`` tokens (models.introspection.profile_architecture).
    TooLarge (413) before it starts for more tokens than the model takes or an estimate over
    ``profile_max_gflop``."""
    adapter = await hub.adapter(model_id)  # 404 or 409 first
    info = adapter.info
    if tokens > info.max_positions:
        raise too_many_tokens(info, "tokens", tokens)
    n_params = info.n_params or sum(p.numel() for p in adapter.model.parameters())
    cost, budget = profile_cost_gflop(n_params, tokens), settings.profile_max_gflop
    if cost > budget:
        raise TooLarge(f"tokens: profiling {model_id!r} ({n_params:,} parameters) at {tokens} tokens is about "
                       f"{cost:,.0f} GFLOP, over profile_max_gflop {budget:,.0f}; use fewer tokens or a smaller model")
    # not in_thread: the profile times the backward pass too, which needs autograd
    return await anyio.to_thread.run_sync(profile_architecture, adapter, tokens)
