"""Errors the services raise; app.main maps each class to its HTTP status once.

Every message says what was wrong and the limit or the way out, because it is shown
as is to a student in the page and to a script in its traceback.
"""

from __future__ import annotations


class ApiError(Exception):
    status: int = 400

    def __init__(self, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}


class NotFound(ApiError):
    status = 404


class Unavailable(ApiError):
    """A registered model that cannot load here; the detail carries its reason."""

    status = 409


class TooLarge(ApiError):
    """Over a size budget (dense weights, tile cells, run cache bytes, tokens)."""

    status = 413


class Invalid(ApiError):
    """Well-formed but out of range for this model or run (layer, head, tile, tokens)."""

    status = 422


class Busy(ApiError):
    """Too many requests queued for one model: retry later."""

    status = 429

    def __init__(self, detail: str, retry_after_s: int):
        super().__init__(detail, {"Retry-After": str(retry_after_s)})


class Overloaded(Busy):
    """Waited in the queue past the configured timeout."""

    status = 503
