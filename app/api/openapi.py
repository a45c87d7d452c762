"""The OpenAPI document: FastAPI's, made to say exactly what this app, with its settings, does.

/openapi.json is the contract (tests run schemathesis against it); its page, /docs, is app.web.docs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts

from ..core.settings import Settings
from .deps import get_services
from .errors import STATUSES, NotStarted
from .limits import apply_limits
from .schemas import ErrorOut

REF_TEMPLATE = "#/components/schemas/{model}"


# -- the OpenAPI document: FastAPI's, made to say exactly what this app does ---------------------------------


@dataclass(frozen=True)
class ExtraResponse:
    """A status operations can answer although no route declares it (sent by middleware or the framework)."""

    status: int
    description: str
    applies: Callable[[APIRoute, dict], bool]  # (the route, its operation object in the document)


def _takes_a_body(route: APIRoute, operation: dict) -> bool:
    return "requestBody" in operation


def _uses_services(route: APIRoute, operation: dict) -> bool:
    def calls(dependant) -> Iterator[Callable]:
        for sub in dependant.dependencies:
            yield sub.call
            yield from calls(sub)

    return get_services in calls(route.dependant)


def extra_responses(settings: Settings) -> list[ExtraResponse]:
    """Every status no route declares, and which operations can send it: the one place to add such a status
    (a middleware that answers on its own adds its line here)."""
    return [
        ExtraResponse(413, f"a body over {settings.body_limit_bytes()} bytes is refused before it is read "
                           "(max_body_bytes)", _takes_a_body),
        ExtraResponse(503, STATUSES[NotStarted].description, _uses_services),
    ]


def add_response(operation: dict, status: int, description: str) -> None:
    """Document ``status`` on one operation, or add ``description`` to the one already there."""
    response = operation.setdefault("responses", {}).setdefault(str(status), {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}})
    if description not in response["description"]:
        response["description"] = f"{response['description']}; {description}"


def install_openapi(app: FastAPI, settings: Settings) -> None:
    """``app.openapi()``: FastAPI's document, then (once per app) the errors as the app sends them, the bounds
    this app's settings set (app.api.limits) and the statuses no route declares (``extra_responses``)."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            document = build()
            schemas = document.get("components", {}).get("schemas", {})
            # FastAPI documents 422 as its own HTTPValidationError (detail: a list); app.api.errors sends ErrorOut
            if "HTTPValidationError" in schemas:
                schemas["HTTPValidationError"] = ErrorOut.model_json_schema(ref_template=REF_TEMPLATE)
            apply_limits(document, settings)
            extras = extra_responses(settings)
            for context in iter_route_contexts(app.routes):  # every route, with its prefix applied
                route = context.original_route
                if not isinstance(route, APIRoute) or not route.include_in_schema:
                    continue
                for method in context.methods:
                    operation = document["paths"].get(context.path_format, {}).get(method.lower())
                    for extra in extras:
                        if operation is not None and extra.applies(route, operation):
                            add_response(operation, extra.status, extra.description)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi
