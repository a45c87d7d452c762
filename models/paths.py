"""Where attnlab keeps files: the user cache, the user data directory and the bundled zoo of demo checkpoints.

- :func:`cache_dir`: ``$ATTNLAB_CACHE_DIR``, else ``$XDG_CACHE_HOME/attnlab``, else
  ``~/.cache/attnlab``. Corpora (``<cache>/corpora``) and converted GGUF weights
  (``<cache>/pretrained``) live there: files that can be made again.
- :func:`data_dir`: ``$ATTNLAB_DATA_DIR``, else platformdirs' user data directory
  (``~/.local/share/attnlab`` on Linux, ``~/Library/Application Support/attnlab`` on macOS,
  ``%LOCALAPPDATA%\\attnlab`` on Windows). A lab run writes ``<data>/labs/<name>``
  (:func:`labs_dir`): a user's own results, never inside the installed package.
- :data:`ZOO`: ``models/zoo/``, the from-scratch checkpoints and lab results shipped with attnlab:
  package data, read-only once installed.
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

CACHE_DIR_ENV = "ATTNLAB_CACHE_DIR"
DATA_DIR_ENV = "ATTNLAB_DATA_DIR"
ZOO = Path(str(files(__package__) / "zoo"))  # package data of attnlab.models: read-only once installed
USER_PREFIX = "my-"  # ids of a user's own lab runs, listed beside the bundled zoo's (`my-lm` next to `lm`)


def cache_dir() -> Path:
    """attnlab's user cache: $ATTNLAB_CACHE_DIR, else $XDG_CACHE_HOME/attnlab, else ~/.cache/attnlab."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "attnlab"


def data_dir() -> Path:
    """attnlab's user data directory: $ATTNLAB_DATA_DIR, else ``platformdirs.user_data_dir("attnlab")``."""
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("attnlab", appauthor=False))


def labs_dir() -> Path:
    """Where ``attnlab lab NAME`` writes by default: ``<data_dir>/labs`` (one folder per lab)."""
    return data_dir() / "labs"
