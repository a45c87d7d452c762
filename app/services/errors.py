"""Errors the services raise; app.api.errors maps each class to its HTTP status, once (``STATUSES``).

Every message says what was wrong and the limit or the way out, because it is shown
as is to a student in the page and to a script in its traceback: ``"<field>: <what> ... (<limit>)"``.

One kind of error, one status, for every model family (the services know no HTTP; the statuses are
app.api.errors'):

- 422 ``Invalid``: a value the API does not accept. Outside the bounds the OpenAPI document states
  (pydantic answers those before a service runs), or one this model or run does not have: a layer,
  a head, a kind, a second segment for a decoder.
- 413 ``TooLarge``: every value is valid, but the input is larger than a limit: more tokens than
  the model's own ``max_positions`` (limits are per model), characters past ``max_text_chars``
  together, work or memory over a budget (``dense_budget``, ``max_tile_cells``, ``run_cache_bytes``,
  ``head_stats_max_cells``, ``benchmark_max_cells``, ``profile_max_gflop``). Refused before the work.

Adapters report only what they alone know (text with no tokens, as ``ValueError``: 422); token
counts are checked once, for every family, in ``attnlab.services.inputs.encode_checked``.
"""

from __future__ import annotations


def with_article(noun: str) -> str:
    """"an encoder-decoder", "a decoder": the indefinite article of a word in a message."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


class ServiceError(Exception):
    """What went wrong, for a person (``detail``), and headers the answer carries (Retry-After)."""

    def __init__(self, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}


class NotFound(ServiceError):
    """An unknown model, run, checkpoint or result; the detail lists the known ones or the way to make it."""


class Unavailable(ServiceError):
    """A registered model that cannot load here; the detail carries its reason."""


class TooLarge(ServiceError):
    """Larger than a limit: tokens past the model or server, over a size or work budget."""


class Invalid(ServiceError):
    """A value this model or run does not have (layer, head, kind, tile range, a pair for a decoder)."""


class Busy(ServiceError):
    """Too many requests queued for one model: retry later."""

    def __init__(self, detail: str, retry_after_s: int):
        super().__init__(detail, {"Retry-After": str(retry_after_s)})


class Overloaded(Busy):
    """Waited in the queue past the configured timeout."""
