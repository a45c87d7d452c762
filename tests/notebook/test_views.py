"""attnlab.notebook: the inline views hold the captured maps, label tokens as text, and need no network."""

from __future__ import annotations

import re

import numpy as np
import pytest

from attnlab.notebook import InlineFigure, set_plotly_js, show, trace
from attnlab.notebook.display import PLOTLY_MIME
from attnlab.web.assets import plotly_js_source
from attnlab.web.figures import escape_label

TEXT = "the cat sat on a mat and the dog ran far away"


def _heatmaps(fig: InlineFigure) -> list:
    return [t for t in fig.figure.data if t.type == "heatmap"]


def test_model_view_is_every_layer_and_head_of_the_capture(tiny_gpt2):
    run = tiny_gpt2.forward(TEXT)
    fig = run.show("model")
    maps = run.maps()  # (L, H, T, T)
    assert fig.data["block"] == 1 and fig.data["maps"].shape == maps.shape == (2, 4, 12, 12)
    traces = _heatmaps(fig)
    assert len(traces) == 8
    for i, tr in enumerate(traces):  # row-major: layer, then head
        np.testing.assert_allclose(np.asarray(tr.z), maps[i // 4, i % 4], atol=1e-7)
    assert "layer 1 head 3" in traces[-1].hovertemplate
    assert traces[0].customdata[6][2][0] == "query 6 \u201cand\u201d" and traces[0].customdata[6][2][1] == \
        "key 2 \u201csat\u201d"
    part = show(run, "model", layers=[-1], heads=[2, 0])
    np.testing.assert_allclose(part.data["maps"], maps[[1]][:, [2, 0]], atol=1e-7)


def test_head_view_labels_tokens_as_text(tiny_gpt2):
    text = "the <b>cat</b> & dog"  # [UNK]s stand for the markup: their labels are the raw text
    run = tiny_gpt2.forward(text)
    fig = run.show("head", layer=1, head=2)
    np.testing.assert_allclose(fig.data["map"], run.maps(layers=[1], heads=[2])[0, 0], atol=1e-7)
    ticks = list(fig.figure.layout.yaxis.ticktext)
    assert ticks == [escape_label(t) for t in run.tokens]
    assert any("&lt;" in t for t in ticks) and not any("<" in t for t in ticks)
    html = fig.to_html(include_plotly_js=False)
    payload = html.split("const a = ", 1)[1]
    assert "<b>" not in payload and "</" not in payload.split("</script>")[0]


def test_long_input_is_drawn_as_the_pooled_overview(tiny_gpt2):
    run = tiny_gpt2.forward(" ".join(["the cat sat on a mat"] * 20))  # 120 tokens
    dense = run.maps(layers=[0], heads=[1])[0, 0]
    fig = run.show("head", layer=0, head=1, max_tokens=32)
    block = fig.data["block"]
    assert block == 4 and fig.data["map"].shape == (30, 30)
    expected = dense.reshape(30, 4, 30, 4).max(axis=(1, 3))  # the largest weight of each 4 x 4 square
    np.testing.assert_allclose(fig.data["map"], expected, atol=1e-6)
    assert "overview: max over 4 x 4 tokens" in fig.figure.layout.title.text
    assert _heatmaps(fig)[0].customdata[0][0][0] == "query 0\u20133"
    grid = run.show("model", max_tokens=40)
    assert grid.data["block"] == 3 and grid.data["maps"].shape == (2, 4, 40, 40)


def test_inline_html_carries_plotly_js_from_the_installed_package_and_no_url(tiny_gpt2):
    fig = tiny_gpt2.forward(TEXT).show("model")
    set_plotly_js("inline")
    bundle = fig._repr_mimebundle_()
    assert bundle[PLOTLY_MIME]["data"][0]["type"] == "heatmap"
    html = bundle["text/html"]
    library = plotly_js_source().read_text(encoding="utf-8")
    assert library in html  # plotly.js of the installed plotly package, inline
    ours = html.replace(library, "")
    assert not re.search(r"<script[^>]+src=|https?://", ours)  # nothing to fetch: no script source, no URL
    assert "window.Plotly.newPlot" in ours
    try:
        set_plotly_js("once")
        first, second = fig._repr_mimebundle_()["text/html"], fig._repr_mimebundle_()["text/html"]
        assert len(first) > 4_000_000 > 100_000 > len(second)  # the library once, then the figure only
    finally:
        set_plotly_js("inline")
    with pytest.raises(ValueError, match="plotly_js: 'inline' or 'once', not 'cdn'"):
        set_plotly_js("cdn")


def test_generation_trace_rows_are_each_steps_new_query(tiny_gpt2):
    tr = trace(tiny_gpt2, "the cat sat", max_new_tokens=4, temperature=0, stop_at_eos=False)
    assert len(tr.steps) == 4 and len(tr.tokens) == 3 + 4
    fig = tr.show(layer=-1, head=1)
    rows = fig.data["rows"]
    for s, step in enumerate(tr.steps):
        expected = step.recorder.dense("decoder", 1, 1)[-1].numpy()
        np.testing.assert_allclose(rows[s, :3 + s], expected, atol=1e-7)
        assert np.isnan(rows[s, 3 + s:]).all()  # keys not yet generated are blank
        assert abs(rows[s, :3 + s].sum() - 1) < 1e-5
    mean = tr.show(layer=0)
    np.testing.assert_allclose(mean.data["rows"][0, :3], tr.steps[0].recorder.dense("decoder", 0)[:, -1].mean(0),
                               atol=1e-7)


def test_bad_view_layer_head_and_kind(tiny_gpt2):
    run = tiny_gpt2.forward(TEXT)
    with pytest.raises(ValueError, match=r"view 'lines': one of \['head', 'model'\]"):
        run.show("lines")
    with pytest.raises(IndexError, match="head 4 is outside 0:4"):
        run.show("head", layer=0, head=4)
    with pytest.raises(IndexError, match="layer 2 is outside 0:2"):
        run.show("model", layers=[2])
    with pytest.raises(KeyError, match="kind 'encoder' was not recorded"):
        run.show("model", kind="encoder")


def test_trace_of_a_sliding_window_model_aligns_the_kept_keys(one_thread):
    """Mistral's cache keeps the last `window` keys: the trace puts them under their own tokens."""
    import torch
    import transformers

    import attnlab
    from tests.hf.tiny_hf import VOCAB, word_tokenizer

    torch.manual_seed(0)
    mistral = transformers.MistralForCausalLM(transformers.MistralConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, sliding_window=4)).eval()
    prompt = "the cat sat on a mat"
    with attnlab.attach(mistral, word_tokenizer(bert_style=False)) as mine:
        tr = trace(mine, prompt, max_new_tokens=3, temperature=0, stop_at_eos=False)
    ids = torch.tensor([tr.prompt.ids + tr.generated.ids])
    mistral.set_attn_implementation("eager")
    with torch.no_grad():
        ref = mistral(input_ids=ids, output_attentions=True).attentions[1][0, 2]  # layer 1, head 2: (T, T)
    rows = tr.show(layer=1, head=2).data["rows"]
    for s in range(3):
        q = len(tr.prompt) - 1 + s  # the query of step s
        np.testing.assert_allclose(rows[s, :q + 1], ref[q, :q + 1].numpy(), atol=1e-6)
        assert (rows[s, :q + 1 - 4] == 0).all()  # outside the window
