"""The pages in a real browser: Debian's /usr/bin/chromium driven by Python playwright.

The real app runs under uvicorn in a background thread on a free port, with preload off
and a registry of the bundled MiniLM plus a tiny zoo trained here in a few seconds (a
char-level decoder with a training log and attention snapshots, and a T5-style
encoder-decoder), so every view has a model and the file stays well under three minutes
(the bundled SmolLM2, a byte-level BPE decoder, loads only for the token-label tests)
on two cores. Every view: no console errors (the page runs under the strict CSP), the
chart has the expected traces/cells, the URL round-trips, and the XSS tokens show as text.
Views stay right under awkward input: a reply held back with page.route never draws over a
newer selection; tick labels, read back as rendered boxes, never overlap; the colour scale
and the special-token toggle survive a reload. Screenshots of every view go to a pytest temp
dir (screenshots/<view>.png), never to static/screenshots/: the README images come from real
models (bench/screenshots.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest

from attnlab.models.paths import ZOO

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]  # the checkout
XSS = ['<script>alert(1)</script>', '"><img src=x onerror=alert(1)>']
CORPUS = ("the cat sat on the mat. the dog sat on the log. <script>alert(1)</script> "
          '"><img src=x onerror=alert(1)> a cat and a dog met on the mat. ') * 40

playwright_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")


# ----------------------------------------------------------------------------- a tiny zoo


def build_tiny_zoo(root: Path) -> Path:
    """A decoder ("tinylm": log.jsonl + snapshots) and an encoder-decoder ("seq2seq"), trained briefly."""
    import torch

    from attnlab.models import build_model, preset
    from attnlab.models.tokenization import CharTokenizer
    from attnlab.models.training import Probe, TrainConfig, Trainer, lm_batches

    torch.manual_seed(0)
    tok = CharTokenizer.from_corpus(CORPUS, n_sentinels=8)
    ids = torch.tensor(tok.encode(CORPUS))
    # decoder: rope, long positions so the explorer's pooled overview has something to pool
    cfg = preset("tiny", family="decoder", vocab_size=tok.vocab_size, d_model=32, n_layers=2, n_heads=4,
                 max_positions=4096, positional="rope")
    probe = Probe.from_text("probe", "the cat sat on the mat. the cat sat", tok)
    trainer = Trainer(build_model(cfg), TrainConfig(steps=12, lr=3e-3, warmup=2, log_every=2, snapshot_every=4,
                                                    progress=False, backend="math"),
                      lm_batches(ids, 32, 8, "clm", seed=0), out_dir=root / "tinylm", tokenizer=tok, probes=[probe])
    trainer.train()
    (root / "tinylm" / "results.json").write_text('{"final_loss_note": "12 steps, a smoke-test model"}')
    cfg = preset("tiny", family="encoder-decoder", vocab_size=tok.vocab_size, d_model=32, n_layers=2, n_heads=4,
                 max_positions=256, positional="t5_relative", pad_token_id=tok.pad_id or 0)
    trainer = Trainer(build_model(cfg), TrainConfig(steps=4, lr=3e-3, warmup=1, log_every=2, progress=False,
                                                    backend="math"),
                      lm_batches(ids, 32, 4, "span", tokenizer=tok, seed=0), out_dir=root / "seq2seq", tokenizer=tok)
    trainer.train()
    return root


# ----------------------------------------------------------------------------- the server


@pytest.fixture(scope="module")
def server(tmp_path_factory, serve):
    from attnlab.core.settings import Settings
    from attnlab.main import create_app
    from attnlab.models.hf import pretrained_entries
    from attnlab.models.registry import Registry, zoo_entries

    zoo = build_tiny_zoo(tmp_path_factory.mktemp("zoo"))
    registry = Registry()
    for entry in pretrained_entries([], None):
        # bundled encoder and byte-level decoder (loaded only by the tests that use them), one unavailable
        if entry.id in ("minilm", "smollm2", "gpt2"):
            registry.register(entry)
    for entry in zoo_entries(zoo):
        registry.register(entry)
    for entry in zoo_entries(ZOO):  # shipped decoders trained at 64 tokens that run to 32,768 (issue 15)
        if entry.id in ("extrapolation-alibi", "extrapolation-sinusoidal"):
            registry.register(entry)
    settings = Settings(preload=False, zoo_dir=zoo, benchmark_budget_s=5.0, log_level="WARNING")
    with serve(create_app(settings, registry=registry)) as base:
        yield base


# the browser, the module's context, the watched pages and the screenshot folder: tests/browser/conftest.py


# ----------------------------------------------------------------------------- views


def test_explorer_grid_head_view_url_and_xss(watched):
    text = f"The cat sat. {XSS[0]} {XSS[1]}"
    page = watched.goto("/", model="minilm", text=text)
    page.wait_for_selector("#grid .thumb")
    assert page.locator("#grid .thumb").count() == 6 * 12  # MiniLM: 6 layers x 12 heads
    page.wait_for_function("() => document.querySelectorAll('#grid canvas[data-loaded]').length >= 12", timeout=30_000)
    page.locator("#grid .thumb[data-layer='2'][data-head='5']").click()
    watched.wait_plot("#heatmap")
    assert watched.traces("#heatmap") == 1
    n = page.evaluate("() => document.getElementById('heatmap').data[0].z.length")
    assert n > 10  # every token of the input, exactly
    state = watched.state()
    assert (state["model"], state["layer"], state["head"], state["text"]) == ("minilm", "2", "5", text)
    # arrow keys move between heads and into the URL
    page.locator("#grid .thumb.selected").focus()
    page.keyboard.press("ArrowRight")
    page.wait_for_function("() => new URLSearchParams(location.search).get('head') === '6'")
    page.keyboard.press("ArrowDown")
    page.wait_for_function("() => new URLSearchParams(location.search).get('layer') === '3'")
    # tokens are text: the line view holds them as text nodes, Plotly labels escaped
    tokens = page.eval_on_selector_all(".line-view text", "els => els.map(e => e.textContent)")
    assert "<" in tokens and "script" in tokens
    ticks = page.eval_on_selector_all("#heatmap .xtick text", "els => els.map(e => e.textContent)")
    assert "<" in ticks
    # export of the data shown: an NPY file numpy reads, with the head view's shape
    import io

    import numpy as np

    with page.expect_download() as download:
        page.click("#export-head-npy")
    weights = np.load(io.BytesIO(Path(download.value.path()).read_bytes()))
    assert weights.shape == (n, n) and np.allclose(weights.sum(-1), 1, atol=1e-2)
    # PNG/SVG export is Plotly's own: the modebar carries both buttons
    page.hover("#heatmap")
    titles = page.eval_on_selector_all("#heatmap .modebar-btn", "els => els.map(e => e.dataset.title)")
    assert {"Download plot as a PNG", "Download as SVG"} <= set(titles)
    assert not any("Share" in t for t in titles)  # no "send to cloud": no remote origin
    # colour the grid by a head-type score
    page.select_option("#colour-by", "previous_token")
    page.wait_for_function("() => document.querySelectorAll('#grid .thumb.tinted').length === 72")
    watched.shot("explorer")
    # reload from the URL: the same head view comes back
    url = page.url
    page.goto(url)
    watched.wait_plot("#heatmap")
    assert page.locator("#head-title").text_content().endswith("layer 3, head 6")
    watched.check_clean()


def test_explorer_long_input_overview_then_exact_tile(watched):
    text = "the cat sat on the mat. " * 100  # 2,400 characters = 2,400 tokens of the char model
    page = watched.goto("/", model="tinylm", text=text, layer=1, head=2)
    watched.wait_plot("#heatmap")
    assert "pooled overview" in page.locator("#zoom-note").text_content()
    z = page.evaluate("() => document.getElementById('heatmap').data[0].z")
    assert len(z) < 2400  # pooled, not T x T
    # a pooled cell's hover names the block of positions it covers
    factor = page.evaluate("() => document.getElementById('heatmap').data[0].dx")
    cell = page.evaluate("() => document.getElementById('heatmap').data[0].customdata[1][2].slice(0, 2)")
    assert factor > 1 and cell == [f"query {factor}\u2013{2 * factor - 1}", f"key {2 * factor}\u2013{3 * factor - 1}"]
    # box-zoom: relayout to a small range fetches the exact block (float16 decoded in JS)
    page.evaluate("() => Plotly.relayout('heatmap', {'xaxis.range': [100, 160], 'yaxis.range': [220, 160]})")
    page.wait_for_function("() => document.getElementById('zoom-note').textContent.startsWith('exact block')",
                           timeout=30_000)
    trace = page.evaluate("() => { const t = document.getElementById('heatmap').data[0];"
                          " return {rows: t.z.length, cols: t.z[0].length, x0: t.x0, y0: t.y0, dx: t.dx}; }")
    assert trace["dx"] == 1 and trace["rows"] <= 70 and trace["cols"] <= 70
    assert 90 <= trace["x0"] <= 110 and 150 <= trace["y0"] <= 170
    # the view shows the box drawn, widened to the whole cells fetched
    shown = page.evaluate("() => { const l = document.getElementById('heatmap')._fullLayout;"
                          " return [l.xaxis.range, l.yaxis.range]; }")
    assert shown == [[99.5, 160.5], [220.5, 159.5]]
    # causal decoder: no weight above the diagonal
    upper = page.evaluate("() => { const t = document.getElementById('heatmap').data[0]; let m = 0;"
                          " t.z.forEach((row, i) => row.forEach((w, j) => {"
                          " if (t.x0 + j > t.y0 + i) m = Math.max(m, w); }));"
                          " return m; }")
    assert upper == 0
    watched.shot("explorer-long")
    # back to the whole map: the modebar's "Reset axes", and a double-click, after each zoom
    for back in ("() => document.querySelector('#heatmap [data-title=\"Reset axes\"]').click()",
                 "() => { const el = document.querySelector('#heatmap .nsewdrag');"
                 " const r = el.getBoundingClientRect(); const at = {clientX: r.x + r.width / 2,"
                 " clientY: r.y + r.height / 2, bubbles: true};"
                 " for (const t of ['mousedown', 'mouseup', 'mousedown', 'mouseup']) el.dispatchEvent("
                 "new MouseEvent(t, at)); }"):
        page.evaluate("() => Plotly.relayout('heatmap', {'xaxis.range': [100, 160], 'yaxis.range': [220, 160]})")
        page.wait_for_function("() => document.getElementById('zoom-note').textContent.startsWith('exact block')",
                               timeout=30_000)
        page.evaluate(back)
        page.wait_for_function("() => document.getElementById('zoom-note').textContent.startsWith('pooled')",
                               timeout=30_000)
        assert page.evaluate("() => document.getElementById('heatmap').data[0].x0") < factor
    watched.check_clean()


@pytest.mark.slow
def test_explorer_shows_a_32k_run_pooled_then_exact(watched):
    """32,768 tokens on the ALiBi decoder trained at 64: the grid and the head view draw pooled overviews,
    and a box-zoom fetches an exact block, causal (issue 15)."""
    page = watched.goto("/", model="extrapolation-alibi", layer=1, head=0, backend="flash")
    page.wait_for_function("() => document.querySelectorAll('#model option').length > 0", timeout=60_000)
    text = ("It is a truth universally acknowledged, that a single man in possession of a good fortune, must be "
            "in want of a wife. ") * 300
    page.fill("#text", text[:32768])
    page.click("#run")  # a new run closes the head view: the grid draws, then a click opens a head
    page.wait_for_function("() => parseInt(document.getElementById('run-info').textContent) === 32768",
                           timeout=300_000)
    page.wait_for_selector("#grid[data-drawn='1']", timeout=300_000)
    page.click("#grid .thumb[data-layer='1'][data-head='0']")
    watched.wait_plot("#heatmap", timeout=120_000)
    page.wait_for_function("() => document.getElementById('zoom-note').textContent.includes('pooled overview')",
                           timeout=120_000)
    z = page.evaluate("() => document.getElementById('heatmap').data[0].z")
    assert 0 < len(z) <= 512
    assert "32768 tokens" in page.locator("#run-info").text_content().replace(",", "")
    page.evaluate("() => Plotly.relayout('heatmap', {'xaxis.range': [30000, 30060], 'yaxis.range': [30100, 30040]})")
    page.wait_for_function("() => document.getElementById('zoom-note').textContent.startsWith('exact block')",
                           timeout=120_000)
    trace = page.evaluate("() => { const t = document.getElementById('heatmap').data[0];"
                          " return {rows: t.z.length, cols: t.z[0].length, x0: t.x0, y0: t.y0, dx: t.dx,"
                          " upper: Math.max(...t.z.flatMap((row, i) =>"
                          "   row.filter((w, j) => t.x0 + j > t.y0 + i)), 0)}; }")
    assert trace["dx"] == 1 and trace["rows"] <= 70 and 29990 <= trace["x0"] <= 30010
    assert trace["upper"] == 0  # causal: nothing above the diagonal, 30,000 tokens in
    watched.shot("explorer-32k")
    watched.check_clean()


def test_heads_view_grids_rollout_and_click(watched):
    page = watched.goto("/heads", model="minilm", text=f"Alice met Bob. Alice met Bob. {XSS[0]}")
    watched.wait_plot("#head-types")
    watched.wait_plot("#rollout")
    n_detectors = watched.traces("#head-types")
    assert n_detectors >= 5
    z = page.evaluate("() => document.getElementById('head-types').data[0].z")
    assert (len(z), len(z[0])) == (6, 12)
    assert watched.state()["text"].endswith(XSS[0])
    watched.shot("heads")
    watched.check_clean()
    # a click on a head opens it in the explorer's head view
    page.evaluate("""() => { const gd = document.getElementById('head-types');
        gd.emit('plotly_click', {points: [{x: 'H4', y: 'L1', pointIndex: [1, 4], curveNumber: 0}]}); }""")
    page.wait_for_url("**/?*layer=1*")
    watched.wait_plot("#heatmap")
    assert page.locator("#head-title").text_content().endswith("layer 1, head 4")
    watched.check_clean()


def test_generation_trace_streams_and_round_trips(watched):
    page = watched.goto("/generate", model="tinylm", prompt=f"the cat {XSS[1]}", max_new_tokens=6, seed=3)
    watched.wait_plot("#step-attention")
    page.wait_for_function("() => document.getElementById('trace-info').textContent.includes('stopped')",
                           timeout=60_000)
    assert page.locator("#step").get_attribute("max") == "5"
    # the backend select offers `auto` first and the trace says what the server ran (a short prompt: math)
    assert page.locator("#backend").input_value() == "auto"
    assert page.locator("#trace-info").text_content().endswith("ms/token on math")
    z = page.evaluate("() => document.getElementById('step-attention').data[0].z")
    assert len(z) == 2  # layers x context
    assert watched.traces("#probs") == 1
    page.fill("#step", "2")
    page.dispatch_event("#step", "input")
    page.wait_for_function("() => new URLSearchParams(location.search).get('step') === '2'")
    page.select_option("#head", "1")
    page.wait_for_function("() => new URLSearchParams(location.search).get('head') === '1'")
    generated = page.locator("#generated").text_content()
    assert generated.startswith(f"the cat {XSS[1]}")
    watched.shot("generate")
    page.goto(page.url)
    page.wait_for_function("() => document.getElementById('trace-info').textContent.includes('stopped')",
                           timeout=60_000)
    assert page.locator("#step-out").text_content() == "2" and page.locator("#head").input_value() == "1"
    assert page.locator("#generated").text_content() == generated  # deterministic for the seed
    watched.check_clean()


def _smollm2_or_skip(page) -> None:
    """SmolLM2 is a bundled package: skip where it is not installed (listed unavailable)."""
    models = page.evaluate("() => fetch('/api/models').then(r => r.json())")
    info = next((m for m in models if m["id"] == "smollm2"), None)
    if info is None or not info["available"]:
        pytest.skip(f"smollm2 unavailable: {info and info['reason']}")


def _post(page, path: str, body: dict) -> dict:
    return page.evaluate("([path, body]) => fetch(path, {method: 'POST', headers: {'Content-Type': 'application/json'},"
                         " body: JSON.stringify(body)}).then(r => r.json())", [path, body])


@pytest.mark.parametrize("prompt, n", [
    ("The Japanese word for cat is 猫. The Japanese word for dog is", 4),  # a character in three tokens
    ("My favourite emoji is", 8),  # the last step stops inside an emoji
])
def test_generation_shows_real_characters_and_token_labels(watched, prompt, n):
    page = watched.goto("/generate")
    _smollm2_or_skip(page)
    page = watched.goto("/generate", model="smollm2", prompt=prompt, max_new_tokens=n, temperature=0)
    page.wait_for_function("() => document.getElementById('trace-info').textContent.includes('stopped')",
                           timeout=120_000)
    summary = _post(page, "/api/generate", {"model": "smollm2", "prompt": prompt, "max_new_tokens": n,
                                            "temperature": 0})["summary"]
    shown = page.locator("#generated").text_content()
    released = summary["text"].removesuffix(summary["tail_text"])
    tail = page.locator("#generated .gen.tail").all_text_contents()
    assert shown == released + "".join(tail)  # the decoded text, exactly, an unfinished character as its bytes
    assert "\ufffd" not in shown and (not summary["tail_text"] or tail[0].startswith("⟨"))
    chips = page.locator("#chips .chip").all_text_contents()
    assert chips == summary["tokens"] and not any("\ufffd" in c for c in chips)
    assert any(c[-1] in "₁₂₃₄" for c in chips)  # fragments of one character, numbered
    # the probability bars: one row per rank, the chosen bar matched by id
    bars = page.evaluate("() => { const t = document.getElementById('probs').data[0];"
                         " return {y: t.y, colors: t.marker.color, ids: t.customdata.map(c => c[1])}; }")
    chosen = [i for i, c in zip(bars["ids"], bars["colors"]) if c == "#E69F00"]
    assert bars["y"] == list(range(len(bars["y"]))) and chosen == [summary["token_ids"][-1]]
    watched.shot(f"generate-smollm2-{n}")
    watched.check_clean()


def test_whitespace_tokens_are_visible_with_raw_text_on_hover(watched):
    page = watched.goto("/")
    _smollm2_or_skip(page)
    text = "x = 1\n\tif x:\n    return\u00a0x"  # a textarea turns \r\n into \n: \r is tested in the API
    page = watched.goto("/", model="smollm2", text=text, layer=0, head=0)
    watched.wait_plot("#heatmap", timeout=120_000)
    page.wait_for_selector(".line-view text")
    run = _post(page, "/api/runs", {"model": "smollm2", "text": text})
    left = page.eval_on_selector_all(".line-view text[data-side='q']", "els => els.map(e => e.textContent)")
    assert left == run["tokens"]
    assert {"·=", "⇥", "↵···", "·return", "⍽"} <= set(left)
    hover = page.eval_on_selector_all(".line-view text[data-side='q']",
                                      "els => els.map(e => e.parentNode.querySelector('title').textContent)")
    nbsp = left.index("⍽")
    assert hover[nbsp] == f'{nbsp}: ⍽ "\\u00a0"' and hover[left.index("⇥")].endswith('"\\t"')
    ticks = page.eval_on_selector_all("#heatmap .ytick text", "els => els.map(e => e.textContent)")
    assert "⍽" in ticks and "↵···" in ticks
    cell = page.evaluate(f"() => document.getElementById('heatmap').data[0].customdata[{nbsp}][0].slice(0, 2)"
                         ".join(' \u2192 ')")
    assert cell.startswith(f"query {nbsp} “⍽” (\"\\u00a0\") → key 0 “x”")
    watched.shot("explorer-whitespace")
    watched.check_clean()


def _evict_first(page, pattern: str, refused: list[str], wanted=lambda url: True) -> None:
    """The first request to `pattern` (that `wanted` picks) answers as the server does for a run it
    no longer holds (evicted from the run cache, or asked of another worker); the rest pass."""
    def route(r):
        if not refused and wanted(r.request.url):
            refused.append(r.request.url)
            r.fulfill(status=404, content_type="application/json",
                      body=json.dumps({"detail": "run_id: run is not cached on this server (evicted, or computed "
                                                 "by another worker); POST /api/runs again"}))
        else:
            r.continue_()

    page.route(pattern, route)


def _check_clean_but_404s(watched, n: int) -> None:
    """Clean, but for the browser's own console line for each of the n refused requests."""
    refused = [e for e in watched.errors if "status of 404" in e]
    assert len(refused) == n, watched.errors
    watched.errors[:] = [e for e in watched.errors if e not in refused]
    watched.check_clean()


