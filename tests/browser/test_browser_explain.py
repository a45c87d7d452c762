"""The explain pages in Debian's chromium (playwright): the computation view and the Q/K geometry on MiniLM and
the shipped seq2seq checkpoint, and the Explorer's value-weighting toggle. The app runs under uvicorn in a
thread with the bundled MiniLM and the zoo in the repository (no training here)."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlparse

import httpx
import pytest

pytestmark = pytest.mark.browser

XSS = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def server(serve):
    from attnlab.core.settings import Settings
    from attnlab.main import create_app
    from attnlab.models.hf import pretrained_entries
    from attnlab.models.paths import ZOO
    from attnlab.models.registry import Registry, zoo_entries

    registry = Registry()
    for entry in pretrained_entries([], None):
        if entry.id == "minilm":
            registry.register(entry)
    for entry in zoo_entries(ZOO):
        if entry.id in ("seq2seq", "induction"):
            registry.register(entry)
    if not registry.info("minilm").available:
        pytest.skip(registry.info("minilm").reason)
    settings = Settings(_env_file=None, preload=False, log_level="WARNING")
    with serve(create_app(settings, registry=registry)) as base:
        yield base


# the browser, the context and the module's watched ``page`` (errors, base, shots): tests/browser/conftest.py


def goto(page, path, **params):
    page.errors.clear()
    page.goto(f"{page.base}{path}?{urlencode(params)}")


def wait_plot(page, selector, timeout=60_000):
    page.wait_for_function("(sel) => { const el = document.querySelector(sel); return el && el.data && "
                           "el.data.length > 0 && el.querySelector('.main-svg'); }", arg=selector, timeout=timeout)


def data(page, selector):
    return page.evaluate("(sel) => JSON.parse(JSON.stringify(document.querySelector(sel).data))", selector)


def check_clean(page):
    assert page.locator("#error").is_hidden(), page.locator("#error").text_content()
    assert not page.errors, page.errors
    assert page.locator("img[src='x']").count() == 0


def api_step(base, text, **params):
    run = httpx.post(f"{base}/api/runs", json={"model": "minilm", "text": text, "values": True}, timeout=60).json()
    return run, httpx.get(f"{base}/api/runs/{run['run_id']}/computation", params=params, timeout=60).json()


def test_computation_view_draws_the_steps_of_one_query(page):
    text = f"The cat sat on the mat. {XSS}"
    goto(page, "/explain", model="minilm", text=text, layer=2, head=5, query=3)
    for sel in ("#vectors", "#products", "#scores", "#weights", "#output", "#shares", "#qk"):
        wait_plot(page, sel)
    run, step = api_step(page.base, text, layer=2, head=5, query=3)
    weights = data(page, "#weights")
    assert weights[0]["y"] == pytest.approx(step["weights"], abs=1e-6)  # the head view's row, as the API gives it
    assert sum(weights[0]["y"]) == pytest.approx(1, abs=1e-5)
    assert len(weights) == 2 and sum(weights[1]["y"]) == pytest.approx(1, abs=1e-5)  # value-weighted
    products = data(page, "#products")[0]["z"]
    assert (len(products), len(products[0])) == (32, run["n_tokens"])  # d x T
    shares = data(page, "#shares")[0]
    assert shares["x"] == [f"H{h}" for h in range(12)] + ["block"]
    assert f"query 3 \u201c{run['tokens'][3]}\u201d" in page.locator("#step-title").text_content()
    # the tokens are text: the typed <script> is a tick label, never an element
    ticks = page.eval_on_selector_all("#weights .xtick text", "els => els.map(e => e.textContent)")
    assert "<" in ticks and page.locator("main script").count() == 0
    page.screenshot(path=str(page.shots / "explain.png"), full_page=True)
    # the slider walks the query; the URL keeps it
    page.eval_on_selector("#query", "el => { el.value = '5'; el.dispatchEvent(new Event('input')); }")
    page.wait_for_function("() => new URLSearchParams(location.search).get('query') === '5'")
    page.wait_for_function("() => document.getElementById('step-title').textContent.includes('query 5')")
    _, step5 = api_step(page.base, text, layer=2, head=5, query=5)
    page.wait_for_function("(w) => JSON.stringify(document.getElementById('weights').data[0].y.map(x => "
                           "x.toFixed(5))) === JSON.stringify(w)", arg=[f"{w:.5f}" for w in step5["weights"]])
    # a click on a query point of the geometry picks that query
    page.evaluate("""() => { const gd = document.getElementById('qk');
        gd.emit('plotly_click', {points: [{curveNumber: 0, customdata: [1, 'x']}]}); }""")
    page.wait_for_function("() => new URLSearchParams(location.search).get('query') === '1'")
    page.wait_for_function("() => document.getElementById('step-title').textContent.includes('query 1 ')")
    wait_plot(page, "#qk")
    page.wait_for_function("() => document.getElementById('qk').data.length === 3")  # + the top keys ringed
    # export of what is shown
    with page.expect_download() as download:
        page.click("#export-step-json")
    exported = json.loads(Path(download.value.path()).read_text())
    assert exported["query"] == 1 and exported["layer"] == 2 and len(exported["weights"]) == run["n_tokens"]
    check_clean(page)


def test_geometry_view_methods_and_cross_attention(page):
    goto(page, "/explain", model="seq2seq", text="abcdef", kind="cross", layer=1, head=2, query=2)
    wait_plot(page, "#qk")
    qk = data(page, "#qk")
    n_src = len("abcdef")
    assert len(qk[1]["x"]) == n_src  # keys of cross-attention: the source tokens
    assert qk[0]["marker"]["symbol"] == "circle" and qk[1]["marker"]["symbol"] == "x"
    assert "bias" not in page.locator("#scores").inner_text()  # cross-attention: no relative bias
    page.select_option("#method", "tsne")
    page.wait_for_function("() => new URLSearchParams(location.search).get('method') === 'tsne'")
    page.wait_for_function("() => document.querySelector('#qk .xtitle').textContent.startsWith('tsne')",
                           timeout=60_000)
    # T5 self-attention shows its learned bias in the scores
    page.select_option("#kind", "encoder")
    page.wait_for_function("() => document.getElementById('scores').data.length === 3", timeout=30_000)
    page.screenshot(path=str(page.shots / "qk.png"), full_page=True)
    check_clean(page)


def test_rope_model_shows_q_before_rotation(page):
    goto(page, "/explain", model="induction", text="abcabcabc", layer=1, head=0, query=6)
    wait_plot(page, "#vectors")
    assert page.locator("#rotary-label").is_visible()
    after = data(page, "#vectors")[0]["x"]
    page.check("#pre-rotary")
    page.wait_for_function("() => new URLSearchParams(location.search).get('pre') === '1'")
    page.wait_for_function("(a) => JSON.stringify(document.getElementById('vectors').data[0].x) !== JSON.stringify(a)",
                           arg=after)
    before = data(page, "#vectors")[0]["x"]
    norm = lambda v: sum(x * x for x in v) ** 0.5  # noqa: E731
    assert norm(before) == pytest.approx(norm(after), rel=1e-4)  # a rotation keeps the length
    check_clean(page)


def test_url_state_round_trips(page):
    goto(page, "/explain", model="minilm", text="one two three", layer=1, head=3, query=2, method="pca")
    wait_plot(page, "#qk")
    state = {k: v[0] for k, v in parse_qs(urlparse(page.url).query).items()}
    assert (state["layer"], state["head"], state["query"]) == ("1", "3", "2")
    assert page.locator("#head-link").get_attribute("href").startswith("/?")
    check_clean(page)


def test_explorer_value_weighting_toggle(page):
    import numpy as np

    text = "The cat sat on the mat because it was warm."
    goto(page, "/", model="minilm", text=text, layer=1, head=3)
    wait_plot(page, "#heatmap")
    raw = np.array(data(page, "#heatmap")[0]["z"], dtype=float)
    assert page.locator("#explain-link").get_attribute("href").startswith("/explain?")
    page.select_option("#weighting", "value_norm")
    page.wait_for_function("() => new URLSearchParams(location.search).get('weighting') === 'value_norm'")
    page.wait_for_function("(w) => Math.abs(document.getElementById('heatmap').data[0].z[0][0] - w) > 1e-2",
                           arg=float(raw[0][0]), timeout=30_000)
    shown = np.array(data(page, "#heatmap")[0]["z"], dtype=float)
    run = httpx.post(f"{page.base}/api/runs", json={"model": "minilm", "text": text, "values": True}).json()
    expected = np.array(httpx.get(f"{page.base}/api/runs/{run['run_id']}/attention",
                                  params={"layer": 1, "head": 3, "weighting": "value_norm"}).json()["attention"])
    np.testing.assert_allclose(shown, expected, atol=2e-3)  # float16 tiles
    np.testing.assert_allclose(shown.sum(1), 1, atol=1e-2)
    assert shown[1:-1, 0].mean() < raw[1:-1, 0].mean()  # less on [CLS] once weighted by what it adds
    # the grid's thumbnails follow the toggle; a reload keeps it
    page.reload()
    wait_plot(page, "#heatmap")
    assert page.locator("#weighting").input_value() == "value_norm"
    check_clean(page)


def test_positional_page_shows_trained_tables(page):
    goto(page, "/positional", scheme="learned")
    wait_plot(page, "#trained-main")
    z = data(page, "#trained-main")[0]["z"]
    assert len(z) == 128 and abs(z[5][5] - 1) < 1e-5  # MiniLM's first 128 positions, cosine 1 on the diagonal
    page.select_option("#trained-source", "seq2seq")
    page.wait_for_function("() => new URLSearchParams(location.search).get('trained') === 'seq2seq'")
    page.wait_for_function("() => document.getElementById('trained-main').data[0].colorscale === 'RdBu'",
                           timeout=30_000)
    wait_plot(page, "#trained-side")
    main = data(page, "#trained-main")[0]
    assert len(main["x"]) in (255, 128) and len(main["z"]) == 4  # offsets -127..127 (causal: ..0), 4 heads
    page.reload()
    wait_plot(page, "#trained-main")
    assert page.locator("#trained-source").input_value() == "seq2seq"
    page.screenshot(path=str(page.shots / "positional-trained.png"), full_page=True)
    check_clean(page)


def test_sparse_page_applies_a_pattern_and_measures_cost(page):
    text = f"The cat sat on the mat. The dog sat on the log. {XSS}"
    goto(page, "/sparse", model="minilm", text=text, layer=2, head=5, pattern="longformer", window=4)
    for sel in ("#dense", "#allowed", "#sparse", "#kept"):
        wait_plot(page, sel)
    run = httpx.post(f"{page.base}/api/runs", json={"model": "minilm", "text": text}).json()
    s = httpx.get(f"{page.base}/api/runs/{run['run_id']}/sparse",
                  params={"layer": 2, "head": 5, "pattern": "longformer", "window": 4, "global_tokens": 1}).json()
    assert data(page, "#allowed")[0]["z"] == s["allowed"]
    assert data(page, "#kept")[0]["y"] == pytest.approx(s["kept"], abs=1e-6)
    assert f"{100 * s['density']:.1f}%" in page.locator("#sparse-stats").text_content()
    page.select_option("#pattern", "bigbird")
    page.wait_for_function("() => new URLSearchParams(location.search).get('pattern') === 'bigbird'")
    page.wait_for_function("() => document.getElementById('pattern-title').textContent.startsWith('bigbird')")
    assert page.locator("#block").is_visible() and not page.locator("#window").is_visible()
    page.click("#measure")
    wait_plot(page, "#cost", timeout=120_000)
    cost = data(page, "#cost")
    assert [t["name"] for t in cost] == ["dense", "bigbird", "density"] and cost[0]["x"] == [256, 512, 1024, 2048]
    page.screenshot(path=str(page.shots / "sparse.png"), full_page=True)
    check_clean(page)
