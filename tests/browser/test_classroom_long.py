"""Issue 12 (part B) in Debian's chromium: a projector's screen, a tall grid, the keyboard, long runs, exports.

The served app has the bundled MiniLM, a from-scratch decoder shaped like SmolLM2's grid (30 layers x 9
heads, random weights: the grid's draw path does not depend on what the weights learned), a tiny
encoder-decoder, and an unavailable model whose long reason once stretched the page. Checks: no page scrolls
sideways at 1024 x 768 or 1280 x 720, with or without the large-font switch; a click on layer 29 brings the
head view into the viewport; arrow keys move between heads from the page and the grid but not from a text
field; the grid's 270 thumbnails come in 4 requests; the long-text demo fits MiniLM and runs on flash with
its estimate said; a long run on the bundled SmolLM2 shows progress and Cancel stops it on the server; PNG and
SVG exports carry the file name pattern and a title.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlparse

import pytest

pytestmark = pytest.mark.browser

VIEWS = ["/", "/heads", "/generate", "/seq2seq", "/positional", "/backends", "/training", "/architecture"]
LONG_REASON = ("weights not found in the Hugging Face cache or ATTNLAB_MODEL_DIR; download them once on a machine "
               "with network: `huggingface-cli download some-org/a-very-long-model-name-that-stretches-pages`")


def _registry():
    import torch

    from attnlab.models import ModelInfo, Registry, ScratchAdapter, TransformerConfig, build_model
    from attnlab.models.catalogue import Entry
    from attnlab.models.hf import pretrained_entries
    from attnlab.models.tokenization import CharTokenizer

    torch.manual_seed(0)
    tok = CharTokenizer.from_corpus("abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?'\"-()")

    def scratch(model_id, **cfg):
        adapter = ScratchAdapter(model_id, build_model(TransformerConfig(vocab_size=tok.vocab_size, **cfg)), tok)
        return Entry(model_id, lambda: adapter.info, lambda: adapter)

    reg = Registry([e for e in pretrained_entries([], None) if e.id in ("minilm", "smollm2")])
    reg.register(scratch("tall", family="decoder", d_model=36, n_layers=30, n_heads=9, positional="rope",
                         max_positions=2048))
    reg.register(scratch("tiny-t5", family="encoder-decoder", d_model=32, n_layers=2, n_heads=4,
                         positional="t5_relative", max_positions=128))
    info = ModelInfo(id="far-away-model", family="decoder", source="pretrained", n_layers=12, n_heads=12,
                     d_model=768, max_positions=1024, positional="learned", available=False, reason=LONG_REASON)
    reg.register(Entry(info.id, lambda: info, lambda: None))
    return reg


@pytest.fixture(scope="module")
def served(serve):
    from attnlab.core.settings import Settings
    from attnlab.main import create_app

    settings = Settings(_env_file=None, preload=False, log_level="WARNING", auto_flash_min_tokens=256)
    app = create_app(settings, registry=_registry())
    with serve(app) as base:
        yield app, base


@pytest.fixture
def page(open_watched):
    """A watched page (tests/browser/conftest.py) in a fresh 1280 x 720 context of its own."""
    return open_watched(None, 1280, 720, accept_downloads=True).page


def state(pg) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlparse(pg.url).query).items()}


def run_explorer(pg, base: str, model: str, text: str, backend: str = "auto") -> None:
    pg.goto(f"{base}/?{urlencode({'model': model, 'text': text, 'backend': backend})}")
    pg.wait_for_selector("#grid[data-drawn='1']", timeout=60_000)


# -- a projector ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(1024, 768), (1280, 720)])
def test_no_page_scrolls_sideways_on_a_projector(open_watched, served, size):
    _, base = served
    pg = open_watched(base, *size).page
    for large in (False, True):
        pg.goto(base + "/")
        pg.evaluate(f"localStorage.setItem('attnlab-large', '{1 if large else 0}')")
        for view in VIEWS:
            pg.goto(base + view)
            pg.wait_for_function("() => document.querySelector('#model') === null "
                                 "|| document.querySelector('#model').options.length > 0", timeout=30_000)
            assert pg.evaluate("document.body.classList.contains('large')") is large
            widths = pg.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
            assert widths[0] <= widths[1], f"{view} at {size} (A+ {large}): {widths[0]} px wide"
            assert not pg.errors, (view, pg.errors)


def test_nav_links_to_the_api_docs_and_back(page, served):
    _, base = served
    page.goto(base + "/heads")
    page.click("#api-docs")
    page.wait_for_selector("#swagger-ui .opblock", timeout=30_000)
    page.click("#back-to-pages")
    page.wait_for_url(base + "/")


# -- a tall grid and the keyboard -------------------------------------------------------------------------------
def test_tall_grid_comes_in_four_requests_and_a_click_on_L29_shows_the_head(page, served):
    _, base = served
    requests: list[str] = []
    page.on("request", lambda r: "/api/runs/" in r.url and requests.append(r.url))
    run_explorer(page, base, "tall", "the cat sat on the mat. " * 3)
    assert page.locator(".thumb canvas[data-loaded='1']").count() == 270
    overviews = [u for u in requests if "/overviews?" in u]
    assert len(overviews) == 4 and not [u for u in requests if "/attention?" in u]
    assert sorted(parse_qs(urlparse(u).query)["layers"][0] for u in overviews) == ["0:8", "16:24", "24:30", "8:16"]
    thumb = page.locator(".thumb[data-layer='29'][data-head='8']")
    thumb.scroll_into_view_if_needed()
    thumb.click()
    page.wait_for_function("() => document.querySelector('#heatmap').data", timeout=30_000)
    page.wait_for_timeout(300)
    top = page.evaluate("document.querySelector('#head-view-panel').getBoundingClientRect().top")
    assert -2 <= top < page.viewport_size["height"] / 2, top  # scrolled to its top (sub-pixel rounding)
    assert (state(page)["layer"], state(page)["head"]) == ("29", "8")
    # arrow keys from the page body: up a layer, left a head
    page.evaluate("document.activeElement.blur()")
    page.keyboard.press("ArrowUp")
    page.wait_for_function("() => new URLSearchParams(location.search).get('layer') === '28'")
    page.keyboard.press("ArrowLeft")
    page.wait_for_function("() => new URLSearchParams(location.search).get('head') === '7'")
    assert page.locator("#head-title").text_content() == "Head view: decoder layer 28, head 7"
    # ... but not from the text field, which keeps its own keys
    page.focus("#text")
    page.keyboard.press("ArrowUp")
    page.wait_for_timeout(300)
    assert state(page)["layer"] == "28"
    assert not page.errors, page.errors


# -- long inputs --------------------------------------------------------------------------------------------
def test_long_text_demo_fits_minilm_and_runs_on_flash(page, served):
    _, base = served
    page.goto(base + "/?model=minilm")
    page.wait_for_function("() => document.querySelector('#model').value === 'minilm'")
    page.click("#long-demo")
    page.wait_for_function("() => document.querySelector('#text').value.length > 1000", timeout=30_000)
    assert "the most minilm takes (max_positions 512)" in page.locator("#run-note").text_content()
    assert page.locator("#backend").input_value() == "auto"
    # a model change keeps the backend chosen (auto, or one the new model has)
    page.select_option("#model", "tall")
    assert page.locator("#backend").input_value() == "auto"
    page.select_option("#backend", "sdpa")
    page.select_option("#model", "minilm")
    assert page.locator("#backend").input_value() == "sdpa"
    page.select_option("#backend", "auto")
    page.click("#run")
    # the page opened with its example already drawn: wait for the long run's grid, not that one
    page.wait_for_function("() => parseInt(document.getElementById('run-info').textContent) > 400", timeout=120_000)
    page.wait_for_selector("#grid[data-drawn='1']", timeout=60_000)
    info = page.locator("#run-info").text_content()
    n_tokens = int(info.split(" tokens")[0])
    assert 480 <= n_tokens <= 512, info
    assert page.locator("#run-note").text_content().startswith(f"{n_tokens} tokens on flash (auto: ")
    assert page.locator("#error").is_hidden(), page.locator("#error").text_content()


@pytest.mark.slow
def test_long_smollm2_run_shows_progress_and_cancel_stops_the_server(page, served):
    app, base = served
    services = app.state.services
    if not services.hub.info("smollm2").available:
        pytest.skip(f"smollm2 is not available here: {services.hub.info('smollm2').reason}")
    page.goto(base + "/?model=smollm2")
    page.wait_for_function("() => document.querySelector('#model').value === 'smollm2'")
    page.click("#long-demo")
    page.wait_for_function("() => document.querySelector('#text').value.length > 4000", timeout=120_000)
    page.select_option("#backend", "math")  # the slow backend, so the run is long enough to cancel
    page.click("#run")
    page.wait_for_selector("#run-progress:not([hidden])", timeout=120_000)
    page.wait_for_function("() => Number(document.querySelector('#run-progress-bar').value) >= 1", timeout=120_000)
    assert "of about" in page.locator("#run-progress-text").text_content()
    page.click("#run-cancel")
    assert page.locator("#run-note").text_content() == "Run cancelled: the server stopped it."
    deadline = time.time() + 30
    while services.hub.gate("smollm2").running and time.time() < deadline:
        time.sleep(0.1)
    assert services.hub.gate("smollm2").running == 0  # the forward stopped between layers, not after 30
    assert not services.longrun.inflight
    assert page.locator("#error").is_hidden()


# -- exports ------------------------------------------------------------------------------------------------
def test_png_and_svg_exports_are_named_and_titled(page, served):
    _, base = served
    page.goto(f"{base}/?{urlencode({'model': 'tall', 'text': 'abc abc abc', 'layer': 3, 'head': 2})}")
    page.wait_for_function("() => document.querySelector('#heatmap').data", timeout=60_000)
    for fmt in ("png", "svg"):
        with page.expect_download() as info:
            page.click(f"#head-export button[data-export='{fmt}']")
        download = info.value
        assert download.suggested_filename == f"attnlab-tall-head-decoder-L3H2.{fmt}"
        content = Path(download.path()).read_bytes()
        if fmt == "svg":
            text = content.decode()
            assert "tall · decoder layer 3, head 2 · “abc abc abc”" in text
        else:
            assert content[:8] == b"\x89PNG\r\n\x1a\n"
    with page.expect_download() as info:
        page.click("#export-head-npy")
    assert info.value.suggested_filename == "attnlab-tall-head-decoder-L3H2.npy"
    assert not page.errors, page.errors


# -- start-up ---------------------------------------------------------------------------------------------------
def test_pages_say_while_a_model_is_prepared_then_the_note_goes(page, serve):
    """prepare_on_start: a model still loading in the background is named on every page, with what is
    happening; the page works meanwhile, and the note goes once /api/health says ok."""
    from attnlab.core.settings import Settings
    from attnlab.main import create_app
    from attnlab.models import Registry
    from attnlab.models.catalogue import Entry

    reg = _registry()
    tall = reg.info("tall")
    release = threading.Event()

    def slow_load():
        release.wait(30)
        return reg.load("tall")

    slow = Registry([Entry("tall", lambda: tall, slow_load)])
    settings = Settings(_env_file=None, preload=False, log_level="WARNING", prepare_on_start=True,
                        default_models=["tall"])
    with serve(create_app(settings, registry=slow)) as base:
        try:
            page.goto(base + "/positional")
            page.wait_for_selector("#preparing-note", timeout=30_000)
            assert page.locator("#preparing-note").text_content() == (
                "Preparing tall: loading its weights. Other models work meanwhile.")
            release.set()
            page.wait_for_selector("#preparing-note", state="detached", timeout=30_000)
            assert not page.errors, page.errors
        finally:
            release.set()


def test_seq2seq_npy_exports_the_kind_and_head_on_screen(page, served):
    import numpy as np

    _, base = served
    page.goto(f"{base}/seq2seq?{urlencode({'model': 'tiny-t5', 'text': 'abc de', 'layer': 1, 'head': 2})}")
    page.wait_for_function("() => document.querySelector('#cross').data", timeout=60_000)
    for kind, chart in (("encoder", "#enc"), ("cross", "#cross")):
        page.select_option("#export-s2s-kind", kind)
        with page.expect_download() as info:
            page.click("#export-s2s-npy")
        assert info.value.suggested_filename == f"attnlab-tiny-t5-seq2seq-{kind}-L1H2.npy"
        saved = np.load(info.value.path())
        shown = np.array(page.eval_on_selector(chart, "el => el.data[0].z"), dtype=np.float32)
        assert saved.shape == shown.shape
        np.testing.assert_allclose(saved, shown, atol=1e-6)
    page.select_option("#export-s2s-kind", "encoder")
    with page.expect_download() as info:
        page.click("#s2s-panel button[data-export='svg']")
    assert info.value.suggested_filename == "attnlab-tiny-t5-seq2seq-encoder-L1H2.svg"
    assert "tiny-t5 · encoder layer 1, head 2 · “abc de”" in Path(info.value.path()).read_text()
    assert not page.errors, page.errors


def test_head_types_rollout_image_is_named_and_titled(page, served):
    _, base = served
    page.goto(f"{base}/heads?{urlencode({'model': 'minilm', 'text': 'The cat sat on the mat.'})}")
    page.wait_for_function("() => document.querySelector('#rollout').data", timeout=60_000)
    with page.expect_download() as info:
        page.click("#rollout-panel button[data-export='svg']")
    assert info.value.suggested_filename == "attnlab-minilm-rollout-encoder.svg"
    assert "minilm · rollout (encoder) after layer" in Path(info.value.path()).read_text()
    assert not page.errors, page.errors
