"""Pages and figures without a browser: figure functions, HTML pages, figure/training endpoints.

Uses a tiny from-scratch decoder saved to a temporary zoo (with a training log and
attention snapshots written by the real Trainer), never the bundled pretrained models.
"""

from __future__ import annotations

import json
import math
import re
from html.parser import HTMLParser

import plotly.graph_objects as go
import pytest
import torch
from fastapi.testclient import TestClient

from attnlab.core.settings import Settings
from attnlab.main import create_app
from attnlab.models import PRESETS, build_model, make_positional, preset
from attnlab.models.introspection import describe_architecture
from attnlab.models.registry import Registry, zoo_entries
from attnlab.web import figures
from attnlab.web.pages import VIEWS, _plotly_source, plotly_needs

TEXT = "the cat sat on the mat. the cat sat on the mat."


# ----------------------------------------------------------------------------- figure functions


def describe(scheme: str, **kw) -> dict:
    extra = {"causal": True} if scheme == "alibi" else {}
    return make_positional(scheme, d_model=32, n_heads=4, max_positions=64, **extra, **kw).describe(64)


def test_positional_figures_have_their_traces():
    fig = figures.positional_matrix(describe("sinusoidal"))
    assert isinstance(fig, go.Figure) and fig.data[0].type == "heatmap"
    assert len(fig.data[0].z) == 64 and len(fig.data[0].z[0]) == 32
    rope = figures.rope_rotations(describe("rope"))
    assert [t.type for t in rope.data] == ["heatmap", "scatter"]
    assert len(figures.alibi_biases(describe("alibi")).data) == 4  # one line per head
    assert figures.t5_buckets(describe("t5_relative")).data[0].line.shape == "hv"
    sim = figures.positional_similarity({s: describe(s) for s in ("sinusoidal", "rope", "alibi", "none")})
    assert [t.name for t in sim.data] == ["sinusoidal", "rope", "alibi", "none"]
    assert set(sim.data[-1].y) == {1.0}  # "none": no position signal, every offset looks like offset 0
    # one colour per scheme, the same in the similarity and the extrapolation charts
    assert len({t.line.color for t in sim.data}) == 4
    with pytest.raises(ValueError, match="rotations"):
        figures.rope_rotations(describe("sinusoidal"))


def test_extrapolation_curve_reads_the_lab_results():
    lab = {"train_len": 64, "table": {"rope": {"perplexity": {"128": 6.7, "64": 6.6}},
                                      "learned": {"perplexity": {"64": 8.3, "128": None}}}}
    fig = figures.extrapolation_curve(lab)
    assert [t.name for t in fig.data] == ["rope", "learned"] and list(fig.data[1].y) == [8.3, None]
    assert list(fig.data[0].x) == [64, 128]  # sorted by length
    assert fig.layout.yaxis.title.text == "perplexity"
    assert list(fig.layout.xaxis.tickvals) == [64, 128]
    # the label sits at the training length on the log axis, not at 10^64
    assert fig.layout.annotations[0].x == pytest.approx(math.log10(64))


def test_benchmark_profile_training_heads_and_bars():
    rows = [{"backend": b, "seq_len": t, "median_ms": t / 10, "peak_memory_bytes": t * 2**20}
            for b in ("math", "sdpa", "flash") for t in (64, 128)]
    bench = figures.benchmark_figure(rows)
    assert len(bench.data) == 6 and bench.layout.xaxis.type == "log" and bench.layout.yaxis.type == "log"
    profile = {"tokens": 8, "components": [{"component": "attention", "forward_ms": 1.0, "backward_ms": 2.0},
                                           {"component": "other", "forward_ms": 0.1, "backward_ms": 0.2}]}
    assert [t.name for t in figures.profile_figure(profile).data] == ["forward", "backward"]
    log = [{"step": i, "loss": 3 - i / 10, "lr": 1e-3} for i in range(1, 6)] + [{"step": 5, "eval_loss": 2.6}]
    curves = figures.training_curves(log)
    assert [t.name for t in curves.data] == ["train loss", "eval loss", "lr"]
    with_grads = figures.training_curves([{**r, "grad_norm": 1.0 + r["step"]} for r in log[:-1]])
    assert [t.name for t in with_grads.data] == ["grad norm", "train loss", "lr"]
    assert list(with_grads.data[0].y) == [2.0, 3.0, 4.0, 5.0, 6.0]
    scores = {"previous_token": [[0.1, 0.9], [0.2, 0.3]], "entropy": [[1.0, 2.0], [0.5, 0.1]]}
    grid = figures.head_type_grids(scores)
    assert len(grid.data) == 2 and grid.data[0].zmax == 1 and grid.data[1].zmax == 2.0  # entropy: 0 to its max


