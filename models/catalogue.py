"""The catalogue's vocabulary: a registry entry and the errors of looking a model up.

Kept apart from ``attnlab.models.registry`` (which holds and loads entries) and ``attnlab.models.hf`` (which
builds the pretrained ones), so that neither imports the other for these types.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .names import UnknownName

if TYPE_CHECKING:
    from .adapter import ModelAdapter, ModelInfo


class UnknownModel(UnknownName):
    """No model of that id is registered (the server answers 404)."""


class UnavailableModel(RuntimeError):
    """The model is registered but cannot load here (its reason says what to do; the server answers 409)."""


@dataclass
class Entry:
    """One model of the catalogue: ``info`` is cheap (never loads weights), ``load`` builds the adapter."""

    id: str
    info: Callable[[], ModelInfo]
    load: Callable[[], ModelAdapter]
