"""README screenshots of every view, drawn with the real models (bundled + models/zoo/).

Starts the real server (bench/load.py's start_server: uvicorn on a free port, HF_HUB_OFFLINE=1),
drives Debian's /usr/bin/chromium headless with playwright, and saves a full-page PNG per view
to static/screenshots/<view>.png. The browser tests write their own screenshots elsewhere, so a
test run never overwrites these.

    .venv/bin/python bench/screenshots.py                  # every view
    .venv/bin/python bench/screenshots.py --only explorer generate
    .venv/bin/python bench/screenshots.py --url http://127.0.0.1:8000 --out /tmp/shots

Note: the explorer's pooled overview needs more than 512 tokens (512 x 512 cells are drawn
exactly); the zoo decoders accept at most 256 positions, so explorer-long uses SmolLM2.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import random
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "static" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
log = logging.getLogger("attnlab.screenshots")


def _load_bench_load():
    spec = importlib.util.spec_from_file_location("attnlab_bench_load", ROOT / "bench" / "load.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


PLOT_READY = ("(sel) => { const els = document.querySelectorAll(sel); return els.length > 0 && Array.from(els).every("
              "el => el.data && el.data.length > 0 && el.querySelector('.main-svg')); }")

AUSTEN = ("It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in "
          "want of a wife. However little known the feelings or views of such a man may be on his first entering a "
          "neighbourhood, this truth is so well fixed in the minds of the surrounding families, that he is "
          "considered as the rightful property of some one or other of their daughters. ")


class Shooter:
    def __init__(self, context, base: str, out: Path):
        self.base = base
        self.out = out
        self.page = context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))

    def goto(self, path: str, **params: object):
        self.page.goto(f"{self.base}{path}" + (f"?{urlencode(params)}" if params else ""))
        return self.page

    def wait_plot(self, selector: str, timeout: float = 180_000) -> None:
        self.page.wait_for_function(PLOT_READY, arg=selector, timeout=timeout)

    def shot(self, name: str) -> Path:
        page = self.page
        error = page.locator("#error")
        if error.count() and error.is_visible():
            raise RuntimeError(f"{name}: the page shows an error: {error.text_content()}")
        page.evaluate("() => window.scrollTo(0, 0)")
        page.wait_for_timeout(700)  # Plotly transitions, fonts
        path = self.out / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        if self.errors:
            log.warning("%s: console errors: %s", name, self.errors)
        log.info("wrote %s", path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
        return path


def load_all_thumbs(s: Shooter, timeout_s: float = 180) -> None:
    """The grid loads thumbnails as they scroll into view: scroll through it until every one is drawn."""
    page = s.page
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        done = page.evaluate("() => { const t = document.querySelectorAll('#grid .thumb'); return t.length > 0 && "
                             "Array.from(t).every(b => b.querySelector('canvas[data-loaded]')"
                             " || b.classList.contains('failed')); }")
        if done:
            break
        page.evaluate("() => { const t = Array.from(document.querySelectorAll('#grid .thumb'))"
                      ".find(b => !b.querySelector('canvas[data-loaded]') && !b.classList.contains('failed'));"
                      " if (t) t.scrollIntoView({block: 'center'}); }")
        page.wait_for_timeout(400)
    else:
        raise TimeoutError("grid thumbnails did not all load")
    failed = page.locator("#grid .thumb.failed").count()
    if failed:
        raise RuntimeError(f"{failed} thumbnails failed to load")


# ----------------------------------------------------------------------------- views


def explorer(s: Shooter) -> None:
    page = s.goto("/", model="minilm", text="The cat sat on the mat because it was tired.",
                  text_pair="It fell asleep in the sun.", colour="previous_token")
    page.wait_for_selector("#grid .thumb")
    load_all_thumbs(s)
    # open a head by clicking its grid cell, as a reader would
    page.locator("#grid .thumb[data-layer='1'][data-head='9']").click()
    page.wait_for_function("() => new URLSearchParams(location.search).get('head') === '9'")
    s.wait_plot("#heatmap")
    page.wait_for_selector(".line-view")
    s.shot("explorer")


def explorer_long(s: Shooter) -> None:
    page = s.goto("/", model="smollm2", text=AUSTEN * 8, layer=3, head=2)
    s.wait_plot("#heatmap", timeout=300_000)
    page.wait_for_function("() => document.getElementById('zoom-note').textContent.includes('pooled overview')")
    load_all_thumbs(s, timeout_s=300)
    s.shot("explorer-long")


def heads(s: Shooter) -> None:
    rng = random.Random(7)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    chunk = "".join(rng.choice(alphabet) for _ in range(24))
    s.goto("/heads", model="induction", text=chunk * 3)
    s.wait_plot("#head-types")
    s.wait_plot("#rollout")
    s.shot("heads")


def generate(s: Shooter) -> None:
    page = s.goto("/generate", model="lm", prompt="It is a truth universally acknowledged", max_new_tokens=20,
                  temperature=0, seed=0, head="avg")
    page.wait_for_function("() => document.getElementById('trace-info').textContent.includes('stopped')",
                           timeout=180_000)
    s.wait_plot("#step-attention")
    s.wait_plot("#probs")
    s.shot("generate")


def seq2seq(s: Shooter) -> None:
    s.goto("/seq2seq", model="seq2seq", text="rev:attention", layer=1, head=0)
    for sel in ("#enc", "#dec", "#cross"):
        s.wait_plot(sel)
    s.shot("seq2seq")


def positional(s: Shooter) -> None:
    page = s.goto("/positional")
    s.wait_plot("#scheme-figures .chart")
    s.wait_plot("#similarity")
    page.wait_for_function("() => document.getElementById('extrapolation-note').textContent.length > 0")
    if page.locator("#extrapolation").is_visible():
        s.wait_plot("#extrapolation")
    else:
        log.warning("positional: no extrapolation curve: %s", page.locator("#extrapolation-note").text_content())
    s.shot("positional")


def backends(s: Shooter) -> None:
    page = s.goto("/backends", form="synthetic", seq_lens="64,128,256,512,1024", backends="math,sdpa,flash",
                  n_heads=4, head_dim=64, passes="fwd", causal="true")
    s.wait_plot("#bench", timeout=300_000)
    page.wait_for_selector("#bench-table tbody tr")
    s.shot("backends")


def training(s: Shooter) -> None:
    page = s.goto("/training", model="induction", probe="repeated", layer=1, head=3, step=2000)
    s.wait_plot("#curves")
    s.wait_plot("#snapshot")
    page.wait_for_function("() => document.getElementById('step-out').textContent === 'step 2000'")
    s.shot("training")


def architecture(s: Shooter) -> None:
    page = s.goto("/architecture", model="smollm2", context=2048, tokens=32, profile="true")
    s.wait_plot("#arch-chart")
    s.wait_plot("#profile-chart", timeout=300_000)
    page.wait_for_function("() => document.getElementById('profile-note').textContent.length > 0")
    s.shot("architecture")


def interventions(s: Shooter) -> None:
    """The induction model: importance, the induction head ablated, patching a copy whose first half was replaced
    (layer 1 restores the copied token), the logit lens."""
    rng = random.Random(11)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    first = "".join(rng.choice(alphabet) for _ in range(20))
    other = "".join(rng.choice(alphabet) for _ in range(20))
    page = s.goto("/interventions", model="induction", text=first + first[:12], heads="1.3", grid="ablation",
                  clean=first + first[:12], corrupted=other + first[:12])
    s.wait_plot("#importance")
    s.wait_plot("#lens")
    s.wait_plot("#ablation")
    page.click("#patch-run")
    s.wait_plot("#patch")
    s.wait_plot("#pruning")
    s.shot("interventions")


def explain(s: Shooter) -> None:
    page = s.goto("/explain", model="minilm", text="The cat sat on the mat because it was warm.", layer=2, head=5,
                  query=3)
    for sel in ("#vectors", "#products", "#scores", "#weights", "#output", "#shares", "#qk"):
        s.wait_plot(sel)
    page.wait_for_function("() => document.getElementById('qk').data.length === 3")
    s.shot("explain")


def sparse(s: Shooter) -> None:
    page = s.goto("/sparse", model="minilm", text="The cat sat on the mat. The dog sat on the log. A cat and a dog "
                  "met on the mat by the log.", layer=2, head=5, pattern="longformer", window=6)
    for sel in ("#dense", "#allowed", "#sparse", "#kept"):
        s.wait_plot(sel)
    page.click("#measure")
    s.wait_plot("#cost", timeout=300_000)
    s.shot("sparse")


def positional_trained(s: Shooter) -> None:
    page = s.goto("/positional", trained="seq2seq")
    s.wait_plot("#trained-main")
    s.wait_plot("#trained-side")
    page.locator("#trained-panel").scroll_into_view_if_needed()
    page.wait_for_timeout(700)
    path = s.out / "positional-trained.png"
    page.locator("#trained-panel").screenshot(path=str(path))
    log.info("wrote %s", path)


VIEWS = {"explorer": explorer, "explorer-long": explorer_long, "heads": heads, "generate": generate,
         "seq2seq": seq2seq, "positional": positional, "backends": backends, "training": training,
         "architecture": architecture, "interventions": interventions}
VIEWS |= {"explain": explain, "sparse": sparse, "positional-trained": positional_trained}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="an already running server; default: start one on a free port")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--only", nargs="+", choices=list(VIEWS), help="some views only")
    parser.add_argument("--width", type=int, default=1400)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    proc = None
    if args.url:
        base = args.url.rstrip("/")
    else:
        load = _load_bench_load()
        port = load.free_port()
        proc = load.start_server(port)
        base = f"http://127.0.0.1:{port}"
    failures = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
            context = browser.new_context(viewport={"width": args.width, "height": 900})
            for name in args.only or list(VIEWS):
                shooter = Shooter(context, base, args.out)
                t0 = time.perf_counter()
                try:
                    VIEWS[name](shooter)
                    log.info("%s: %.1f s", name, time.perf_counter() - t0)
                except Exception as exc:  # one broken view should not cost the others
                    failures.append(name)
                    log.error("%s failed: %s", name, exc)
                    failed = Path(tempfile.gettempdir()) / f"attnlab-{name}.failed.png"
                    shooter.page.screenshot(path=str(failed), full_page=True)
                    log.error("%s: what the page showed: %s", name, failed)
                finally:
                    shooter.page.close()
            context.close()
            browser.close()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
    if failures:
        log.error("failed: %s", ", ".join(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
