"""First use, as a teacher or a student would meet the pages (issue 12, part A): every page opens with its
default example drawn and no click; each has a caption and "try this" links that load a telling example; a
model gets input it can read (its card's example swaps in, its note shows, unreadable text is warned about);
a link naming a model the page cannot run says so; Generation labels the prompt from the first token and
Stop leaves a complete trace; the Backends page opens on measured results without measuring.

The server runs the real shipped models: MiniLM (bundled) and the zoo checkpoints (models/zoo/), plus gpt2
listed as unavailable, so the defaults tested are the ones a user gets.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

SEQ2SEQ_DEFAULT = "rev:attention"


@pytest.fixture(scope="module")
def server(serve):
    from attnlab.core.settings import Settings
    from attnlab.main import create_app
    from attnlab.models.hf import pretrained_entries
    from attnlab.models.registry import Registry, zoo_entries

    registry = Registry()
    for entry in pretrained_entries([], None):
        if entry.id in ("minilm", "gpt2"):  # the bundled encoder, and one model listed unavailable
            registry.register(entry)
    for entry in zoo_entries():
        registry.register(entry)
    settings = Settings(_env_file=None, preload=False, benchmark_budget_s=3.0, log_level="WARNING")
    with serve(create_app(settings, registry=registry)) as base:
        yield base


@pytest.fixture(scope="module")
def viewport():
    return {"width": 1280, "height": 900}


# the browser, the context and the ``watched`` page: tests/browser/conftest.py


# the chart each page must draw with no click, and what it must hold
FIRST_PAINT = {
    "/": "#grid canvas[data-loaded]",
    "/heads": "#head-types .main-svg",
    "/generate": "#step-attention .main-svg",
    "/seq2seq": "#cross .main-svg",
    "/positional": "#similarity .main-svg",
    "/backends": "#bench .main-svg",
    "/training": "#curves .main-svg",
    "/architecture": "#profile-chart .main-svg",
}


@pytest.mark.parametrize("path", list(FIRST_PAINT))
def test_every_page_opens_with_a_result_and_a_caption(watched, path):
    posts: list[str] = []
    watched.page.on("request", lambda r: r.method == "POST" and posts.append(r.url))
    page = watched.goto(path)
    page.wait_for_selector(FIRST_PAINT[path], state="attached", timeout=60_000)
    caption = page.locator("#caption p").first.text_content()
    assert len(caption.split()) > 15, caption  # what it shows and what to look for
    assert 1 <= page.locator("#caption a.try").count() <= 2
    if path == "/backends":
        assert not any("/api/benchmark" in u for u in posts), "opening the Backends page started a benchmark"
        assert "shipped with attnlab" in page.locator("#bench-source").text_content()
        assert page.locator("#bench-table tbody tr").count() == 12  # 3 backends x 4 lengths, shipped
        assert page.locator("#n_heads").is_enabled() and page.locator("#text").is_disabled()
    if path == "/seq2seq":
        assert page.locator("#text").input_value() == SEQ2SEQ_DEFAULT
        rows = page.evaluate("() => document.getElementById('cross').layout.yaxis.ticktext")
        assert "".join(rows).replace("&lt;bos&gt;", "").replace("&lt;eos&gt;", "") == "noitnetta"  # reversed
        assert (page.locator("#layer").input_value(), page.locator("#head").input_value()) == ("1", "3")
    if path == "/generate":
        assert page.locator("#model").input_value() == "lm"  # a causal LM, small: the page opens at once
        page.wait_for_function("() => document.getElementById('trace-info').textContent.includes('stopped')")
        assert page.locator("#generated").text_content().startswith(page.locator("#prompt").input_value())
    if path == "/positional":
        assert watched.traces("#similarity") == 6
        assert "exp(bias)" in page.locator("#similarity-definition").text_content()
    watched.check_clean()


def test_try_links_load_a_telling_example(watched):
    page = watched.goto("/")
    page.wait_for_selector(FIRST_PAINT["/"], state="attached", timeout=60_000)
    page.click("#caption a.try >> nth=0")  # the induction model on a repeated random string
    page.wait_for_function("() => new URLSearchParams(location.search).get('model') === 'induction'")
    watched.wait_plot("#heatmap")  # its card's focus head opens: layer 1, head 3
    assert page.locator("#head-title").text_content().endswith("decoder layer 1, head 3")
    assert page.locator("#model-notice").is_hidden()  # text it can read: no <unk> warning
    assert "random string" in page.locator("#model-note").text_content()
    # on the repeat, the induction head's weight goes one token after the earlier copy
    z = page.evaluate("() => document.getElementById('heatmap').data[0].z")
    half = len(z) // 2
    assert sum(z[i][i - half + 1] for i in range(half, len(z))) / half > 0.5
    page = watched.goto("/seq2seq")
    page.wait_for_selector(FIRST_PAINT["/seq2seq"], state="attached", timeout=60_000)
    page.click("#caption a.try >> nth=0")  # copy: the diagonal
    page.wait_for_function("() => new URLSearchParams(location.search).get('text') === 'copy:attention'")
    page.wait_for_function("() => (document.getElementById('cross').layout?.yaxis?.ticktext || []).join('')"
                           ".includes('attention')")
    page = watched.goto("/generate")
    page.wait_for_function("() => document.getElementById('trace-info').textContent.includes('stopped')",
                           timeout=60_000)
    page.click("#caption a.try >> nth=0")  # the induction model continues a repeated string: it copies
    page.wait_for_function("() => new URLSearchParams(location.search).get('model') === 'induction'")
    page.wait_for_function("() => document.getElementById('trace-info').textContent.includes('stopped')",
                           timeout=60_000)
    prompt = page.locator("#prompt").input_value()
    segment = prompt[: len(prompt) - 8]  # the link's prompt: a random segment, then its first 8 characters
    generated = page.locator("#generated").text_content()[len(prompt):]
    assert len(generated) >= 8 and generated == (segment[8:] + segment)[: len(generated)]  # what came next
    watched.check_clean()


def test_choosing_a_model_swaps_in_its_example_and_shows_its_note(watched):
    page = watched.goto("/")
    page.wait_for_selector(FIRST_PAINT["/"], state="attached", timeout=60_000)
    english = page.locator("#text").input_value()
    page.select_option("#model", "seq2seq")
    assert page.locator("#text").input_value() == SEQ2SEQ_DEFAULT  # the text was the default: it follows
    assert "rev:word" in page.locator("#model-note").text_content()
    page.select_option("#model", "minilm")
    assert page.locator("#text").input_value() == english
    page.fill("#text", "my own words")
    page.select_option("#model", "induction")
    assert page.locator("#text").input_value() == "my own words"  # the user's text is never replaced
    page.click("#run")
    notice = page.locator("#model-notice")
    notice.wait_for(state="visible")
    assert "unknown to induction" in notice.text_content() and "(<unk>)" in notice.text_content()
    watched.check_clean()


@pytest.mark.parametrize("path, model, says", [
    ("/", "gpt2", "not available here"),
    ("/", "nope", "no model of that name"),
    ("/generate", "minilm", "an encoder model and this page needs a decoder"),
    ("/seq2seq", "lm", "a decoder model and this page needs an encoder-decoder"),
    ("/training", "nope", "no training log of that name"),
])
def test_a_link_naming_a_model_the_page_cannot_run_says_so(watched, path, model, says):
    page = watched.goto(path, model=model)
    notice = page.locator("#model-notice")
    notice.wait_for(state="visible")
    text = notice.text_content()
    assert f"\u201c{model}\u201d" in text and says in text and "Showing" in text
    assert page.locator("#checkpoint" if path == "/training" else "#model").input_value() != model


def test_generation_labels_the_prompt_from_the_first_token_and_stop_leaves_a_complete_view(watched):
    # press Stop the moment the first token's chip appears (in the page: a small model streams fast)
    watched.page.add_init_script("""document.addEventListener('DOMContentLoaded', () => {
      new MutationObserver((_, obs) => {
        if (document.querySelector('#chips .chip')) { obs.disconnect(); document.getElementById('stop').click(); }
      }).observe(document.getElementById('chips'), { childList: true });
    });""")
    page = watched.goto("/generate", model="lm", prompt="It is a truth universally acknowledged",
                        max_new_tokens=200)
    page.wait_for_function("() => document.getElementById('trace-info').textContent.includes('stopped by the user')")
    watched.wait_plot("#step-attention")
    ticks = page.evaluate("() => document.getElementById('step-attention').layout.xaxis.ticktext")
    assert ticks and not any(t in ("p0", "p1") for t in ticks)  # the prompt's own tokens, not placeholders
    title = page.evaluate("() => document.getElementById('step-attention').layout.title.text")
    assert title.startswith("Attention of the last context token") and "it predicts" in title
    n = page.locator("#chips .chip").count()
    assert n < 200 and page.locator("#step").get_attribute("max") == str(n - 1)
    watched.check_clean()


def test_training_opens_seq2seq_on_its_telling_head_with_a_results_table(watched):
    page = watched.goto("/training", model="seq2seq")
    watched.wait_plot("#snapshot", timeout=60_000)
    assert [page.locator(f"#{k}").input_value() for k in ("kind", "layer", "head")] == ["cross", "1", "3"]
    names = page.evaluate("() => document.getElementById('curves').data.map(t => t.name)")
    assert "grad norm" in names
    rows = dict(page.eval_on_selector_all("#results tbody tr",
                                          "rs => rs.map(r => [...r.cells].map(c => c.textContent))"))
    assert rows["exact match reverse"] == "0.992" and "config" not in rows
    watched.check_clean()


def test_head_types_score_cross_attention_with_a_colour_bar_per_panel(watched):
    page = watched.goto("/heads", model="seq2seq")
    watched.wait_plot("#head-types", timeout=60_000)
    assert "cross" in page.eval_on_selector_all("#kind option", "os => os.map(o => o.value)")
    page.select_option("#kind", "cross")
    page.wait_for_function("() => document.getElementById('head-types').data.length === 5")
    bars = page.evaluate("() => document.getElementById('head-types').data.map(t => [t.name, t.colorbar.title.text])")
    assert dict(bars)["entropy"] == "nats" and dict(bars)["mean_offset"] == "tokens"
    assert page.locator("#head-types .colorbar").count() == 5  # one drawn beside each panel
    assert page.locator("#rollout-panel").is_hidden()  # rollout composes self-attention only
    watched.check_clean()


LUMINANCE = """() => [...document.querySelectorAll('#grid canvas[data-loaded]')].map(c => {
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let s = 0; for (let i = 0; i < d.length; i += 4) s += d[i] + d[i + 1] + d[i + 2];
  return [c.parentNode.dataset.layer + ':' + c.parentNode.dataset.head, s / (d.length / 4)];
})"""


def test_explorer_offers_one_scale_for_all_thumbnails_and_a_colour_legend(watched):
    page = watched.goto("/", model="minilm")
    page.wait_for_function("() => document.querySelectorAll('#grid canvas[data-loaded]').length >= 24", timeout=60_000)
    assert "its own maximum" in page.locator("#thumb-note").text_content()
    own = dict(page.evaluate(LUMINANCE))
    page.check("#shared-scale")
    shared = dict(page.evaluate(LUMINANCE))
    common = set(own) & set(shared)
    # weight/1 is never brighter than weight/max: every thumbnail darkens or stays, most heads darken
    assert all(shared[k] <= own[k] + 1e-6 for k in common)
    assert sum(shared[k] < own[k] - 1 for k in common) > len(common) // 2
    assert watched.state()["shared"] == "1"
    assert page.locator("#colour-legend").is_hidden()
    page.select_option("#colour-by", "previous_token")
    legend = page.locator("#colour-legend")
    assert legend.is_visible() and page.locator("#legend-lo").text_content().startswith("previous token: ")
    lo = float(page.locator("#legend-lo").text_content().split(": ")[1])
    hi = float(page.locator("#legend-hi").text_content())
    labels = [float(t) for t in page.eval_on_selector_all("#grid .thumb .score", "els => els.map(e => e.textContent)")]
    assert min(labels) == pytest.approx(lo, abs=0.006) and max(labels) == pytest.approx(hi, abs=0.006)
    watched.check_clean()


def test_positional_disables_sizes_a_scheme_ignores_and_never_exports_a_stale_scheme(watched):
    page = watched.goto("/positional", scheme="alibi")
    watched.wait_plot("#scheme-figures .chart")
    assert page.locator("#d_model").is_disabled() and page.locator("#n_heads").is_enabled()
    page.select_option("#scheme", "sinusoidal")
    watched.wait_plot("#scheme-figures .chart[data-figure]")
    assert page.locator("#n_heads").is_disabled() and page.locator("#d_model").is_enabled()
    # learned is seeded: two Shows draw the same table
    page.select_option("#scheme", "learned")
    watched.wait_plot("#scheme-figures .chart")
    first = page.evaluate("() => document.querySelector('#scheme-figures .chart').data[0].z[3].slice(0, 4)")
    page.click("#run")
    page.wait_for_timeout(300)
    watched.wait_plot("#scheme-figures .chart")
    assert page.evaluate("() => document.querySelector('#scheme-figures .chart').data[0].z[3].slice(0, 4)") == first
    # a Show that fails (RoPE cannot rotate an odd head dimension) leaves nothing to export
    page.select_option("#scheme", "rope")
    watched.wait_plot("#scheme-figures .chart[data-figure='rotations']")
    page.fill("#d_model", "40")
    page.click("#run")
    page.locator("#error").wait_for(state="visible")
    assert "even head dimension" in page.locator("#error").text_content()
    downloads = []
    page.on("download", lambda d: downloads.append(d))
    page.click("#export-scheme-json")
    page.wait_for_timeout(500)
    assert downloads == [] and page.locator("#scheme-figures .chart").count() == 0


def test_explorer_opens_the_encoder_decoder_on_its_cross_attention_head(watched):
    page = watched.goto("/", model="seq2seq")
    watched.wait_plot("#heatmap", timeout=60_000)
    assert page.locator("#text").input_value() == SEQ2SEQ_DEFAULT
    assert page.locator("#head-title").text_content().endswith("cross layer 1, head 3")
    options = page.eval_on_selector_all("#colour-by option", "os => os.map(o => o.value)")
    assert "entropy" in options and "previous_token" not in options  # cross-attention's own scores
    page.select_option("#kind", "encoder")
    page.wait_for_function("() => [...document.querySelectorAll('#colour-by option')].some(o => o.value === "
                           "'previous_token')")
    watched.check_clean()