def _run_posts(page) -> list[str]:
    posts: list[str] = []
    page.on("request", lambda r: r.method == "POST" and urlparse(r.url).path in ("/api/runs", "/api/runs/stream")
            and posts.append(r.url))
    return posts


def test_heads_view_recreates_an_evicted_run(watched):
    """Head types asks for the run's scores and rollout through runs.js: each 404 recreates the run
    (POST /api/runs again, same request) and the page still draws both, with no error shown."""
    page = watched.page
    posts = _run_posts(page)
    heads_refused: list[str] = []
    rollout_refused: list[str] = []
    _evict_first(page, "**/api/figures/heads/*", heads_refused)
    _evict_first(page, "**/api/runs/*/rollout*", rollout_refused)
    watched.goto("/heads", model="minilm", text="Alice met Bob. Alice met Bob again.")
    watched.wait_plot("#head-types")
    watched.wait_plot("#rollout")
    assert heads_refused and rollout_refused
    assert len(posts) == 3  # the run, then once per 404
    z = page.evaluate("() => document.getElementById('head-types').data[0].z")
    assert (len(z), len(z[0])) == (6, 12)
    _check_clean_but_404s(watched, 2)


def test_explorer_recreates_an_evicted_run(watched):
    """The head view's tile answers 404 once: the run is recreated and the head is drawn."""
    page = watched.page
    posts = _run_posts(page)
    refused: list[str] = []
    _evict_first(page, "**/api/runs/*/attention?*", refused, lambda url: "pool=" not in url)
    watched.goto("/", model="minilm", text="The cat sat on the mat.", layer=1, head=3)
    watched.wait_plot("#heatmap")
    assert refused and len(posts) == 2
    assert page.locator("#head-title").text_content().endswith("layer 1, head 3")
    page.wait_for_function("() => document.querySelectorAll('#grid canvas[data-loaded]').length >= 12", timeout=30_000)
    _check_clean_but_404s(watched, 1)


