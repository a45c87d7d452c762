"""How long the Explorer's model view takes to draw after the run finishes: SmolLM2's 30 x 9 grid.

Starts the real server (bench/load.py's start_server, HF_HUB_OFFLINE=1), opens the Explorer in Debian's
/usr/bin/chromium (headless, playwright) with SmolLM2 and a short text, and measures, side by side in one
page and one run:

- page: from the end of the run's answer (POST /api/runs/stream) to the grid marked drawn (every one of
  the 270 thumbnails on its canvas), as the page does it now: GET /api/runs/{id}/overviews, 8 layers a request;
- before / after: the same 270 thumbnails fetched and drawn by a script in the page, once one request per head
  (GET .../attention?pool=48, six in flight: the page before issue 12) and once one request per band of 8 layers
  (GET .../overviews, two in flight: the page now). Each is repeated --repeats times; the median is printed.

    .venv/bin/python bench/grid.py                        # SmolLM2 (bundled), 3 repeats
    .venv/bin/python bench/grid.py --model minilm --url http://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import statistics
import sys
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
log = logging.getLogger("attnlab.bench.grid")
TEXT = "The cat sat on the mat. The dog sat on the log. The cat and the dog met on the mat."

# One page-side measurement: fetch and draw every thumbnail, per head (before) or per band (after).
DRAW_ALL = """async ([runId, kind, nLayers, nHeads, mode]) => {
  const { apiBinary } = await import("/static/js/api.js");
  const { viridis } = await import("/static/js/scale.js");
  const canvas = document.createElement("canvas");
  const draw = (data, rows, cols) => {
    canvas.width = cols; canvas.height = rows;
    const ctx = canvas.getContext("2d");
    const image = ctx.createImageData(cols, rows);
    let max = 0;
    for (const v of data) if (v > max) max = v;
    for (let i = 0; i < data.length; i++) {
      const [r, g, b] = viridis(max > 0 ? Math.sqrt(data[i] / max) : 0);
      image.data.set([r, g, b, 255], i * 4);
    }
    ctx.putImageData(image, 0, 0);
  };
  const jobs = [];
  if (mode === "per-head") {
    for (let l = 0; l < nLayers; l++) for (let h = 0; h < nHeads; h++) jobs.push(async () => {
      const t = await apiBinary(`/api/runs/${runId}/attention?kind=${kind}&layer=${l}&head=${h}&pool=48&format=f16`);
      draw(t.data, t.shape[0], t.shape[1]);
    });
  } else {
    for (let first = 0; first < nLayers; first += 8) jobs.push(async () => {
      const last = Math.min(nLayers, first + 8);
      const t = await apiBinary(`/api/runs/${runId}/overviews?kind=${kind}&layers=${first}:${last}&pool=48&format=f16`);
      const [, heads, rows, cols] = t.shape;
      const cells = rows * cols;
      for (let i = 0; i < (last - first) * heads; i++) draw(t.data.subarray(i * cells, (i + 1) * cells), rows, cols);
    });
  }
  const parallel = mode === "per-head" ? 6 : 2;
  const t0 = performance.now();
  let next = 0;
  const worker = async () => { while (next < jobs.length) await jobs[next++](); };
  await Promise.all(Array.from({ length: parallel }, worker));
  return { ms: performance.now() - t0, requests: jobs.length };
}"""

# the time the grid was marked drawn, recorded by the page itself
WATCH_DRAWN = """new MutationObserver((_, obs) => {
  const grid = document.getElementById("grid");
  if (grid && grid.dataset.drawn === "1") { window.__gridDrawnAt = performance.now(); obs.disconnect(); }
}).observe(document, { subtree: true, attributes: true, attributeFilter: ["data-drawn"] });"""


def _load_bench_load():
    spec = importlib.util.spec_from_file_location("attnlab_bench_load", ROOT / "bench" / "load.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def measure(base: str, model: str, repeats: int) -> dict:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
        page = browser.new_page(viewport={"width": 1280, "height": 720})
        page.add_init_script(WATCH_DRAWN)
        page_ms = []
        for i in range(repeats):
            # a new text each time: the run is computed, not served from the cache, and the page draws a new grid
            page.goto(f"{base}/?{urlencode({'model': model, 'text': f'{TEXT} ({i})', 'backend': 'auto'})}")
            page.wait_for_selector("#grid[data-drawn='1']", timeout=300_000)
            page_ms.append(page.evaluate("""() => {
              const run = performance.getEntriesByType("resource").filter((e) => e.name.endsWith("/api/runs/stream"));
              return window.__gridDrawnAt - run[run.length - 1].responseEnd; }"""))
        info = page.evaluate("""async () => {
          const grid = document.getElementById("grid");
          const thumbs = grid.querySelectorAll(".thumb");
          const last = thumbs[thumbs.length - 1].dataset;
          return { nLayers: Number(last.layer) + 1, nHeads: Number(last.head) + 1,
                   kind: document.getElementById("kind").value,
                   drawn: grid.querySelectorAll("canvas[data-loaded='1']").length }; }""")
        run_id = page.evaluate("""() => {
          const e = performance.getEntriesByType("resource").filter((x) => x.name.includes("/overviews?"));
          return new URL(e[e.length - 1].name).pathname.split("/")[3]; }""")
        both = {"per-head": [], "per-band": []}
        for _ in range(repeats):
            for mode in both:  # alternated, so both see the same machine load
                shape = [run_id, info["kind"], info["nLayers"], info["nHeads"], mode]
                both[mode].append(page.evaluate(DRAW_ALL, shape))
        browser.close()
    before = statistics.median(r["ms"] for r in both["per-head"])
    after = statistics.median(r["ms"] for r in both["per-band"])
    return {"model": model, "grid": f"{info['nLayers']} x {info['nHeads']}", "thumbnails_drawn": info["drawn"],
            "page_draw_s": round(statistics.median(page_ms) / 1e3, 3), "page_draw_s_all": [round(v / 1e3, 3)
                                                                                          for v in page_ms],
            "before_per_head_s": round(before / 1e3, 3), "before_requests": both["per-head"][0]["requests"],
            "after_per_band_s": round(after / 1e3, 3), "after_requests": both["per-band"][0]["requests"],
            "speedup": round(before / after, 1)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="an already running server; default: start one on a free port")
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    proc = None
    base = args.url
    if base is None:
        load = _load_bench_load()
        port = load.free_port()
        proc = load.start_server(port)
        base = f"http://127.0.0.1:{port}"
    try:
        result = measure(base, args.model, args.repeats)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
    log.info(json.dumps(result, indent=1))
    log.info("the grid draws in %.2f s after the run (page); one request per head %.2f s vs per band %.2f s: "
             "%.1fx", result["page_draw_s"], result["before_per_head_s"], result["after_per_band_s"],
             result["speedup"])
    return result


if __name__ == "__main__":
    main()
