"""Where attnlab keeps files: the user cache and the bundled zoo of demo checkpoints.

- :func:`cache_dir`: ``$ATTNLAB_CACHE_DIR``, else ``$XDG_CACHE_HOME/attnlab``, else
  ``~/.cache/attnlab``. Corpora (``<cache>/corpora``) and converted GGUF weights
  (``<cache>/pretrained``) live there.
- :data:`ZOO`: ``models/zoo/``, the from-scratch checkpoints the labs train.
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

CACHE_DIR_ENV = "ATTNLAB_CACHE_DIR"
ZOO = Path(str(files(__package__) / "zoo"))  # package data of attnlab.models: read-only once installed


def cache_dir() -> Path:
    """attnlab's user cache: $ATTNLAB_CACHE_DIR, else $XDG_CACHE_HOME/attnlab, else ~/.cache/attnlab."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "attnlab"