def test_seq2seq_three_maps(watched):
    page = watched.goto("/seq2seq", model="seq2seq", text="the cat sat", layer=1, head=2)
    for sel in ("#enc", "#dec", "#cross"):
        watched.wait_plot(sel)
    enc = page.evaluate("() => document.getElementById('enc').data[0].z")
    cross = page.evaluate("() => document.getElementById('cross').data[0].z")
    assert len(enc) == len("the cat sat") and len(cross[0]) == len(enc)
    page.keyboard.press("ArrowRight")
    page.wait_for_function("() => new URLSearchParams(location.search).get('head') === '3'")
    watched.shot("seq2seq")
    watched.check_clean()


def test_positional_runs_a_text_eight_times_the_training_length(watched):
    """Issue 15: the extrapolation section runs 512 characters (8x the 64 trained on) on each extrapolation
    decoder served here and draws its loss by position from GET /api/runs/{id}/loss, with a link to the run."""
    page = watched.goto("/positional")
    watched.wait_plot("#long-loss", timeout=120_000)
    trace = page.evaluate("() => { const t = document.getElementById('long-loss').data[0];"
                          " return {name: t.name, x: t.x, y: t.y}; }")
    assert trace["name"] == "alibi" and trace["x"][0] == 8 and trace["x"][-1] > 480  # past the trained 64
    assert all(0 < y < 10 for y in trace["y"])  # nats per character, finite
    href = page.locator("#long-links a").first.get_attribute("href")
    params = parse_qs(urlparse(href).query)
    assert params["model"] == ["extrapolation-alibi"] and len(params["text"][0]) == 512
    # ALiBi and sinusoidal side by side on the same head: two 128 x 128 max-pooled maps of the whole 512 x 512
    # map, each equal to the run's exact tile pooled here; ALiBi looks back a few positions past the trained 64,
    # sinusoidal far more
    for sel in ("#pair-a", "#pair-b", "#pair-distance"):
        watched.wait_plot(sel, timeout=60_000)
    titles = [page.evaluate(f"() => document.getElementById('{el}').layout.title.text") for el in ("pair-a", "pair-b")]
    assert titles == ["alibi: layer 1, head 0", "sinusoidal: layer 1, head 0"]
    z = np.asarray(page.evaluate(  # the weights (z holds their log colours)
        "() => document.getElementById('pair-a').data[0].customdata.map(r => r.map(c => c[2]))"))
    assert z.shape == (128, 128)
    run_id = page.evaluate("""async (text) => (await (await fetch('/api/runs', {method: 'POST',
        headers: {'Content-Type': 'application/json'}, body: JSON.stringify({model: 'extrapolation-alibi', text,
        backend: 'flash'})})).json()).run_id""", params["text"][0])
    exact = np.asarray(page.evaluate(f"async () => (await (await fetch('/api/runs/{run_id}/attention?layer=1&head=0'))"
                                     ".json()).attention"))
    np.testing.assert_allclose(z, exact.reshape(128, 4, 128, 4).max(axis=(1, 3)), atol=1e-3)  # float16 wire
    lines = page.evaluate("() => document.getElementById('pair-distance').data.map(t => ({name: t.name, y: t.y}))")
    back = {t["name"]: np.asarray(t["y"]) for t in lines}
    assert back["alibi"][8:].max() < 10 < back["sinusoidal"][8:].mean()  # queries past position 128
    page.locator("#pair").scroll_into_view_if_needed()
    watched.shot("positional-pair")
    # the page's words about the loss chart hold on it: ALiBi flat past the trained 64, sinusoidal far above
    loss = {t["name"]: np.asarray(t["y"]) for t in page.evaluate(
        "() => document.getElementById('long-loss').data.map(t => ({name: t.name, y: t.y}))")}
    assert abs(loss["alibi"][8:].mean() - loss["alibi"][:4].mean()) < 0.5 < loss["sinusoidal"][8:].mean() - \
        loss["alibi"][8:].mean()
    # another head redraws both maps with it, and the URL keeps the choice: a reload comes back to it
    page.select_option("#pair-head", "2")
    page.wait_for_function("() => document.getElementById('pair-b').layout.title.text.endsWith('head 2')")
    assert page.locator("#pair-links a").first.get_attribute("href").endswith("layer=1&head=2")
    assert watched.state()["pair_head"] == "2"
    page.reload()
    page.wait_for_function("() => (document.getElementById('pair-b').layout || {title: {text: ''}}).title.text"
                           ".endsWith('head 2')", timeout=60_000)
    assert page.locator("#pair-head").input_value() == "2"
    watched.check_clean()


