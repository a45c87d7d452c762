"""Service errors as HTTP answers: the one mapping from exception class to status, the error bodies, and the
handlers create_app installs.

Every error answer is ``{"detail": "<field>: <what is wrong and the limit>", "errors": [...]}`` (ErrorOut).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from fastapi import Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from ..services.errors import Busy, Invalid, NotFound, Overloaded, ServiceError, TooLarge, Unavailable
from .schemas import UNION_TAGS, ErrorOut
from .transport import OrjsonResponse

log = logging.getLogger(__name__)


class NotStarted(ServiceError):
    """A request before the lifespan built the services (or after it ended)."""


@dataclass(frozen=True)
class Status:
    code: int
    description: str  # what the status means on every operation that declares it (the OpenAPI document)


# The mapping, written once. A subclass not listed takes its nearest listed base's status (Overloaded is a Busy
# with its own). 422 is also pydantic's answer to a value outside the bounds the document states.
STATUSES: dict[type[ServiceError], Status] = {
    NotFound: Status(404, "unknown model or run (the message lists the known ones / says how to recreate the run)"),
    Unavailable: Status(409, "the model is registered but unavailable here; the message gives the reason"),
    TooLarge: Status(413, "valid, but larger than a limit: more tokens than the model's own max_positions, "
                          "or over a budget (dense_budget, max_tile_cells, run_cache_bytes, ...); "
                          "the message names it"),
    Invalid: Status(422, "invalid request: a value outside the bounds stated here, or one this model or run does not "
                         "have (a layer, a head, a kind); `detail` names the field and the limit"),
    Busy: Status(429, "too many requests queued for this model; see Retry-After"),
    Overloaded: Status(503, "waited too long for a model slot, or the shared run store is unreachable; see "
                            "Retry-After"),
    NotStarted: Status(503, "the server is starting (its lifespan has not run yet); see Retry-After"),
}

# the `responses=` entries of the routes, by status: ``responses={k: ERRORS[k] for k in (404, 422)}``
ERRORS: dict[int, dict] = {s.code: {"description": s.description, "model": ErrorOut}
                           for cls, s in STATUSES.items() if cls is not NotStarted}


def status_of(err: ServiceError) -> int:
    """The HTTP status of a service error: its class's, or its nearest listed base's (500 for none)."""
    for cls in type(err).__mro__:
        if cls in STATUSES:
            return STATUSES[cls].code
    return 500


def _field(loc: tuple) -> str:
    """The field an error location names: ``("body", "seq_lens", 0)`` -> ``seq_lens.0``. A discriminated body
    (app.api.schemas.BenchmarkRequest) puts the chosen form's tag after "body": the field is the form's own."""
    if len(loc) > 1 and loc[0] == "body" and loc[1] in UNION_TAGS:
        loc = loc[:1] + loc[2:]
    # only the first item is where the value was; a parameter may itself be named "query" (GET .../computation)
    if loc and loc[0] in ("body", "query", "path", "header"):
        loc = loc[1:]
    parts = [str(p) for p in loc]
    return ".".join(parts) or "body"


def _error_line(error: dict) -> dict:
    """One error as ``{field, msg, type}``. A body that is not JSON is located at a character, not a field."""
    if error.get("type") == "json_invalid":
        loc = tuple(error.get("loc", ()))
        at = f" at character {loc[-1]}" if len(loc) > 1 and isinstance(loc[-1], int) else ""
        reason = (error.get("ctx") or {}).get("error", "not JSON")
        return {"field": "body", "msg": f"invalid JSON{at}: {reason}", "type": "json_invalid"}
    return {"field": _field(tuple(error.get("loc", ()))), "msg": error.get("msg", ""), "type": error.get("type", "")}


async def validation_error(request: Request, exc: RequestValidationError) -> Response:
    """422 with one readable line per error, each naming its field; the input is never echoed back."""
    errors = [_error_line(e) for e in exc.errors()]
    detail = "; ".join(f"{e['field']}: {e['msg']}" for e in errors) or "invalid request"
    return OrjsonResponse({"detail": detail, "errors": errors}, status_code=422)


async def service_error(request: Request, exc: ServiceError) -> Response:
    return OrjsonResponse({"detail": exc.detail}, status_code=status_of(exc), headers=exc.headers)


async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
    """FastAPI answers 400 to a body it cannot decode (not UTF-8): for us that is an invalid request like any
    other, 422 in the same shape. Other HTTP errors (404 and 405 of unknown routes) keep FastAPI's answer."""
    if exc.status_code != 400:
        return await http_exception_handler(request, exc)
    reason = str(exc.__cause__) if exc.__cause__ is not None else "not JSON"
    error = {"field": "body", "msg": f"could not be decoded: {reason}", "type": "json_invalid"}
    return OrjsonResponse({"detail": f"body: {error['msg']}", "errors": [error]}, status_code=422)


async def internal_error(request: Request, exc: Exception) -> Response:
    """A bug, not bad input: the documented JSON shape (the pages show `detail`), the traceback in the log."""
    log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
    return OrjsonResponse({"detail": "internal error: this is a bug in attnlab, not in the request; the server log "
                                     "has the traceback"}, status_code=500)


HANDLERS = ((RequestValidationError, validation_error), (StarletteHTTPException, http_error),
            (ServiceError, service_error), (Exception, internal_error))
