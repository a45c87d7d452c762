"""Looking a name up in a registry: one helper, one error for every "unknown name; known: [...]".

Every registry in ``models`` (attention backends, sparse patterns, positional schemes, presets,
schedules, objectives, tokenizers, labs, pool modes, models) is a dict keyed by name and is read
through :func:`lookup`, so an unknown name always fails the same way, with the same message shape.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeVar

V = TypeVar("V")


class UnknownName(KeyError, ValueError):
    """A name no registry entry has. The message names the known ones.

    A ``KeyError`` (a failed lookup) and a ``ValueError`` (a bad argument value), so callers that
    caught either before this helper existed still catch it; the server answers 404 for an
    unknown model and 422 for any other unknown name.
    """

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def unknown(what: str, name: object, known: Iterable[str], sep: str | None = None,
            error: type[UnknownName] = UnknownName) -> UnknownName:
    """The error for ``name`` missing from ``known``: ``"unknown <what> <name!r>; known: [...]"``.

    ``sep`` joins the names instead of printing the sorted list (``"a, b"`` for ``sep=", "``);
    ``error`` is an :class:`UnknownName` subclass (``attnlab.models.catalogue.UnknownModel``).
    """
    names = sorted(known)
    listed = sep.join(names) if sep is not None else str(names)
    return error(f"unknown {what} {name!r}; known: {listed}")


def lookup(table: Mapping[str, V], name: str, what: str, sep: str | None = None,
           error: type[UnknownName] = UnknownName) -> V:
    """``table[name]``, or ``error`` (an :class:`UnknownName`) listing the known names (see :func:`unknown`)."""
    try:
        return table[name]
    except (KeyError, TypeError):
        raise unknown(what, name, table, sep, error) from None