def test_positional_figures(watched):
    page = watched.goto("/positional", scheme="alibi", n_heads=8)
    watched.wait_plot("#scheme-figures .chart")
    watched.wait_plot("#similarity")
    assert watched.traces("#scheme-figures .chart") == 8  # one bias line per head
    assert watched.traces("#similarity") == 6  # every scheme
    page.select_option("#scheme", "rope")
    page.wait_for_function("() => new URLSearchParams(location.search).get('scheme') === 'rope'")
    watched.wait_plot("#scheme-figures .chart[data-figure='rotations']")
    assert "extrapolation" in page.locator("#extrapolation-note").text_content()
    watched.shot("positional")
    # large fonts for a projector: the page and the charts grow, and it survives a reload
    page.click("#large-font")
    page.wait_for_function("() => document.getElementById('similarity')._fullLayout.font.size === 20")
    page.reload()
    watched.wait_plot("#similarity")
    assert page.evaluate("() => document.body.classList.contains('large')")
    page.click("#large-font")
    watched.check_clean()


def test_backends_sweep(watched):
    page = watched.goto("/backends", form="synthetic", seq_lens="32,64", backends="math,sdpa,flash",
                        n_heads=2, head_dim=16)
    page.wait_for_selector("#bench-source:has-text('Last measured')")  # the page opens on results; Run measures
    page.click("#run")
    page.wait_for_selector("#bench-source:has-text('Measured now')", timeout=90_000)
    watched.wait_plot("#bench", timeout=90_000)
    assert watched.traces("#bench") == 6  # time and memory, one line per backend
    rows = page.locator("#bench-table tbody tr").count()
    assert rows == 6
    gflops = page.locator("#bench-table tbody tr").first.locator("td").nth(3).inner_text()
    assert float(gflops) > 0  # the GFLOP/s column (FlashAttention's count)
    # which backends run on this machine (GET /api/backends): here, CPU; triton and SDPA's forced kernels not offered
    here = page.locator("#here-table tbody")
    assert here.locator("tr").count() == 8
    assert "Models run on cpu in float32" in page.locator("#here-device").inner_text()
    assert "no: offered on CUDA only" in here.locator("tr", has_text="sdpa_cudnn").inner_text()
    watched.shot("backends")
    watched.check_clean()


def test_training_curves_and_snapshots(watched):
    page = watched.goto("/training", model="tinylm", layer=1, head=2)
    watched.wait_plot("#curves")
    watched.wait_plot("#snapshot")
    assert watched.traces("#curves") >= 2  # loss and learning rate
    steps = int(page.locator("#step").get_attribute("max")) + 1
    assert steps == 4  # snapshots at steps 0, 4, 8, 12
    page.fill("#step", "1")
    page.dispatch_event("#step", "input")
    page.wait_for_function("() => new URLSearchParams(location.search).get('step') === '4'")
    assert watched.state()["layer"] == "1" and watched.state()["head"] == "2"
    watched.shot("training")
    watched.check_clean()


