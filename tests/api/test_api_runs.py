"""Runs: content-hash ids, exact tiles and pooled overviews equal to the dense map, binary formats."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fastapi.testclient import TestClient

from attnlab.main import create_app
from attnlab.models.labels import show_text
from tests.support import make_settings, meta_of, tiny_registry

TEXT = "abc abc abc, the quick brown fox jumps over the lazy dog"
LABELS = [show_text(c) for c in TEXT]  # char tokenizer: one label per character, spaces as ·


@pytest.fixture(scope="module")
def run(client):
    r = client.post("/api/runs", json={"model": "tiny-gpt", "text": TEXT, "backend": "flash"})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def dense(client):
    body = client.post("/api/attention", json={"model": "tiny-gpt", "text": TEXT, "backend": "flash"}).json()
    return np.asarray(body["attention"])  # (L, H, T, T)


def test_run_response(client, run):
    assert len(run["run_id"]) == 32 and run["kinds"] == ["decoder"]
    assert run["n_layers"] == 2 and run["n_heads"] == 4 and run["n_tokens"] == len(TEXT)
    assert set(run["head_stats"]["decoder"]) >= {"previous_token", "induction", "entropy"}
    assert np.asarray(run["head_stats"]["decoder"]["entropy"]).shape == (2, 4)
    again = client.post("/api/runs", json={"model": "tiny-gpt", "text": TEXT, "backend": "flash"}).json()
    assert again["run_id"] == run["run_id"] and again["cached"] is True
    other = client.post("/api/runs", json={"model": "tiny-gpt", "text": TEXT, "backend": "math"}).json()
    assert other["run_id"] != run["run_id"]


def test_whole_map_and_tiles_equal_dense(client, run, dense):
    rid = run["run_id"]
    whole = client.get(f"/api/runs/{rid}/attention", params={"layer": 1, "head": 2}).json()
    np.testing.assert_allclose(np.asarray(whole["attention"]), dense[1, 2], atol=1e-5)
    assert whole["row_tokens"] == LABELS and whole["factor"] == 1
    tile = client.get(f"/api/runs/{rid}/attention", params={"layer": 0, "head": 3, "rows": "10:20", "cols": "3:17"})
    body = tile.json()
    assert body["shape"] == [10, 14] and body["rows"] == [10, 20] and body["cols"] == [3, 17]
    assert body["row_tokens"] == LABELS[10:20] and body["col_tokens"] == LABELS[3:17]
    np.testing.assert_allclose(np.asarray(body["attention"]), dense[0, 3, 10:20, 3:17], atol=1e-5)


@pytest.mark.parametrize("mode", ["max", "mean"])
def test_pooled_overview_equals_pooling_of_dense(client, run, dense, mode):
    rid = run["run_id"]
    body = client.get(f"/api/runs/{rid}/attention", params={"layer": 1, "head": 0, "pool": 8, "pool_mode": mode}).json()
    factor = body["factor"]
    assert factor == int(np.ceil(len(TEXT) / 8)) and body["row_tokens"] is None
    x = torch.from_numpy(dense[1, 0]).float()[None, None]
    if mode == "max":
        ref = F.max_pool2d(x, factor, ceil_mode=True)[0, 0]
    else:
        total = F.avg_pool2d(x, factor, ceil_mode=True, divisor_override=1)
        count = F.avg_pool2d(torch.ones_like(x), factor, ceil_mode=True, divisor_override=1)
        ref = (total / count)[0, 0]
    np.testing.assert_allclose(np.asarray(body["attention"]), ref.numpy(), atol=1e-5)


def test_pooled_region(client, run, dense):
    rid = run["run_id"]
    body = client.get(f"/api/runs/{rid}/attention",
                      params={"layer": 0, "head": 1, "rows": "5:50", "cols": "2:40", "pool": 10}).json()
    factor = body["factor"]
    assert factor == 5 and body["shape"] == [9, 8] and body["rows"] == [5, 50]
    x = torch.from_numpy(dense[0, 1, 5:50, 2:40]).float()[None, None]
    np.testing.assert_allclose(np.asarray(body["attention"]), F.max_pool2d(x, factor, ceil_mode=True)[0, 0].numpy(),
                               atol=1e-6)


def test_binary_formats(client, run, dense):
    rid = run["run_id"]
    params = {"layer": 0, "head": 1, "rows": "0:30", "cols": "0:30"}
    f16 = client.get(f"/api/runs/{rid}/attention", params={**params, "format": "f16"})
    assert f16.headers["content-type"] == "application/octet-stream" and f16.headers["X-Dtype"] == "float16"
    assert f16.headers["X-Shape"] == "30,30" and len(f16.content) == 30 * 30 * 2
    w16 = np.frombuffer(f16.content, dtype="<f2").reshape(30, 30)
    np.testing.assert_allclose(w16.astype(np.float32), dense[0, 1, :30, :30], atol=1e-3)
    assert meta_of(f16)["row_tokens"] == LABELS[:30]

    u8 = client.get(f"/api/runs/{rid}/attention", params={**params, "format": "u8"})
    scale = float(u8.headers["X-Scale"])
    assert u8.headers["X-Dtype"] == "uint8" and len(u8.content) == 30 * 30
    assert meta_of(u8)["scale"] == pytest.approx(scale)
    w8 = np.frombuffer(u8.content, dtype=np.uint8).reshape(30, 30).astype(np.float64) * scale
    assert np.abs(w8 - dense[0, 1, :30, :30]).max() <= scale / 2 + 1e-6


def test_meta_header_is_bounded(client):
    """X-Attnlab-Meta stays under META_MAX_BYTES (Node's parser refuses 16 KiB of headers, proxies 4-8 KiB): a big
    tile's meta leaves its per-token labels out and says where they are; a small tile's keeps them."""
    from attnlab.api.transport import META_MAX_BYTES

    text = "the quick brown fox " * 60  # 1,200 tokens
    big = client.post("/api/runs", json={"model": "tiny-gpt", "text": text}).json()
    for fmt in ("f16", "u8"):
        r = client.get(f"/api/runs/{big['run_id']}/attention", params={"rows": "0:1200", "cols": "0:1200",
                                                                        "format": fmt})
        assert r.status_code == 200, r.text
        assert len(r.headers["X-Attnlab-Meta"]) <= META_MAX_BYTES
        assert sum(len(k) + len(v) for k, v in r.headers.items()) < META_MAX_BYTES + 1024
        meta = meta_of(r)
        assert "row_tokens" not in meta and "col_tokens" not in meta
        assert meta["omitted"] == ["row_tokens", "col_tokens"] and "format=json" in meta["omitted_from"]
        assert meta["rows"] == [0, 1200] and meta["shape"] == [1200, 1200] and meta["factor"] == 1
    small = client.get(f"/api/runs/{big['run_id']}/attention", params={"rows": "5:9", "cols": "0:4", "format": "u8"})
    meta = meta_of(small)
    assert meta["row_tokens"] == big["tokens"][5:9] and meta["col_tokens"] == big["tokens"][:4]
    assert "omitted" not in meta


def test_heads_and_rollout(client, run):
    rid = run["run_id"]
    heads = client.get(f"/api/runs/{rid}/heads").json()
    assert heads["scores"]["decoder"] == run["head_stats"]["decoder"]
    roll = client.get(f"/api/runs/{rid}/rollout").json()
    t = len(TEXT)
    assert roll["shape"] == [2, t, t] and roll["tokens"] == LABELS
    rollout = np.asarray(roll["rollout"])
    np.testing.assert_allclose(rollout.sum(-1), 1.0, atol=1e-4)  # rollout of row-stochastic maps stays so
    assert np.asarray(roll["flow"]).shape == (2, t, t)


def test_head_scores_of_long_runs_are_bounded(one_thread):
    app = create_app(make_settings(head_stats_max_tokens=4, head_stats_max_cells=1000), registry=tiny_registry())
    with TestClient(app) as c:
        run = c.post("/api/runs", json={"model": "tiny-gpt", "text": "abcdefghijklmnop"}).json()
        assert run["head_stats"] is None  # over head_stats_max_tokens: not computed inline
        r = c.get(f"/api/runs/{run['run_id']}/heads")
    assert r.status_code == 413 and "head_stats_max_cells 1,000" in r.json()["detail"]


def test_encoder_decoder_run(client):
    body = client.post("/api/runs", json={"model": "tiny-t5", "text": "hello there"}).json()
    assert body["kinds"] == ["encoder", "decoder", "cross"] and body["target_tokens"]
    cross = client.get(f"/api/runs/{body['run_id']}/attention", params={"kind": "cross", "layer": 1, "head": 0}).json()
    assert cross["shape"] == [len(body["target_tokens"]), len("hello there")]
    assert cross["col_tokens"] == [show_text(c) for c in "hello there"]
    assert client.get(f"/api/runs/{body['run_id']}/rollout", params={"kind": "cross"}).status_code == 422


def test_unknown_run_says_post_again(client):
    r = client.get(f"/api/runs/{'0' * 32}/attention")
    assert r.status_code == 404 and "POST /api/runs" in r.json()["detail"]


def test_cache_evicts_by_bytes(one_thread):
    # one run of ~60 tokens holds 2 layers x (q, k, lse) = 2 * 60 * (32 + 32 + 4) * 4 bytes ~ 33 KB
    app = create_app(make_settings(run_cache_bytes=80_000), registry=tiny_registry())
    with TestClient(app) as c:
        ids, tiles = [], []
        for i in range(4):
            ids.append(c.post("/api/runs", json={"model": "tiny-gpt", "text": f"{i} " + "x" * 60}).json()["run_id"])
            tiles.append(c.get(f"/api/runs/{ids[-1]}/attention", params={"layer": 1, "format": "f16"}).content)
        assert app.state.services.runs.cache.get(ids[0]) is None  # evicted, oldest first
        # an evicted run is recomputed from its request in the run store: the same bytes as before
        again = c.get(f"/api/runs/{ids[0]}/attention", params={"layer": 1, "format": "f16"})
        assert again.status_code == 200 and again.content == tiles[0]
        assert app.state.services.runs.restored == 1
        assert app.state.services.runs.cache.nbytes <= 80_000
        assert "attnlab_run_cache_evictions" in c.get("/api/metrics").text
        too_big = c.post("/api/runs", json={"model": "tiny-gpt", "text": "y" * 1000})
        assert too_big.status_code == 413 and "run_cache_bytes" in too_big.json()["detail"]


@pytest.mark.parametrize("model,text", [("tiny-t5", "hello there"), ("tiny-bert", "a b c d e f")])
def test_dense_equals_tiles_for_biases_and_cross(client, model, text):
    """The fused dense path and the recorder's tiles agree (T5 buckets, cross-attention, learned)."""
    dense = client.post("/api/attention", json={"model": model, "text": text}).json()
    run = client.post("/api/runs", json={"model": model, "text": text}).json()
    parts = {k: dense[k] for k in run["kinds"]} if model == "tiny-t5" else {"encoder": dense}
    for kind, part in parts.items():
        weights = np.asarray(part["attention"])
        for layer in range(weights.shape[0]):
            for head in range(weights.shape[1]):
                tile = client.get(f"/api/runs/{run['run_id']}/attention",
                                  params={"kind": kind, "layer": layer, "head": head}).json()
                np.testing.assert_allclose(np.asarray(tile["attention"]), weights[layer, head], atol=1e-5)
