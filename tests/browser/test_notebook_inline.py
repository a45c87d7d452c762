"""attnlab.notebook's inline HTML in Debian chromium with every network request refused: it draws, offline,
with the captured weights and the tokens as text."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.browser

transformers = pytest.importorskip("transformers")

import attnlab  # noqa: E402
from tests.hf.tiny_hf import VOCAB, word_tokenizer  # noqa: E402

DRAWN = ("() => { const el = document.querySelector('.attnlab-figure'); "
         "return el && el.data && el.querySelector('.main-svg'); }")


@pytest.fixture(scope="module")
def page(browser):
    """A page (the session's chromium, tests/browser/conftest.py) with every network request refused."""
    ctx = browser.new_context(viewport={"width": 1200, "height": 900})
    pg = ctx.new_page()
    pg.requested = []
    pg.errors = []

    def refuse(route):  # offline: anything but the page itself is refused, and noted
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            pg.requested.append(route.request.url)
            route.abort()

    pg.route("**/*", refuse)
    pg.on("pageerror", lambda exc: pg.errors.append(str(exc)))
    yield pg
    ctx.close()


def _open(page, fig, tmp_path) -> None:
    path = tmp_path / "figure.html"
    path.write_text(f"<!doctype html><meta charset='utf-8'><body>{fig.to_html()}</body>", encoding="utf-8")
    page.goto(path.as_uri())
    page.wait_for_function(DRAWN, timeout=60_000)


def test_model_and_head_views_draw_offline_with_tokens_as_text(page, tmp_path, one_thread):
    torch.manual_seed(0)
    gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=VOCAB, n_positions=64, n_embd=32,
                                                                n_layer=2, n_head=4)).eval()
    with attnlab.attach(gpt2, word_tokenizer(bert_style=False)) as mine:
        run = mine.forward("the <b>cat</b> sat")
    _open(page, run.show("model"), tmp_path)
    z = page.evaluate("() => document.querySelector('.attnlab-figure').data.map(t => t.type)")
    assert z == ["heatmap"] * 8  # 2 layers x 4 heads
    _open(page, run.show("head", layer=1, head=2), tmp_path)
    # the weights plotly.js drew (its calcdata, decoded from the typed array in the figure JSON)
    drawn = page.evaluate("() => Array.from(document.querySelector('.attnlab-figure').calcdata[0][0].z, "
                          "r => Array.from(r))")
    expected = run.maps(layers=[1], heads=[2])[0, 0]
    assert abs(torch.tensor(drawn) - torch.from_numpy(expected)).max() < 1e-6
    ticks = page.evaluate("() => Array.from(document.querySelectorAll('.ytick text'), t => t.textContent)")
    assert ticks == run.tokens and "[UNK]</" in ticks  # the markup shows as text, never as bold
    assert page.locator(".attnlab-figure b").count() == 0
    assert page.requested == [] and page.errors == []