def test_architecture_and_profile(watched):
    page = watched.goto("/architecture", model="minilm", profile=1)
    watched.wait_plot("#arch-chart")
    watched.wait_plot("#profile-chart", timeout=90_000)
    assert watched.traces("#arch-chart") == 2
    facts = page.locator("#arch-facts").text_content()
    assert "post-norm" in facts and "embeddings" in facts
    assert watched.traces("#profile-chart") == 2  # forward and backward bars
    watched.shot("architecture")
    watched.check_clean()


def test_unavailable_model_is_disabled_with_reason(watched):
    page = watched.goto("/")
    page.wait_for_selector("#model option", state="attached")
    option = page.locator("#model option[value='gpt2']")
    assert option.is_disabled()
    assert "unavailable" in option.text_content()


def test_api_error_is_shown_in_words(watched):
    page = watched.goto("/seq2seq")
    page.wait_for_selector("#model option", state="attached")
    page.fill("#text", "rev:" + "abc" * 400)  # more tokens than the checkpoint has positions: a 413
    page.click("#run")
    page.wait_for_selector("#error:not([hidden])")
    error = page.locator("#error").text_content()
    assert error.startswith("text:") and "max_positions" in error, error


def test_api_docs_work_offline(watched):
    """/docs is Swagger UI from our own files under the CSP: every operation listed, no errors."""
    requests: list[str] = []
    watched.page.on("request", lambda r: requests.append(r.url))
    page = watched.goto("/docs")
    page.wait_for_selector(".opblock-summary-path", timeout=60_000)
    paths = page.locator(".opblock-summary-path").all_text_contents()
    assert any("/api/attention" in p for p in paths) and any("/api/runs/{run_id}/attention" in p for p in paths)
    assert all(url.startswith(watched.base) for url in requests), \
        [u for u in requests if not u.startswith(watched.base)]
    assert not watched.errors, watched.errors


# ----------------------------------------------------------------------------- stale replies, axes, colour scales

SENTENCE = ("The quick brown fox jumps over the lazy dog while the cat sat on the mat near the old red barn door, "
            "and then the dog slept in the warm sun all afternoon.")


def _hold_tiles(page, wanted):
    """Hold every tile request for which wanted(query) is true (the others pass); returns the held routes."""
    held = []

    def route(r):
        query = {k: v[0] for k, v in parse_qs(urlparse(r.request.url).query).items()}
        if wanted(query):
            held.append(r)
        else:
            r.continue_()

    page.route("**/api/runs/*/attention?*", route)
    return held


def _wait_held(page, held):
    for _ in range(600):  # the route handler runs on playwright's side: let it see the request
        if held:
            return
        page.wait_for_timeout(25)
    raise AssertionError("the held request never came")


def test_latest_refuses_a_reply_that_arrives_after_a_newer_selection(watched):
    """The shared helper (static/js/latest.js), with a task that ignores its abort signal: the reply
    of the earlier selection, arriving last, is refused; the newer one is kept."""
    page = watched.goto("/positional")
    outcome = page.evaluate("""async () => {
        const { Latest } = await import('/static/js/latest.js');
        const latest = new Latest();
        let release;
        const first = latest.run(() => new Promise((resolve) => { release = resolve; }));
        const second = latest.run(async () => 'head 2');
        const kept = await second;
        release('head 1');  // the late reply
        const late = await first.then((v) => ['kept', v], (e) => ['refused', e.name]);
        return { kept, late };
    }""")
    assert outcome == {"kept": "head 2", "late": ["refused", "AbortError"]}


def test_explorer_draws_and_exports_only_the_latest_head(watched):
    import numpy as np

    text = "The cat sat on the mat. The dog sat on the log."
    page = watched.goto("/", model="minilm", text=text)
    page.wait_for_selector("#grid .thumb")
    failed = []
    page.on("requestfailed", lambda r: failed.append(r.url))
    # the head view's tile of layer 0, head 1 (not its thumbnail, which is pooled) is held
    held = _hold_tiles(page, lambda q: q.get("head") == "1" and q.get("layer") == "0" and "pool" not in q)
    page.locator("#grid .thumb[data-layer='0'][data-head='1']").click()
    _wait_held(page, held)
    page.locator("#grid .thumb[data-layer='0'][data-head='2']").click()
    page.wait_for_function("() => { const gd = document.getElementById('heatmap');"
                           " return gd.layout && String(gd.layout.uirevision).endsWith('/0/2'); }")
    for r in held:  # release the late reply: the page had already given it up
        try:
            r.continue_()
        except playwright_api.Error:
            pass
    assert any("head=1" in u and "pool" not in u for u in failed), failed  # aborted, not drawn
    watched.wait_plot("#heatmap")
    state = watched.state()
    assert (state["layer"], state["head"]) == ("0", "2")
    assert page.locator("#head-title").text_content().endswith("layer 0, head 2")
    assert page.locator("#grid .thumb.selected").get_attribute("data-head") == "2"
    run_id = page.evaluate("() => String(document.getElementById('heatmap').layout.uirevision).split('/')[0]")
    want = page.evaluate("(id) => fetch(`/api/runs/${id}/attention?layer=0&head=2`).then(r => r.json())", run_id)
    shown = np.array(page.evaluate("() => document.getElementById('heatmap').data[0].customdata"
                                   ".map(row => row.map(c => c[2]))"))
    assert np.allclose(shown, want["attention"], atol=1e-3)
    with page.expect_download() as download:
        page.click("#export-head-json")
    exported = json.loads(Path(download.value.path()).read_text())
    assert (exported["layer"], exported["head"], exported["kind"]) == (0, 2, want["kind"])
    assert exported["rowTokens"] == want["row_tokens"] and exported["colTokens"] == want["col_tokens"]
    assert np.allclose(exported["z"], want["attention"], atol=1e-3)
    # the grid's own tiles were never held back or dropped: every thumbnail draws
    page.wait_for_function("() => document.querySelectorAll('#grid canvas[data-loaded]').length === 72", timeout=60_000)
    watched.check_clean()


def test_training_snapshots_show_only_the_latest_head(watched):
    page = watched.goto("/training", model="tinylm", layer=0, head=0)
    watched.wait_plot("#snapshot")
    held = []

    def route(r):
        if "head=1" in r.request.url:
            held.append(r)
        else:
            r.continue_()

    page.route("**/api/training/*/snapshots?*", route)
    page.select_option("#head", "1")
    _wait_held(page, held)
    page.select_option("#head", "2")
    page.wait_for_function("() => document.getElementById('snapshot').layout.title.text.includes('head 2')")
    for r in held:
        try:
            r.continue_()
        except playwright_api.Error:
            pass
    assert watched.state()["head"] == "2"
    assert "head 2 " in page.evaluate("() => document.getElementById('snapshot').layout.title.text")
    watched.check_clean()


def _tick_boxes(page, selector: str, axis: str) -> list[dict]:
    return page.eval_on_selector_all(f"{selector} .{axis}tick text", """els => els
        .filter(e => e.textContent && e.getBoundingClientRect().width > 0)
        .map(e => { const b = e.getBoundingClientRect();
                    return {text: e.textContent, l: b.left, r: b.right, t: b.top, b: b.bottom}; })""")


def _assert_apart(boxes: list[dict], what: str) -> None:
    for a, b in zip(boxes, boxes[1:]):
        apart = a["r"] <= b["l"] + 0.5 or b["r"] <= a["l"] + 0.5 or a["b"] <= b["t"] + 0.5 or b["b"] <= a["t"] + 0.5
        assert apart, f"{what}: tick labels {a['text']!r} and {b['text']!r} overlap: {a} {b}"


