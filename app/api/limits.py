"""Bounds of the API that the server's settings set (``max_pool``, ``max_new_tokens``, ``max_text_chars``).

One declaration serves both sides of the contract: a field annotated ``Limit("max_pool")`` is
validated against the settings of the app serving the request, and the OpenAPI document of that
app states the same number (``apply_limits``). So ``ATTNLAB_MAX_POOL=512`` changes both what is
refused and what /openapi.json promises; there is no second copy of the bound to drift.

The settings reach pydantic through a context variable that ``SettingsContext`` (pure ASGI) binds
for each request; outside a request (a notebook, a test validating a body) the settings' defaults
apply.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic_core import PydanticCustomError, core_schema
from starlette.types import ASGIApp, Receive, Scope, Send

from ..core.settings import Settings

_current: ContextVar[Settings | None] = ContextVar("attnlab_settings", default=None)

SETTING_KEY = "x-setting"  # marks a bound in the document; the number next to it is the setting's value
# JSON Schema keyword of an upper bound, by the JSON type it bounds
_UPPER = {"integer": "maximum", "number": "maximum", "string": "maxLength", "array": "maxItems"}


def setting_value(name: str) -> Any:
    """The setting of the app serving this request, or its default outside one. ``name`` is a field of
    Settings or a property derived from fields (``benchmark_max_seq_len``)."""
    settings = _current.get()
    return getattr(settings if settings is not None else _defaults(), name)


@lru_cache(maxsize=1)
def _defaults() -> Settings:
    """Settings with every default and nothing from the environment (no validation, no .env read)."""
    return Settings.model_construct()


@dataclass(frozen=True)
class Limit:
    """``Annotated[int, Limit("max_pool")]``: at most the setting (a number, or a length for text and lists).

    ``setting`` may be a property derived from settings; ``source`` then names, for messages, the setting
    it comes from (a derived name is not something an operator can set)."""

    setting: str
    source: str | None = None

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler) -> dict:
        json_schema = handler(schema)
        json_schema[SETTING_KEY] = self.setting
        json_schema[_UPPER[json_schema["type"]]] = getattr(_defaults(), self.setting)  # apply_limits sets it
        return json_schema

    def _check(self, value: Any) -> Any:
        limit = setting_value(self.setting)
        ctx = {"limit": limit, "setting": self.source or self.setting}
        if isinstance(value, str) and len(value) > limit:
            raise PydanticCustomError("string_too_long", "String should have at most {limit} characters ({setting})",
                                      ctx)
        if isinstance(value, list) and len(value) > limit:
            raise PydanticCustomError("too_long", "List should have at most {limit} items ({setting})", ctx)
        if isinstance(value, (int, float)) and value > limit:
            raise PydanticCustomError("less_than_equal", "Input should be less than or equal to {limit} ({setting})",
                                      ctx)
        return value


def apply_limits(node: Any, settings: Settings) -> None:
    """Write ``settings``' values into every bound of an OpenAPI document marked with ``x-setting``."""
    if isinstance(node, dict):
        if SETTING_KEY in node:
            node[_UPPER[node["type"]]] = getattr(settings, node[SETTING_KEY])
        for value in node.values():
            apply_limits(value, settings)
    elif isinstance(node, list):
        for value in node:
            apply_limits(value, settings)


class SettingsContext:
    """Pure ASGI: every request this app serves validates against this app's settings."""

    def __init__(self, app: ASGIApp, settings: Settings):
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = _current.set(self.settings)
        try:
            await self.app(scope, receive, send)
        finally:
            _current.reset(token)
