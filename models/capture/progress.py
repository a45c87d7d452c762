"""Progress of a capture, layer by layer, and cancelling it between layers.

``with on_record(hook): model(ids)`` calls ``hook(kind, layer)`` after each attention call
recorded in this context (``Recorder.add``). A hook may raise :class:`Cancelled` to stop the
forward there: a long run (thousands of tokens on the ``math`` backend) stops within one
layer once its client has gone. A context variable, not module state: two threads (two
server requests) report and cancel independently.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator

ProgressHook = Callable[[str, int], None]

_hook: contextvars.ContextVar[ProgressHook | None] = contextvars.ContextVar("attnlab_progress", default=None)


class Cancelled(RuntimeError):
    """The capture was cancelled between two attention calls (its client went away)."""


def notify(kind: str, layer: int) -> None:
    """Called by the recorder after each attention call; runs this context's hook, if any."""
    hook = _hook.get()
    if hook is not None:
        hook(kind, layer)


@contextlib.contextmanager
def on_record(hook: ProgressHook) -> Iterator[None]:
    """Call ``hook(kind, layer)`` after every attention call recorded in this block."""
    token = _hook.set(hook)
    try:
        yield
    finally:
        _hook.reset(token)
