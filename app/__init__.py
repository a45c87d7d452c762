"""attnlab: see what Transformer attention does.

The library face, for notebooks and scripts::

    import attnlab
    model = attnlab.load("minilm")              # a registry model: bundled, zoo or allowlisted
    result = model.forward("The cat sat on the mat.", backend="flash")
    result.tokens                               # display labels of the input tokens
    result.recorder                             # per (kind, layer): the captured Q, K and row LSE
    result.maps()                               # numpy [L, H, Tq, Tk]
    result.show("model")                        # the layers x heads grid, inline (attnlab.notebook)

    with attnlab.attach(my_model, my_tokenizer) as m:   # your own transformers model, in memory
        m.forward("...").maps()

The server and CLI live in the subpackages: ``attnlab.main`` (the FastAPI app), ``attnlab.cli``
(the ``attnlab`` command), ``attnlab.api``, ``attnlab.services``, ``attnlab.web`` and ``attnlab.core``;
the from-scratch Transformer library is ``attnlab.models``. The folders of a checkout map onto these
names (pyproject.toml): ``app/`` is ``attnlab``, ``models/`` is ``attnlab.models``.

Names are loaded on first use, so ``import attnlab`` stays cheap (no torch until a model is needed).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "load": "attnlab.models.registry",
    "attach": "attnlab.models.hf.attach",
    "UnsupportedModel": "attnlab.models.hf.attach",
    "default_registry": "attnlab.models.registry",
    "Registry": "attnlab.models.registry",
    "ModelAdapter": "attnlab.models.adapter",
    "UnknownModel": "attnlab.models.catalogue",
    "UnavailableModel": "attnlab.models.catalogue",
    "capture": "attnlab.models.capture",
    "token_labels": "attnlab.models.labels",
}

__all__ = ["ModelAdapter", "Registry", "UnavailableModel", "UnknownModel", "UnsupportedModel", "__version__",
           "attach", "capture", "default_registry", "load", "token_labels"]

if TYPE_CHECKING:
    from .models.adapter import ModelAdapter
    from .models.capture import capture
    from .models.catalogue import UnavailableModel, UnknownModel
    from .models.hf.attach import UnsupportedModel, attach
    from .models.labels import token_labels
    from .models.registry import Registry, default_registry, load


# subpackages reachable as attributes without an import of their own: ``attnlab.notebook.trace(...)``
_SUBMODULES = ("notebook",)


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return import_module(f"attnlab.{name}")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'attnlab' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
