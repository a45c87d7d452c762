"""Where the pages' files are: package data read with importlib.resources, never written at run time.

- :data:`STATIC`: the ``attnlab.static`` package (``static/`` in a checkout): JavaScript modules and CSS,
  served under ``/static``.
- :data:`TEMPLATES`: the ``attnlab.templates`` package (``templates/``): one Jinja2 template per page.
- :func:`plotly_js_source`: plotly.js as the installed ``plotly`` Python package ships it, served as
  ``/static/vendor/plotly.min.js`` straight from there (no CDN, no copy inside attnlab's own folders).

Both resolve to real directories: attnlab is installed as files (a wheel or an editable checkout),
never zipped, so ``importlib.resources.files`` gives a :class:`pathlib.Path`.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import plotly


def _package_dir(package: str) -> Path:
    return Path(str(files(package)))


STATIC = _package_dir("attnlab.static")
TEMPLATES = _package_dir("attnlab.templates")


def plotly_js_source() -> Path:
    """plotly.min.js of the installed plotly package (the version the figures are built with)."""
    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