def test_probability_bars_keep_equal_labels_apart_and_match_the_chosen_by_id():
    top = [{"token": "<b>", "token_id": 7, "prob": 0.5}, {"token": "東₁", "token_id": 30679, "prob": 0.3},
           {"token": "東₁", "token_id": 31000, "prob": 0.2}]
    bar = figures.probability_bars(top, chosen_id=31000).data[0]
    assert list(bar.y) == [0, 1, 2]  # one row per rank: equal labels stay two bars
    layout = figures.probability_bars(top, chosen_id=31000).layout
    assert list(layout.yaxis.ticktext) == ["&lt;b&gt;", "東₁", "東₁"] and list(layout.yaxis.tickvals) == [0, 1, 2]
    assert [c == figures.PALETTE[1] for c in bar.marker.color] == [False, False, True]


def test_rollout_axes_are_positions_with_escaped_labels():
    fig = figures.rollout_figure([[1.0, 0.0], [0.5, 0.5]], ["<script>alert(1)</script>", "<script>alert(1)</script>"])
    assert list(fig.data[0].x) == [0, 1] and list(fig.data[0].y) == [0, 1]  # repeated labels never merge
    assert list(fig.layout.xaxis.ticktext) == ["&lt;script&gt;alert(1)&lt;/script&gt;"] * 2
    assert fig.data[0].text[1][0].startswith('query 1 "&lt;script&gt;')


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_architecture_parameter_count_is_exact(name):
    cfg = PRESETS[name]
    arch = describe_architecture(cfg.family, cfg.to_dict(), context=64)
    assert arch["total_params"] == build_model(cfg).num_parameters()
    assert figures.architecture_figure(arch).data[0].type == "bar"


# ----------------------------------------------------------------------------- the app


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from attnlab.models.tokenization import CharTokenizer
    from attnlab.models.training import Probe, TrainConfig, Trainer, lm_batches

    zoo = tmp_path_factory.mktemp("zoo")
    tok = CharTokenizer.from_corpus(TEXT + "<>\"'&")
    cfg = preset("tiny", family="decoder", vocab_size=tok.vocab_size, d_model=16, n_layers=2, n_heads=2,
                 max_positions=128)
    torch.manual_seed(0)
    trainer = Trainer(build_model(cfg), TrainConfig(steps=4, warmup=1, log_every=1, snapshot_every=2,
                                                    progress=False, backend="math"),
                      lm_batches(torch.tensor(tok.encode(TEXT * 4)), 16, 2, "clm"), out_dir=zoo / "tiny",
                      tokenizer=tok, probes=[Probe.from_text("probe", "the cat sat", tok)])
    trainer.train()
    settings = Settings(preload=False, zoo_dir=zoo)
    app = create_app(settings, registry=Registry(zoo_entries(zoo)))
    with TestClient(app) as c:
        yield c


class ScriptCheck(HTMLParser):
    """Collects <script> tags, their bodies and any on* attributes."""

    def __init__(self):
        super().__init__()
        self.scripts: list[dict] = []
        self.bodies: list[str] = []
        self.handlers: list[str] = []
        self.nav_links: list[str] = []
        self._in_script = False
        self._in_nav = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.handlers += [k for k in attrs if k.startswith("on")]
        if tag == "script":
            self.scripts.append(attrs)
            self._in_script = True
        if tag == "nav":
            self._in_nav = True
        if tag == "a" and self._in_nav:
            self.nav_links.append(attrs["href"])

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False
        if tag == "nav":
            self._in_nav = False

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.bodies.append(data)