def _hover_text(page, selector: str, row: int, col: int) -> str:
    """Move the mouse onto cell (row, col) of the chart's heatmap; the hover label's text."""
    page.locator(selector).scroll_into_view_if_needed()
    page.mouse.move(0, 0)  # off the chart first: the label of an earlier cell goes
    page.wait_for_selector(f"{selector} .hoverlayer .hovertext", state="detached")
    x, y = page.evaluate("""([sel, row, col]) => { const gd = document.querySelector(sel);
        const L = gd._fullLayout, t = gd.data[0], box = gd.querySelector('.nsewdrag').getBoundingClientRect();
        return [box.left + L.xaxis.l2p(t.x0 + col * t.dx), box.top + L.yaxis.l2p(t.y0 + row * t.dy)]; }""",
                         [selector, row, col])
    page.mouse.move(x, y)
    page.wait_for_selector(f"{selector} .hoverlayer .hovertext")
    return page.eval_on_selector(f"{selector} .hoverlayer .hovertext", "e => e.textContent")


def test_large_font_tick_labels_never_overlap_and_hover_names_each_cell(watched):
    page = watched.goto("/")
    if not page.evaluate("() => document.body.classList.contains('large')"):
        page.click("#large-font")  # kept in localStorage: on for the pages below
    try:
        page = watched.goto("/", model="minilm", text=SENTENCE, layer=0, head=0)
        watched.wait_plot("#heatmap")
        page.wait_for_selector("#heatmap[data-ticks='fitted']")
        tokens = _post(page, "/api/runs", {"model": "minilm", "text": SENTENCE})["tokens"]
        assert len(tokens) >= 30
        assert page.evaluate("() => document.getElementById('heatmap')._fullLayout.font.size") == 20
        for axis in ("x", "y"):
            boxes = _tick_boxes(page, "#heatmap", axis)
            assert 2 < len(boxes) < len(tokens)  # thinned to what fits at this font size
            _assert_apart(sorted(boxes, key=lambda b: (b["l"], b["t"])), f"{axis} axis")
        # hover names position and token of each cell (customdata, not the tick text)
        a = _hover_text(page, "#heatmap", 6, 3)
        b = _hover_text(page, "#heatmap", 6, 4)
        assert a != b
        assert a.startswith(f"query 6 \u201c{tokens[6]}\u201d") and f"\u2192 key 3 \u201c{tokens[3]}\u201d" in a
        assert f"key 4 \u201c{tokens[4]}\u201d" in b
        lines = page.eval_on_selector_all(".line-view text[data-side='q']", """els => els.map(e => {
            const b = e.getBoundingClientRect();
            return {text: e.textContent, l: b.left, r: b.right, t: b.top, b: b.bottom}; })""")
        assert len(lines) == len(tokens)
        _assert_apart(lines, "line view")  # every token, one row each at the large font
        watched.shot("explorer-large-font")
        cells = page.evaluate("() => document.getElementById('heatmap').data[0].customdata[6].map(c => c[1])")
        assert len(set(cells)) == len(tokens)  # every key named, shown tick or not
        # the same heatmap back at the normal font: refitted, still apart, more labels
        page.click("#large-font")
        page.wait_for_function("() => document.getElementById('heatmap')._fullLayout.font.size === 13")
        page.wait_for_selector("#heatmap[data-ticks='fitted']")
        small = _tick_boxes(page, "#heatmap", "y")
        _assert_apart(small, "y axis, normal font")
        assert len(small) > len(boxes)
        page.click("#large-font")
        # a few tokens: every label is shown
        page = watched.goto("/", model="minilm", text="The cat sat.", layer=0, head=0)
        watched.wait_plot("#heatmap")
        page.wait_for_selector("#heatmap[data-ticks='fitted']")
        short = _post(page, "/api/runs", {"model": "minilm", "text": "The cat sat."})["tokens"]
        assert [b["text"] for b in _tick_boxes(page, "#heatmap", "y")] == short
        # the narrow encoder-decoder charts too
        page = watched.goto("/seq2seq", model="seq2seq", text="the cat sat on the mat and the dog sat", layer=0, head=0)
        for sel in ("#enc", "#dec", "#cross"):
            watched.wait_plot(sel)
            page.wait_for_selector(f"{sel}[data-ticks='fitted']")
            for axis in ("x", "y"):
                _assert_apart(sorted(_tick_boxes(page, sel, axis), key=lambda b: (b["l"], b["t"])), f"{sel} {axis}")
        watched.shot("seq2seq-large-font")
        watched.check_clean()
    finally:
        if page.evaluate("() => document.body.classList.contains('large')"):
            page.click("#large-font")


def _low_share(page, special) -> float:
    """Share of the heatmap's non-special cells drawn in the bottom 5 % of its colour range."""
    return page.evaluate("""(special) => { const t = document.getElementById('heatmap').data[0];
        let low = 0, n = 0;
        t.z.forEach(row => row.forEach((v, j) => { if (special[j] || v === null) return; n += 1;
            if ((v - t.zmin) / (t.zmax - t.zmin) < 0.05) low += 1; }));
        return low / n; }""", special)


def test_head_view_colour_scale_and_special_tokens(watched):
    page = watched.goto("/")
    run = _post(page, "/api/runs", {"model": "minilm", "text": SENTENCE})
    special = run["special"]
    assert special[0] and special[-1]  # [CLS] ... [SEP]
    sink = run["head_stats"]["encoder"]["special_sink"]
    # the head that puts the most weight on [CLS]/[SEP]
    layer, head = max(((ly, h) for ly in range(len(sink)) for h in range(len(sink[0]))),
                      key=lambda lh: sink[lh[0]][lh[1]])
    page = watched.goto("/", model="minilm", text=SENTENCE, layer=layer, head=head)
    watched.wait_plot("#heatmap")
    flat = _low_share(page, special)
    assert flat > 0.8  # a linear scale: the head's weight on [CLS]/[SEP] leaves the rest near the bottom
    titles = {}
    for scale in ("sqrt", "log", "p99", "linear"):
        page.select_option("#scale", scale)
        page.wait_for_function("(s) => new URLSearchParams(location.search).get('scale') === s", arg=scale)
        page.wait_for_function("(t) => { const e = document.querySelector('#heatmap .cbtitle text');"
                               " return e && e.textContent !== t; }", arg=titles.get("previous", ""))
        titles[scale] = titles["previous"] = page.locator("#heatmap .cbtitle text").text_content()
    assert len({titles[s] for s in ("sqrt", "log", "p99", "linear")}) == 4
    assert "square-root" in titles["sqrt"] and "log" in titles["log"] and "99th percentile" in titles["p99"]
    # the line view's opacity follows the scale: the faint lines come up under a square root
    linear = page.eval_on_selector_all(".line-view line.att", "els => els.length")
    page.select_option("#scale", "sqrt")
    page.wait_for_function("(t) => document.querySelector('#heatmap .cbtitle text').textContent !== t",
                           arg=titles["linear"])
    assert page.eval_on_selector_all(".line-view line.att", "els => els.length") > linear
    assert _low_share(page, special) < 0.75  # the square root lifts them
    # a reload restores the scale from the URL
    page.goto(page.url)
    watched.wait_plot("#heatmap")
    assert page.locator("#scale").input_value() == "sqrt"
    assert page.locator("#heatmap .cbtitle text").text_content() == titles["sqrt"]
    # exclude [CLS]/[SEP]: their columns go, every row sums to 1 over the other keys
    page.select_option("#scale", "linear")
    page.check("#exclude-special")
    page.wait_for_function("() => new URLSearchParams(location.search).get('exclude_special') === '1'")
    page.wait_for_function("() => document.querySelector('#heatmap .cbtitle text').textContent.includes('special')")
    shown = page.evaluate("() => document.getElementById('heatmap').data[0].customdata.map(r => r.map(c => c[2]))")
    dropped = [k for k, s in enumerate(special) if s]
    to_dropped = "(els, ks) => els.filter(e => ks.includes(Number(e.dataset.k))).length"
    assert page.eval_on_selector_all(".line-view line.att", to_dropped, dropped) == 0  # no line to a dropped key
    for row in shown:
        assert all(w is None for w, s in zip(row, special) if s)
        assert abs(sum(w for w, s in zip(row, special) if not s) - 1) < 1e-3
    assert _low_share(page, special) < flat  # renormalised, the other keys spread over the scale
    page.goto(page.url)
    watched.wait_plot("#heatmap")
    assert page.locator("#exclude-special").is_checked()
    assert "special" in page.locator("#heatmap .cbtitle text").text_content()
    assert "square-root" in page.locator("#thumb-note").text_content()
    watched.shot("explorer-without-specials")
    watched.check_clean()


