"""The README's screenshot of an inline view: attnlab.notebook's HTML as a notebook shows it, drawn offline.

Builds the view with a real model (bundled MiniLM by default), writes the figure's inline HTML (plotly.js
inlined from the installed plotly package) into a page styled like a notebook cell, opens it in Debian's
/usr/bin/chromium headless with every network request refused, and saves a PNG.

    .venv/bin/python bench/notebook_screenshot.py                       # static/screenshots/notebook.png
    .venv/bin/python bench/notebook_screenshot.py --model lm --view head --layer 2 --head 1 --out /tmp/nb.png
"""

from __future__ import annotations

import argparse
import html
import logging
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
TEXT = "The cat sat on the mat because it was warm."
log = logging.getLogger("attnlab.notebook_screenshot")
DRAWN = ("() => { const el = document.querySelector('.attnlab-figure'); "
         "return el && el.data && el.querySelector('.main-svg'); }")
CELL_CSS = ("body{font-family:sans-serif;margin:16px;background:#fff} .cell{display:flex;gap:8px} "
            ".prompt{color:#303f9f;font-family:monospace;min-width:64px} pre{margin:0;padding:6px;background:#f5f5f5;"
            "border:1px solid #e0e0e0;flex:1;font-size:13px} .out .prompt{color:#d84315}")


def page(code: str, figure_html: str) -> str:
    """A notebook-like page: the input cell's code, then the output (the figure's inline HTML)."""
    return (f"<!doctype html><meta charset='utf-8'><style>{CELL_CSS}</style>"
            f"<div class='cell'><div class='prompt'>In [3]:</div><pre>{html.escape(code)}</pre></div>"
            f"<div class='cell out'><div class='prompt'>Out[3]:</div><div>{figure_html}</div></div>")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm", help="a registry id (attnlab models)")
    parser.add_argument("--view", default="model", choices=["model", "head"])
    parser.add_argument("--layer", type=int, default=0)
    parser.add_argument("--head", type=int, default=0)
    parser.add_argument("--text", default=TEXT)
    parser.add_argument("--out", type=Path, default=ROOT / "static" / "screenshots" / "notebook.png")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from playwright.sync_api import sync_playwright

    import attnlab

    run = attnlab.load(args.model).forward(args.text)
    options = {} if args.view == "model" else {"layer": args.layer, "head": args.head}
    fig = run.show(args.view, **options)
    shown = ", ".join(f"{k}={v}" for k, v in options.items())
    code = (f'run = attnlab.load("{args.model}").forward("{args.text}")\n'
            f'run.show("{args.view}"{", " + shown if shown else ""})')
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        path = Path(tmp) / "notebook.html"
        path.write_text(page(code, fig.to_html()), encoding="utf-8")
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
        tab = browser.new_page(viewport={"width": 1400, "height": 600})
        refused: list[str] = []
        tab.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file://")
                  else (refused.append(route.request.url), route.abort()))
        tab.goto(path.as_uri())
        tab.wait_for_function(DRAWN, timeout=120_000)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(args.out), full_page=True)
        browser.close()
    if refused:
        raise SystemExit(f"the page asked the network for {refused}")
    log.info("wrote %s (%s view of %s, no network request)", args.out, args.view, args.model)


if __name__ == "__main__":
    main()