@pytest.mark.parametrize("view", VIEWS, ids=[v.name for v in VIEWS])
def test_page_is_html_with_nav_and_no_inline_script(client, view):
    r = client.get(view.path)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    check = ScriptCheck()
    check.feed(r.text)
    assert not check.bodies, "inline <script> bodies"
    assert not check.handlers, "inline event handlers"
    assert all(s.get("src", "").startswith("/static/") for s in check.scripts)
    assert f"/static/js/{view.name}.js" in [s["src"] for s in check.scripts]
    assert set(check.nav_links) >= {v.path for v in VIEWS}
    assert "http://" not in r.text and "https://" not in r.text  # no remote origin
    csp = r.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert 'aria-current="page"' in r.text


def test_every_view_has_its_module_and_plotly_needs_are_found(client):
    for view in VIEWS:
        assert client.get(f"/static/js/{view.name}.js").status_code == 200
    css = client.get("/assets/plotly.css")
    assert css.status_code == 200 and ".js-plotly-plot .plotly" in css.text
    needs = plotly_needs(_plotly_source())
    assert len(needs.style_attr_hashes) == 2 and needs.extra_css
    for guard in needs.extra_css:
        assert client.get(f"/assets/plotly-extra/{guard}.css").status_code == 200
    assert client.get("/assets/plotly-extra/nope.css").status_code == 404


def test_figure_endpoints(client):
    figure = {"format": "figure"}
    r = client.get("/api/positional/rope", params={"d_model": 32, "max_len": 32, "n_heads": 4, **figure})
    assert r.status_code == 200 and set(r.json()["figures"]) == {"rotations"}
    assert r.json()["rotations"] is not None  # the data the figures were drawn from travels with them
    assert client.get("/api/positional/nope", params=figure).status_code == 422
    assert client.get("/api/positional/rope", params={"d_model": 30, "n_heads": 4, **figure}).status_code == 422
    sim = client.get("/api/figures/similarity", params={"d_model": 32, "max_len": 32, "n_heads": 4}).json()
    assert len(sim["figure"]["data"]) == 6  # every scheme (issue 12)
    assert client.get("/api/figures/extrapolation").json()["available"] is False
    run = client.post("/api/runs", json={"model": "tiny", "text": "the cat sat"}).json()
    heads = client.get(f"/api/figures/heads/{run['run_id']}").json()
    assert len(heads["figure"]["data"]) == len(heads["scores"]) >= 5
    arch = client.get("/api/figures/architecture/tiny").json()
    assert arch["architecture"]["total_params"] == arch["architecture"]["model"]["n_params"]
    prof = client.get("/api/figures/profile/tiny", params={"tokens": 8}).json()
    assert {c["component"] for c in prof["profile"]["components"]} >= {"attention", "feed_forward"}
    assert client.get("/api/figures/profile/tiny", params={"tokens": 4096}).status_code == 422
    assert client.get("/api/figures/architecture/nope").status_code == 404


def test_training_endpoints(client):
    assert client.get("/api/training").json() == [{"name": "tiny", "snapshots": True}]
    info = client.get("/api/training/tiny").json()
    assert [r["step"] for r in info["log"] if "loss" in r] == [1, 2, 3, 4]
    assert info["snapshots"]["steps"] == [0, 2, 4]
    snaps = client.get("/api/training/tiny/snapshots", params={"probe": "probe", "kind": "decoder", "layer": 1,
                                                                 "head": 1}).json()
    assert snaps["steps"] == [0, 2, 4] and len(snaps["maps"]) == 3 and len(snaps["maps"][0]) == len("the cat sat")
    for row in snaps["maps"][-1]:
        assert abs(sum(row) - 1) < 1e-2
    assert client.get("/api/training/..%2F..%2Fetc").status_code == 404
    assert client.get("/api/training/missing").status_code == 404
    assert client.get("/api/training/tiny/snapshots", params={"probe": "nope"}).status_code == 422
    assert client.get("/api/training/tiny/snapshots", params={"probe": "probe", "layer": 9}).status_code == 422


def test_page_csp_hashes_match_plotly_style_values():
    text = _plotly_source().read_text()
    decl = json.loads(re.search(r"CSS_DECLARATIONS=(\[\[.*?\]\]);", text).group(1))
    assert decl and all(len(d) == 2 for d in decl)
