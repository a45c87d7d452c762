"""Per-request log fields (model, tokens, ...) that services add and the log middleware prints.

The middleware puts a fresh dict in a context variable; services mutate that same
dict, so fields set in worker threads (whose context is a copy) still reach the log.
"""

from __future__ import annotations

import contextvars

_fields: contextvars.ContextVar[dict | None] = contextvars.ContextVar("attnlab_log_fields", default=None)


def start() -> dict:
    fields: dict = {}
    _fields.set(fields)
    return fields


def note(**fields: object) -> None:
    current = _fields.get()
    if current is not None:
        current.update(fields)