# ----------------------------------------------------------------------------- faults a new user found


ASTRAL = "東京 🙂🎉 tokyo"  # an emoji is one code point (the server's offsets) and two UTF-16 units (JS)


def test_raw_text_after_astral_characters_is_the_python_slice(watched):
    page = watched.goto("/")
    _smollm2_or_skip(page)
    run = _post(page, "/api/runs", {"model": "smollm2", "text": ASTRAL})
    raw = [ASTRAL[o[0]:o[1]] if o else None for o in run["offsets"]]
    assert any(ord(ch) > 0xFFFF for r in raw if r for ch in r)
    page = watched.goto("/", model="smollm2", text=ASTRAL, layer=0, head=0)
    watched.wait_plot("#heatmap", timeout=120_000)
    page.wait_for_selector(".line-view text")
    # line view: "<i>: <label> "<raw>"" (nothing here needs escaping)
    titles = page.eval_on_selector_all(".line-view text[data-side='q']",
                                       "els => els.map(e => e.parentNode.querySelector('title').textContent)")
    assert titles == [f'{i}: {t} "{r}"' for i, (t, r) in enumerate(zip(run["tokens"], raw))]
    # heatmap hover: the raw text of the last query and of every key
    cells = page.evaluate("() => document.getElementById('heatmap').data[0].customdata.at(-1).map(c => c[1])")
    for j, (cell, t, r) in enumerate(zip(cells, run["tokens"], raw)):
        assert cell == f"key {j} “{t}”" + ("" if r == t else f' ("{r}")'), cell
    # the head view's JSON export
    with page.expect_download() as download:
        page.click("#export-head-json")
    exported = json.loads(Path(download.value.path()).read_text())
    assert exported["rowRaw"] == raw and exported["colRaw"] == raw
    # generation chips: offsets index the generated text in code points too
    prompt = f"Repeat: {ASTRAL} {ASTRAL}"
    page = watched.goto("/generate", model="smollm2", prompt=prompt, max_new_tokens=6, temperature=0)
    page.wait_for_function("() => document.getElementById('trace-info').textContent.includes('stopped')",
                           timeout=120_000)
    answer = _post(page, "/api/generate", {"model": "smollm2", "prompt": prompt, "max_new_tokens": 6, "temperature": 0})
    generated = "".join(s["text"] for s in answer["steps"]) + answer["summary"]["tail_text"]
    chips = page.eval_on_selector_all("#chips .chip", "els => els.map(e => e.title)")
    for i, (chip, s) in enumerate(zip(chips, answer["steps"])):
        piece = generated[s["offsets"][0]:s["offsets"][1]] if s["offsets"] else ""  # null: a control token
        # rawLiteral escapes what cannot be shown (\n, \t): only then may the title differ from the plain piece
        assert chip == f'step {i}, id {s["token_id"]}: "{piece}"' or ("\\" in chip and not piece.isprintable()), chip
    watched.check_clean()


EMOJIS = "Party emojis: " + "🎉" * 8


def test_generation_stopping_inside_a_character_shows_its_bytes(watched):
    page = watched.goto("/")
    _smollm2_or_skip(page)
    answer = _post(page, "/api/generate", {"model": "smollm2", "prompt": EMOJIS, "max_new_tokens": 8, "temperature": 0})
    summary = answer["summary"]
    if not summary["tail_text"]:
        pytest.skip("this build's greedy continuation ends on a character boundary")
    page = watched.goto("/generate", model="smollm2", prompt=EMOJIS, max_new_tokens=8, temperature=0)
    page.wait_for_function("() => document.getElementById('trace-info').textContent.includes('stopped')",
                           timeout=120_000)
    shown = page.locator("#generated").text_content()
    assert "\ufffd" not in shown
    released = summary["text"].removesuffix(summary["tail_text"])
    assert shown.startswith(released)
    tail = page.locator("#generated .gen.tail")
    assert re.fullmatch(r"⟨[0-9A-F]{2}( [0-9A-F]{2})*⟩", tail.text_content())
    assert "incomplete" in tail.get_attribute("class") and "current" in tail.get_attribute("class")
    # a step that completes no text still shows where it stands (a marker, not text)
    empty = next((i for i, s in enumerate(answer["steps"])
                  if not s["text"] and s["offsets"] and s["offsets"][1] <= len(released)), None)
    if empty is not None:
        page.fill("#step", str(empty))
        page.dispatch_event("#step", "input")
        page.wait_for_function("(i) => document.getElementById('step-out').textContent === String(i)", arg=empty)
        marker = page.eval_on_selector("#generated .gen.current",
                                       "e => getComputedStyle(e, '::after').content")
        assert marker not in ("none", "normal", '""')
    # the chosen bar reads as the chip (relabelled once its character completed)
    for i in range(len(answer["steps"])):
        page.fill("#step", str(i))
        page.dispatch_event("#step", "input")
        page.wait_for_function("(i) => new URLSearchParams(location.search).get('step') === String(i)", arg=i)
        page.wait_for_function("(i) => document.getElementById('probs').layout.title.text && "
                               "document.querySelector('#chips .chip.current').dataset.step === String(i)", arg=i)
        bar = page.evaluate("""() => { const gd = document.getElementById('probs'), t = gd.data[0];
            const k = t.marker.color.indexOf('#E69F00'); return k < 0 ? null : gd.layout.yaxis.ticktext[k]; }""")
        if bar is not None:
            assert bar == page.locator("#chips .chip.current").text_content()
    # the layer axis (SmolLM2: 30 layers) shows only labels that fit, apart
    page.wait_for_selector("#step-attention[data-ticks='fitted']")
    boxes = _tick_boxes(page, "#step-attention", "y")
    assert 2 < len(boxes) < 30
    _assert_apart(boxes, "layer axis")
    watched.check_clean()


def test_colour_bar_title_fits_and_no_zero_lines(watched):
    page = watched.goto("/", model="minilm", text=SENTENCE, layer=2, head=3, scale="p90", exclude_special=1)
    watched.wait_plot("#heatmap")
    page.wait_for_selector("#heatmap[data-ticks='fitted']")
    title = page.locator("#heatmap .cbtitle").text_content()
    value = re.search(r"= ([0-9.]+)", title).group(1)
    assert len(value.lstrip("0.")) >= 2, title  # 0.19, not 0.1
    fig = page.locator("#heatmap .main-svg").first.bounding_box()
    box = page.locator("#heatmap .cbtitle").bounding_box()
    assert box["y"] >= fig["y"] and box["y"] + box["height"] <= fig["y"] + fig["height"], (box, fig)
    zero = page.evaluate("() => { const L = document.getElementById('heatmap')._fullLayout;"
                         " return [L.xaxis.zeroline, L.yaxis.zeroline]; }")
    assert zero == [False, False]
    watched.check_clean()


