"""HTML pages: one Jinja2 template per view, one ES module per view, one navigation bar.

Pages carry no inline script or style and no remote origin, so the app can send a strict
Content-Security-Policy (``script-src 'self'``). Plotly.js would otherwise add one
``<style>`` element at load; the base template links ``/assets/plotly.css`` under the id
Plotly looks for instead (class ``no-inline-styles``), and this module extracts those
rules from the installed plotly.min.js, so they always match its version.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from starlette.responses import Response

from .assets import VENDOR, plotly_js_source
from .routes import figures

ROOT = Path(__file__).resolve().parent.parent
templates = Jinja2Templates(directory=ROOT / "templates")

router = APIRouter(tags=["pages"])
router.include_router(figures.router)


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
)


def _page(view: View):
    async def page(request: Request) -> HTMLResponse:
        return templates.TemplateResponse(request, f"{view.name}.html",
                                          {"view": view, "views": VIEWS, "title": view.title},
                                          headers={"Cache-Control": "no-cache"})

    page.__name__ = f"page_{view.name}"
    page.__doc__ = f"The {view.nav} page (HTML)."
    return page


for _view in VIEWS:
    router.add_api_route(_view.path, _page(_view), methods=["GET"], response_class=HTMLResponse,
                         include_in_schema=False, name=f"page_{_view.name}")


@lru_cache(maxsize=2)
def plotly_css(source: Path) -> str:
    """Plotly.js's global style rules as a stylesheet (what it would inject as inline <style>)."""
    text = source.read_text(encoding="utf-8")
    match = re.search(r'(\w+)=\{("X,X div".*?)\};for\(\w+ in \1\)', text, re.S)
    if match is None:
        return "/* plotly.js style rules not found in this build */\n"
    string = r'''("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')'''
    rules = []
    for key, value in re.findall(string + ":" + string, match.group(2)):
        selector = re.sub(r"^,", " ,", key[1:-1]).replace("X", ".js-plotly-plot .plotly").replace("Y", ".plotly-notifier")
        rules.append(f"{selector}{{{value[1:-1]}}}")
    return "/* plotly.js global styles, linked instead of injected (strict CSP) */\n" + "\n".join(rules) + "\n"


@router.get("/assets/plotly.css", include_in_schema=False)
async def plotly_stylesheet() -> Response:
    vendored = VENDOR / "plotly.min.js"
    source = vendored if vendored.exists() else plotly_js_source()
    return Response(plotly_css(source), media_type="text/css", headers={"Cache-Control": "max-age=3600"})
