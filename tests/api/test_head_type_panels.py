"""Head types: each panel has its own colour bar, beside it, in its own unit; cross-attention of an
encoder-decoder gets the scores that apply to two sequences, equal to the ones computed from its dense maps."""

from __future__ import annotations

import numpy as np

from attnlab.models.analysis import CROSS_SCORES
from attnlab.web import figures


def test_each_panel_has_its_own_colour_bar_and_unit():
    scores = {"previous_token": [[0.1, 0.9], [0.2, 0.3]], "mean_offset": [[0.5, -3.0], [1.0, 2.0]],
              "entropy": [[1.0, 2.0], [0.5, 0.1]], "diagonality": [[0.4, 0.2], [0.1, 0.0]],
              "induction": [[0.0, 0.1], [0.7, 0.2]]}
    fig = figures.head_type_grids(scores)
    units = {t.name: t.colorbar.title.text for t in fig.data}
    assert units == {"previous_token": "weight", "mean_offset": "tokens", "entropy": "nats", "diagonality": "weight",
                     "induction": "weight"}
    assert all(t.showscale for t in fig.data)
    offset = next(t for t in fig.data if t.name == "mean_offset")
    assert (offset.zmin, offset.zmax) == (-3.0, 3.0)  # signed, centred on 0
    # each bar sits right of its own panel and left of the next one in its row, level with its panel
    for i, trace in enumerate(fig.data):
        axes = fig.get_subplot(i // 4 + 1, i % 4 + 1)
        assert axes.xaxis.domain[1] < trace.colorbar.x
        if i % 4 < 3 and i + 1 < len(fig.data):
            assert trace.colorbar.x < fig.get_subplot(i // 4 + 1, i % 4 + 2).xaxis.domain[0]
        assert axes.yaxis.domain[0] < trace.colorbar.y < axes.yaxis.domain[1]


def test_cross_attention_scores_equal_the_dense_maps(client):
    text = "abcdef"
    run = client.post("/api/runs", json={"model": "tiny-t5", "text": text}).json()
    heads = client.get(f"/api/runs/{run['run_id']}/heads").json()["scores"]
    assert set(heads["cross"]) == set(CROSS_SCORES)
    dense = client.post("/api/attention", json={"model": "tiny-t5", "text": text}).json()["cross"]
    w = np.asarray(dense["attention"], dtype=np.float64)  # (L, H, Tq, Tk)
    assert np.allclose(heads["cross"]["first_token_sink"], w[..., 0].mean(-1), atol=1e-4)
    entropy = -(w * np.log(np.where(w > 0, w, 1))).sum(-1).mean(-1)
    assert np.allclose(heads["cross"]["entropy"], entropy, atol=1e-3)
    figure = client.get(f"/api/figures/heads/{run['run_id']}?kind=cross")
    assert figure.status_code == 200
    assert [t["name"] for t in figure.json()["figure"]["data"]] == list(CROSS_SCORES)