WORDPIECE = "Tokenization of internationalization shows wordpiece splitting in the tokenizer"


def test_axis_titles_sit_outside_tick_labels_at_large_font(open_watched, server):
    w = open_watched(server, 1000, 1000)
    page = w.goto("/")
    page.evaluate("() => localStorage.setItem('attnlab-large', '1')")
    try:
        page = w.goto("/", model="minilm", text=WORDPIECE, layer=0, head=0)
        w.wait_plot("#heatmap")
        page.wait_for_selector("#heatmap[data-ticks='fitted']")
        assert "##ization" in _post(page, "/api/runs", {"model": "minilm", "text": WORDPIECE})["tokens"]
        ytitle = page.locator("#heatmap .g-ytitle text").bounding_box()
        xtitle = page.locator("#heatmap .g-xtitle text").bounding_box()
        yticks = _tick_boxes(page, "#heatmap", "y")
        xticks = _tick_boxes(page, "#heatmap", "x")
        assert ytitle["x"] + ytitle["width"] <= min(b["l"] for b in yticks) + 0.5
        assert xtitle["y"] >= max(b["b"] for b in xticks) - 0.5
        w.check_clean()
    finally:
        page.evaluate("() => localStorage.setItem('attnlab-large', '0')")


def test_every_tick_label_shows_where_they_fit(open_watched, server):
    text = SENTENCE[:150]
    for width in (1400, 1000):
        w = open_watched(server, width, 1000)
        page = w.goto("/", model="minilm", text=text, layer=0, head=0)
        w.wait_plot("#heatmap")
        page.wait_for_selector("#heatmap[data-ticks='fitted']")
        n, length = page.evaluate("() => { const gd = document.getElementById('heatmap');"
                                  " return [gd.data[0].z[0].length, gd._fullLayout.xaxis._length]; }")
        boxes = sorted(_tick_boxes(page, "#heatmap", "x"), key=lambda b: b["l"])
        pitch = max(b["r"] - b["l"] for b in boxes) + 1  # a label's rendered thickness, and a gap
        if length / n >= pitch:
            assert len(boxes) == n, f"{width} px: {len(boxes)} of {n} labels in {length / n:.1f} px each"
        _assert_apart(boxes, f"x axis at {width} px")
        w.check_clean()
        w.close()


def test_log_axes_read_cleanly_and_one_spelling(watched):
    page = watched.goto("/backends", form="synthetic", seq_lens="32,64,128", backends="math,sdpa",
                        n_heads=2, head_dim=16)
    page.wait_for_selector("#bench-source:has-text('Last measured')")
    page.click("#run")
    page.wait_for_selector("#bench-source:has-text('Measured now')", timeout=90_000)
    watched.wait_plot("#bench", timeout=90_000)
    x = page.evaluate("() => document.getElementById('bench').layout.xaxis.ticktext")
    assert x == ["32", "64", "128"]
    assert "attention call" in page.locator("#bench-time-head").text_content()
    page = watched.goto("/architecture", model="minilm", profile=1)
    watched.wait_plot("#profile-chart", timeout=90_000)
    names = page.evaluate("() => document.getElementById('profile-chart').data[0].x")
    assert "feed-forward" in names and not any("_" in n for n in names)
    ticks = page.evaluate("() => document.getElementById('arch-chart').layout.yaxis.ticktext")
    assert ticks and all(not t.isdigit() or int(t) in (1, 2, 5) or t[0] in "125" for t in ticks)
    watched.check_clean()


def test_interventions_says_when_a_link_names_a_model_it_cannot_run_and_follows_the_cards(watched):
    """A link naming the encoder-decoder (this page runs encoders and decoders) says so instead of silently
    running another model; choosing another model while the text is still the default gives that model's
    own example."""
    page = watched.goto("/interventions", model="seq2seq")
    notice = page.locator("#model-notice")
    notice.wait_for(state="visible")
    assert notice.text_content().startswith("The link asked for model \u201cseq2seq\u201d, but it is an "
                                            "encoder-decoder model and this page needs an encoder or decoder.")
    watched.wait_plot("#importance")  # the model shown instead is run on its default example
    first = page.locator("#model").input_value()
    default = page.locator("#text").input_value()
    other = next(v for v in page.eval_on_selector_all("#model option:not([disabled])", "els => els.map(e => e.value)")
                 if v != first)
    page.select_option("#model", other)
    page.wait_for_function("(d) => document.getElementById('text').value !== d", arg=default)
    assert page.locator("#model-notice").is_hidden()
    page.fill("#text", "my own words")  # a text of the user's own survives a model change
    page.select_option("#model", first)
    assert page.locator("#text").input_value() == "my own words"
    watched.check_clean()


def test_interventions_importance_ablation_patching_and_lens(watched):
    """Importance grid, click (and shift-click) to ablate, the changed predictions as text, patching and the
    lens on the tiny decoder; the URL keeps the ablated heads."""
    text = f"the cat sat on the mat. {XSS[0]}"
    page = watched.goto("/interventions", model="tinylm", text=text)
    watched.wait_plot("#importance")
    watched.wait_plot("#lens")
    z = page.evaluate("() => document.getElementById('importance').data[0].z")
    assert (len(z), len(z[0])) == (2, 4) and all(v >= 0 for row in z for v in row)
    lens_text = page.evaluate("() => document.getElementById('lens').data[0].text")
    assert len(lens_text) == 2 and len(lens_text[0]) == len(text)
    assert page.evaluate("() => document.getElementById('norms').data.length") == 3
    page.evaluate("""() => document.getElementById('importance').emit('plotly_click',
        {points: [{pointIndex: [1, 2]}], event: {shiftKey: false}})""")
    watched.wait_plot("#ablation")
    page.evaluate("""() => document.getElementById('importance').emit('plotly_click',
        {points: [{pointIndex: [0, 1]}], event: {shiftKey: true}})""")
    page.wait_for_function("() => document.getElementById('ablated').textContent.includes('L0H1')")
    assert page.locator("#ablated").text_content().endswith("L1H2, L0H1")
    assert watched.state()["heads"] == "1.2,0.1"
    marks = page.evaluate("() => document.getElementById('importance').data[0].text")
    assert marks[1][2] == marks[0][1] == "\u2716" and marks[0][0] == ""
    bars = page.evaluate("() => document.getElementById('ablation').data[0].y")
    assert len(bars) == len(text) and bars[-1] is None
    assert page.locator("#loss-change").text_content().startswith("mean loss ")
    # patching a name swap of equal length
    page.fill("#clean", "the cat sat on the mat")
    page.fill("#corrupted", "the dog sat on the mat")
    page.click("#patch-run")
    watched.wait_plot("#patch")
    grid = page.evaluate("() => document.getElementById('patch').data[0].z")
    assert (len(grid), len(grid[0])) == (2, 5)  # the whole layer, then each head
    assert page.locator("#patch-note").text_content().startswith("target ")
    watched.shot("interventions")
    watched.check_clean()
    # unequal lengths: the server's message, in words
    page.fill("#corrupted", "a dog")
    page.click("#patch-run")
    page.wait_for_selector("#error:not([hidden])")
    assert page.locator("#error").text_content().startswith("corrupted: 5 tokens, but clean has 22")
    # a reload restores the ablated heads from the URL
    page.reload()
    watched.wait_plot("#ablation")
    assert page.locator("#ablated").text_content().endswith("L1H2, L0H1")
