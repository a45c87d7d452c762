"""The Training page's comparisons in Debian's chromium: shipped runs overlaid with their captions and claims,
the gradient-checkpointing table, fill-mask and the causal vs masked objectives on the zoo's real lm and mlm.
Served by the real app (uvicorn in a thread) over the shipped zoo; what the page shows is checked against the
shipped files and the API's own answers; no console error, no CSP violation, tokens as text."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlencode, urlparse

import pytest

from attnlab.models.paths import ZOO

pytestmark = pytest.mark.browser

if not all((ZOO / name / "results.json").exists() for name in ("lm", "mlm", "stability", "checkpointing")):
    pytest.skip("needs the shipped lm, mlm, stability and checkpointing results", allow_module_level=True)

XSS = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def server(tmp_path_factory, serve):
    from attnlab.main import create_app
    from attnlab.models.registry import Registry, zoo_entries
    from tests.support import make_settings

    registry = Registry([e for e in zoo_entries(ZOO) if e.id in ("lm", "mlm")])
    settings = make_settings(zoo_dir=ZOO, data_dir=tmp_path_factory.mktemp("data"), log_level="WARNING")
    with serve(create_app(settings, registry=registry)) as base:
        yield base


# the browser, the context and the module's watched ``page`` (errors, base): tests/browser/conftest.py


def wait_plot(page, selector: str, traces: int = 1, timeout: float = 60_000) -> None:
    page.wait_for_function(
        "([sel, n]) => { const el = document.querySelector(sel); return el && el.data && el.data.length >= n "
        "&& el.querySelector('.main-svg'); }", arg=[selector, traces], timeout=timeout)


def state(page) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlparse(page.url).query).items()}


def clean(page) -> None:
    assert page.locator("#error").is_hidden(), page.locator("#error").text_content()
    assert not page.errors, page.errors


def test_runs_overlay_captions_and_claims(page):
    stability = json.loads((ZOO / "stability" / "results.json").read_text())
    ids = ["stability.post_nowarmup_high", "stability.post_warmup_high"]
    page.goto(f"{page.base}/training?{urlencode({'runs': ','.join(ids), 'metric': 'loss'})}")
    wait_plot(page, "#runs-chart", 2)
    names = page.evaluate("() => document.getElementById('runs-chart').data.map(t => t.name)")
    labels = {r["name"]: r["label"] for r in stability["runs"]}
    assert f"stability: {labels['post_nowarmup_high']}" in names and f"stability: {labels['post_warmup_high']}" in names
    steps = page.evaluate("() => document.getElementById('runs-chart').data[0].x.length")
    assert steps == len(stability["runs"][0]["step"])
    captions = page.locator("#run-captions li").all_text_contents()
    assert len(captions) == 2 and captions[0].startswith(labels["post_nowarmup_high"])
    claims = page.locator("#lab-claims li").all_text_contents()
    assert len(claims) == len(stability["claims"])
    for claim in stability["claims"].values():
        verdict = "held" if claim["holds"] else "did not hold"
        assert f"stability: {verdict}: {claim['claim']}" in claims
    # per-layer gradient norms of the first picked run: one line per layer
    page.select_option("#metric", "layers")
    page.wait_for_function("() => new URLSearchParams(location.search).get('metric') === 'layers'")
    wait_plot(page, "#runs-chart", stability["setup"]["model"]["n_layers"])
    assert page.evaluate("() => document.getElementById('runs-chart').data.length") == \
        stability["setup"]["model"]["n_layers"]
    assert state(page)["runs"] == ",".join(ids)
    # the gradient-checkpointing table: one row per measured model, as shipped
    table = json.loads((ZOO / "checkpointing" / "results.json").read_text())
    page.wait_for_selector("#ckpt-panel:not([hidden])")
    wait_plot(page, "#ckpt-chart", 4)
    cells = page.locator("#ckpt-table tbody tr").first.locator("td").all_text_contents()
    assert cells[0] == table["rows"][0]["model"] and cells[4] == f"{table['rows'][0]['peak_without_mib']:.1f}"
    assert page.locator("#ckpt-table tbody tr").count() == len(table["rows"])
    clean(page)


def test_fill_mask_and_the_two_objectives(page):
    page.goto(f"{page.base}/training")
    page.wait_for_selector("#objectives-panel:not([hidden])")
    page.wait_for_selector("#fill-model option[value='mlm']", state="attached")
    text = f"I do not [MASK] what {XSS} you mean."
    page.fill("#fill-text", text)
    page.click("#fill-run")
    page.wait_for_selector("#fill-results ol li")
    answer = page.evaluate("""async (text) => (await fetch('/api/fill-mask', {method: 'POST',
        headers: {'content-type': 'application/json'}, body: JSON.stringify({model: 'mlm', text, k: 5})})).json()""",
                           text)
    shown = page.locator("#fill-results ol li").all_text_contents()
    assert [s.split("  ")[0] for s in shown] == [g["token"] for g in answer["masks"][0]["top"]]
    wait_plot(page, "#fill-attention")
    row = page.evaluate("() => document.getElementById('fill-attention').data[0].y")
    assert len(row) == len(answer["tokens"]) and sum(row) == pytest.approx(1, abs=1e-3)
    ticks = page.eval_on_selector_all("#fill-attention .xtick text", "els => els.map(e => e.textContent)")
    assert "<" in "".join(ticks)  # the typed markup is a token label, shown as text
    # causal vs masked on one text; clicking a token's row compares at that token
    page.click("#obj-run")
    wait_plot(page, "#obj-clm-chart")
    wait_plot(page, "#obj-mlm-chart")
    n = page.locator("#obj-table tbody tr").count()
    assert n > 5
    clm = page.evaluate("() => document.getElementById('obj-clm-chart').data[0].y")
    assert all(v == 0 for v in clm[5:])  # query 4 of a causal model sees tokens 0..4 only
    page.locator("#obj-table tbody tr").nth(3).click()
    page.wait_for_function("() => document.getElementById('obj-note').textContent.startsWith('Token 3 ')")
    assert page.locator("#obj-table tbody tr.selected td").first.text_content() == "3"
    assert "Jane Austen" in page.locator("#corpus-note").text_content()
    assert page.locator("img[src='x']").count() == 0
    clean(page)
