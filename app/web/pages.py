"""HTML pages: one Jinja2 template per view, one ES module per view, one navigation bar.

Pages carry no inline script or style and no remote origin, so they are served under a
strict Content-Security-Policy (``script-src 'self'``, ``style-src 'self'``). Plotly.js
needs three things for that, all derived here from the installed plotly.min.js so they
follow its version:

- its global rules would go into an injected ``<style>``: the base template links
  ``/assets/plotly.css`` under the id Plotly looks for (class ``no-inline-styles``);
- the bundled maplibre CSS is injected unless an element with its id exists: the
  template renders such an element (a link to ``/assets/plotly-extra/<id>.css``);
- two fixed ``style`` attribute values (an empty one on colour-bar fills, and the
  image-rendering probe of heatmaps): allowed by hash only, through
  ``style-src-attr 'unsafe-hashes' 'sha256-...'``. Nothing else inline is allowed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.templating import Jinja2Templates
from starlette.responses import Response

from ..core.security import content_security_policy
from .assets import TEMPLATES, plotly_js_source

templates = Jinja2Templates(directory=TEMPLATES)

router = APIRouter(tags=["pages"])


@dataclass(frozen=True)
class View:
    path: str
    name: str  # template templates/<name>.html and module static/js/<name>.js
    title: str
    nav: str


VIEWS = (
    View("/", "explorer", "Explorer: model view and head view", "Explorer"),
    View("/heads", "heads", "Head types and rollout", "Head types"),
    View("/generate", "generate", "Generation trace", "Generation"),
    View("/seq2seq", "seq2seq", "Encoder-decoder attention", "Encoder-decoder"),
    View("/positional", "positional", "Positional encodings", "Positional"),
    View("/backends", "backends", "Attention backends", "Backends"),
    View("/training", "training", "Training curves and snapshots", "Training"),
    View("/architecture", "architecture", "Architecture and profile", "Architecture"),
    View("/interventions", "interventions", "Interventions: ablation, patching, logit lens", "Interventions"),
)
VIEWS += (View("/explain", "explain", "Explain a head: one weight, step by step, and the Q/K geometry", "Explain"),
          View("/sparse", "sparse", "Sparse attention patterns on a real input", "Sparse"))


def _plotly_source() -> Path:
    return plotly_js_source()


@dataclass(frozen=True)
class PlotlyNeeds:
    """What the plotly.js bundle would add inline, read from the bundle itself."""

    css: str  # its global rules
    extra_css: dict[str, str]  # guarded <style> blocks (maplibre) by guard id
    style_attr_hashes: tuple[str, ...]  # CSP hashes of the style attribute values it sets


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


STRING = r'''("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')'''


@lru_cache(maxsize=2)
def plotly_needs(source: Path) -> PlotlyNeeds:
    text = source.read_text(encoding="utf-8")
    rules = []
    match = re.search(r'(\w+)=\{("X,X div".*?)\};for\(\w+ in \1\)', text, re.S)
    if match is not None:
        for key, value in re.findall(STRING + ":" + STRING, match.group(2)):
            selector = re.sub(r"^,", " ,", key[1:-1]).replace("X", ".js-plotly-plot .plotly").replace(
                "Y", ".plotly-notifier")
            rules.append(f"{selector}{{{value[1:-1]}}}")
    css = "/* plotly.js global styles, linked instead of injected (strict CSP) */\n" + "\n".join(rules) + "\n"
    extra = {}
    for guard in re.finditer(r'if\(!document\.getElementById\("([0-9a-f]{16,})"\)\)\{var (\w+)=document\.'
                             r'createElement\("style"\);\2\.id="\1",\2\.textContent=' + STRING, text):
        extra[guard.group(1)] = guard.group(3)[1:-1].replace("\\'", "'")
    hashes = [_sha256("")]  # colour-bar fills: attr("style", "")
    decl = re.search(r"CSS_DECLARATIONS=(\[\[.*?\]\]);", text)
    if decl is not None:  # the heatmap's image-rendering probe: declarations joined as "k: v; "
        hashes.append(_sha256("".join(": ".join(d) + "; " for d in json.loads(decl.group(1)))))
    return PlotlyNeeds(css, extra, tuple(hashes))


def page_csp(needs: PlotlyNeeds) -> str:
    """The strict policy plus the hashes of Plotly's fixed style attribute values."""
    return content_security_policy(style_attr_hashes=needs.style_attr_hashes)


def _page(view: View):
    async def page(request: Request) -> HTMLResponse:
        needs = plotly_needs(_plotly_source())
        return templates.TemplateResponse(
            request, f"{view.name}.html",
            {"view": view, "views": VIEWS, "title": view.title, "plotly_guards": sorted(needs.extra_css),
             "settings": request.app.state.settings},
            headers={"Cache-Control": "no-cache", "Content-Security-Policy": page_csp(needs)})

    page.__name__ = f"page_{view.name}"
    page.__doc__ = f"The {view.nav} page (HTML)."
    return page


for _view in VIEWS:
    router.add_api_route(_view.path, _page(_view), methods=["GET"], response_class=HTMLResponse,
                         include_in_schema=False, name=f"page_{_view.name}")


@router.get("/static/vendor/plotly.min.js", include_in_schema=False)
async def plotly_script() -> FileResponse:
    """plotly.js from the installed plotly package (registered before the /static mount, so it wins)."""
    return FileResponse(plotly_js_source(), media_type="text/javascript", headers={"Cache-Control": "max-age=3600"})


@router.get("/assets/plotly.css", include_in_schema=False)
async def plotly_stylesheet() -> Response:
    return Response(plotly_needs(_plotly_source()).css, media_type="text/css",
                    headers={"Cache-Control": "max-age=3600"})


@router.get("/assets/plotly-extra/{guard}.css", include_in_schema=False)
async def plotly_extra_stylesheet(guard: str) -> Response:
    css = plotly_needs(_plotly_source()).extra_css.get(guard)
    if css is None:
        return Response("/* unknown */\n", status_code=404, media_type="text/css")
    return Response(css, media_type="text/css", headers={"Cache-Control": "max-age=3600"})
