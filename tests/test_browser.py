"""The pages in a real browser: Debian's /usr/bin/chromium driven by Python playwright.

The real app runs under uvicorn in a background thread on a free port, with preload off
and a registry of the bundled MiniLM plus a tiny zoo trained here in a few seconds (a
char-level decoder with a training log and attention snapshots, and a T5-style
encoder-decoder), so every view has a model and the file stays well under three minutes
on two cores. Every view: no console errors (the page runs under the strict CSP), the
chart has the expected traces/cells, the URL round-trips, and the XSS tokens show as text.
Screenshots of every view go to a pytest temp dir (screenshots/<view>.png), never to
static/screenshots/: the README images come from real models (bench/screenshots.py).
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlparse

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parent.parent
XSS = ['<script>alert(1)</script>', '"><img src=x onerror=alert(1)>']
CORPUS = ("the cat sat on the mat. the dog sat on the log. <script>alert(1)</script> "
          '"><img src=x onerror=alert(1)> a cat and a dog met on the mat. ') * 40

if not CHROMIUM.exists():
    pytest.skip("Debian chromium is not installed at /usr/bin/chromium (apt-get install chromium); "
                "the browser tests never download a browser", allow_module_level=True)
playwright_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")


# ----------------------------------------------------------------------------- a tiny zoo


def build_tiny_zoo(root: Path) -> Path:
    """A decoder ("tinylm": log.jsonl + snapshots) and an encoder-decoder ("seq2seq"), trained briefly."""
    import torch

    from models import build_model, preset
    from models.tokenization import CharTokenizer
    from models.training import Probe, TrainConfig, Trainer, lm_batches

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import uvicorn

    from app.assets import ensure_assets
    from app.main import create_app
    from app.settings import Settings
    from models.pretrained import pretrained_entries
    from models.registry import Registry, zoo_entries

    ensure_assets()
    zoo = build_tiny_zoo(tmp_path_factory.mktemp("zoo"))
    registry = Registry()
    for entry in pretrained_entries([], None):
        if entry.id in ("minilm", "gpt2"):  # one bundled model, one listed-but-unavailable
            registry.register(entry)
    for entry in zoo_entries(zoo):
        registry.register(entry)
    settings = Settings(preload=False, zoo_dir=zoo, benchmark_budget_s=5.0, log_level="WARNING")
    port = _free_port()
    config = uvicorn.Config(create_app(settings, registry=registry), host="127.0.0.1", port=port,
                            log_level="warning", lifespan="on")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def context(browser):
    # one context for the module: the browser cache keeps plotly.min.js (4.6 MB) between tests
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    yield ctx
    ctx.close()


class Watched:
    """A page whose console errors, page errors, CSP violations and dialogs are collected."""

    def __init__(self, context, base: str, shots: Path):
        self.base = base
        self.shots = shots
        self.page = context.new_page()
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page.add_init_script(
            "document.addEventListener('securitypolicyviolation', e => "
            "console.error('CSP violation', e.violatedDirective, e.sourceFile, e.lineNumber));")
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))

        def on_dialog(dialog):
            self.dialogs.append(dialog.message)
            dialog.dismiss()

        self.page.on("dialog", on_dialog)

    def goto(self, path: str, **params: object):
        url = f"{self.base}{path}" + (f"?{urlencode(params)}" if params else "")
        self.page.goto(url)
        return self.page

    def traces(self, selector: str) -> int:
        return self.page.eval_on_selector(selector, "el => (el.data || []).length")

    def wait_plot(self, selector: str, timeout: float = 60_000):
        self.page.wait_for_function(
            "(sel) => { const el = document.querySelector(sel); return el && el.data && el.data.length > 0 "
            "&& el.querySelector('.main-svg'); }", arg=selector, timeout=timeout)

    def state(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlparse(self.page.url).query).items()}

    def shot(self, name: str) -> None:
        self.page.wait_for_timeout(300)
        self.page.screenshot(path=str(self.shots / f"{name}.png"), full_page=True)

    def check_clean(self) -> None:
        assert self.page.locator("#error").is_hidden(), self.page.locator("#error").text_content()
        assert not self.errors, self.errors
        assert not self.dialogs, f"a dialog fired: {self.dialogs}"
        assert self.page.locator("img[src='x']").count() == 0, "an injected <img> element was created"

    def close(self) -> None:
        self.page.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture
def watched(context, server, shots):
    w = Watched(context, server, shots)
    yield w
    w.close()


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
    # box-zoom: relayout to a small range fetches the exact block (float16 decoded in JS)
    page.evaluate("() => Plotly.relayout('heatmap', {'xaxis.range': [100, 160], 'yaxis.range': [220, 160]})")
    page.wait_for_function("() => document.getElementById('zoom-note').textContent.startsWith('exact block')",
                           timeout=30_000)
    trace = page.evaluate("() => { const t = document.getElementById('heatmap').data[0];"
                          " return {rows: t.z.length, cols: t.z[0].length, x0: t.x0, y0: t.y0, dx: t.dx}; }")
    assert trace["dx"] == 1 and trace["rows"] <= 70 and trace["cols"] <= 70
    assert 90 <= trace["x0"] <= 110 and 150 <= trace["y0"] <= 170
    # causal decoder: no weight above the diagonal
    upper = page.evaluate("() => { const t = document.getElementById('heatmap').data[0]; let m = 0;"
                          " t.z.forEach((row, i) => row.forEach((w, j) => { if (t.x0 + j > t.y0 + i) m = Math.max(m, w); }));"
                          " return m; }")
    assert upper == 0
    watched.shot("explorer-long")
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
    page.wait_for_function("() => document.getElementById('trace-info').textContent.includes('stopped')", timeout=60_000)
    assert page.locator("#step").get_attribute("max") == "5"
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
    page.wait_for_function("() => document.getElementById('trace-info').textContent.includes('stopped')", timeout=60_000)
    assert page.locator("#step-out").text_content() == "2" and page.locator("#head").input_value() == "1"
    assert page.locator("#generated").text_content() == generated  # deterministic for the seed
    watched.check_clean()


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


def test_positional_figures(watched):
    page = watched.goto("/positional", scheme="alibi", n_heads=8)
    watched.wait_plot("#scheme-figures .chart")
    watched.wait_plot("#similarity")
    assert watched.traces("#scheme-figures .chart") == 8  # one bias line per head
    assert watched.traces("#similarity") == 4
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
    watched.wait_plot("#bench", timeout=90_000)
    assert watched.traces("#bench") == 6  # time and memory, one line per backend
    rows = page.locator("#bench-table tbody tr").count()
    assert rows == 6
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
    page.fill("#text", "   ")
    page.click("#run")
    page.wait_for_selector("#error:not([hidden])")
    assert "text" in page.locator("#error").text_content()


def test_api_docs_work_offline(watched):
    """/docs is Swagger UI from our own files under the CSP: every operation listed, no errors."""
    requests: list[str] = []
    watched.page.on("request", lambda r: requests.append(r.url))
    page = watched.goto("/docs")
    page.wait_for_selector(".opblock-summary-path", timeout=60_000)
    paths = page.locator(".opblock-summary-path").all_text_contents()
    assert any("/api/attention" in p for p in paths) and any("/api/runs/{run_id}/attention" in p for p in paths)
    assert all(url.startswith(watched.base) for url in requests), [u for u in requests if not u.startswith(watched.base)]
    assert not watched.errors, watched.errors
