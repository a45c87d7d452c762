"""An inline Plotly figure for Jupyter, VS Code and Colab that needs no network, then or later.

``InlineFigure`` answers IPython's ``_repr_mimebundle_`` with two renderings of one figure:

- ``application/vnd.plotly.v1+json``: the figure JSON, which JupyterLab's and VS Code's own Plotly
  renderers draw with the plotly.js they ship;
- ``text/html``: a ``<div>`` and a script that draws it with plotly.js **inlined** from the installed
  ``plotly`` package (the file the server serves, :func:`attnlab.web.assets.plotly_js_source`),
  never a CDN. Every figure carries the library itself (~4.7 MB), so each output stands alone: it
  draws after a kernel restart, out of order, and in a saved notebook reopened offline.
  ``set_plotly_js("once")`` inlines it only in the first figure of a kernel session (smaller
  notebooks; a reopened notebook then draws only once that first output is rendered).
"""

from __future__ import annotations

import html
import json
import uuid
from functools import lru_cache
from typing import Literal

import plotly.graph_objects as go
import plotly.io as pio

from ..web.assets import plotly_js_source

PlotlyJs = Literal["inline", "once"]
PLOTLY_MIME = "application/vnd.plotly.v1+json"
_state = {"mode": "inline", "sent": False}
# the page's export button: the same PNG download the pages offer, offline (no link to Chart Studio)
PLOT_CONFIG = {"displaylogo": False, "responsive": True, "showLink": False,
               "toImageButtonOptions": {"format": "png", "scale": 2}}


def set_plotly_js(mode: PlotlyJs) -> None:
    """``"inline"`` (default): plotly.js in every figure's HTML; ``"once"``: only in the first of a session."""
    if mode not in ("inline", "once"):
        raise ValueError(f"plotly_js: 'inline' or 'once', not {mode!r}")
    _state.update(mode=mode, sent=False)


@lru_cache(maxsize=1)
def _plotly_js() -> str:
    # a </script> inside the library would end the tag early; plotly.min.js has none, but be safe
    return plotly_js_source().read_text(encoding="utf-8").replace("</script>", "<\\/script>")


class InlineFigure:
    """A Plotly figure shown inline; ``figure`` is the ``go.Figure``, ``data`` the arrays it was drawn from."""

    def __init__(self, figure: go.Figure, data: dict | None = None):
        self.figure = figure
        self.data = data or {}

    def to_json(self) -> dict:
        return json.loads(pio.to_json(self.figure, validate=False))

    def to_html(self, include_plotly_js: bool = True) -> str:
        """A ``<div>`` and the script drawing it; with ``include_plotly_js``, plotly.js inlined before it."""
        fig = self.to_json()
        div = f"attnlab-{uuid.uuid4().hex}"
        height = fig.get("layout", {}).get("height") or 450
        # every "<" as \u003c (JSON and JS read it back as "<"): no token text can close the script or open a comment
        payload = json.dumps([fig.get("data", []), fig.get("layout", {}), PLOT_CONFIG]).replace("<", "\\u003c")
        parts = [f'<div id="{div}" class="attnlab-figure" style="height:{int(height)}px"></div>']
        if include_plotly_js:
            parts.append(f'<script type="text/javascript">{_plotly_js()}</script>')
        parts.append('<script type="text/javascript">(function () {'
                     f'const a = {payload}; window.Plotly.newPlot({json.dumps(div)}, a[0], a[1], a[2]);'
                     '})();</script>')
        return "\n".join(parts)

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        include_js = _state["mode"] == "inline" or not _state["sent"]
        _state["sent"] = True
        return {PLOTLY_MIME: self.to_json(), "text/html": self.to_html(include_js),
                "text/plain": html.unescape(self.figure.layout.title.text or "attnlab figure")}

    def write_html(self, path) -> None:
        """A standalone HTML file (plotly.js inlined): opens offline in any browser."""
        self.figure.write_html(path, include_plotlyjs=True, config=PLOT_CONFIG)

    def show(self) -> None:
        """Display now (inside a cell, before its end); the object also displays itself as a cell's value."""
        from IPython.display import display

        display(self)
