"""GET /api/runs/{id}/computation and /qk, weighting=value_norm tiles, and runs that keep V, over the tiny
models of every family (decoder with RoPE, encoder with learned positions, T5-style encoder-decoder)."""

from __future__ import annotations

import numpy as np
import pytest

TEXT = "The cat sat on the mat."
MODELS = ["tiny-gpt", "tiny-bert", "tiny-t5"]


def make_run(client, model, values=True, text=TEXT):
    r = client.post("/api/runs", json={"model": model, "text": text, "values": values})
    assert r.status_code == 200, r.text
    return r.json()


def tile(client, run_id, **params):
    r = client.get(f"/api/runs/{run_id}/attention", params=params)
    assert r.status_code == 200, r.text
    return np.array(r.json()["attention"], dtype=np.float64)


def test_values_are_part_of_the_run_id(client):
    plain = make_run(client, "tiny-gpt", values=False)
    kept = make_run(client, "tiny-gpt", values=True)
    assert plain["run_id"] != kept["run_id"]
    assert (plain["values"], kept["values"]) == (False, True)
    assert kept["nbytes"] > plain["nbytes"]
    again = make_run(client, "tiny-gpt", values=True)
    assert again["run_id"] == kept["run_id"] and again["cached"]


@pytest.mark.parametrize("model", MODELS)
def test_computation_invariants(client, model):
    run = make_run(client, model)
    for kind in run["kinds"]:
        for layer in range(run["layers_by_kind"][kind]):
            heads_out = []
            for head in range(run["n_heads"]):
                r = client.get(f"/api/runs/{run['run_id']}/computation",
                               params={"kind": kind, "layer": layer, "head": head, "query": 3})
                assert r.status_code == 200, r.text
                c = r.json()
                row = tile(client, run["run_id"], kind=kind, layer=layer, head=head, rows="3:4")[0]
                w = np.array(c["weights"])
                np.testing.assert_allclose(w, row, atol=1e-6, rtol=1e-5)
                assert abs(w.sum() - 1) < 1e-5
                mask = np.array(c["mask"])
                scores = np.array([s if s is not None else -np.inf for s in c["scores"]])
                assert all((s is None) == (not m) for s, m in zip(c["scores"], c["mask"]))
                e = np.exp(scores - scores[mask].max())
                np.testing.assert_allclose(e / e.sum(), w, atol=1e-6)
                bias = np.array(c["bias"]) if c["bias"] is not None else 0.0
                expected = np.array(c["dot"]) * c["scale"] + bias
                np.testing.assert_allclose(scores[mask], expected[mask] if np.ndim(expected) else expected,
                                           rtol=1e-5, atol=1e-5)
                np.testing.assert_allclose(np.array(c["products"]).sum(1), c["dot"], rtol=1e-5, atol=1e-5)
                v = np.array(c["v"])
                np.testing.assert_allclose(w @ v, c["output"], atol=1e-5)
                np.testing.assert_allclose(np.array(c["weighted_v"]).sum(0), c["output"], atol=1e-5)
                assert len(c["key_tokens"]) == len(w) and c["query_token"]
                heads_out.append(c["output_projected"])
                if model == "tiny-gpt":  # RoPE: q before rotation differs from q as used, with the same norm
                    assert not np.allclose(c["q_pre_rotary"], c["q"])
                    np.testing.assert_allclose(np.linalg.norm(c["q_pre_rotary"]), np.linalg.norm(c["q"]), rtol=1e-5)
                else:
                    assert c["q_pre_rotary"] is None
                if model == "tiny-t5" and kind != "cross":
                    assert c["bias"] is not None  # T5 relative bias
            assert np.array(heads_out).shape == (run["n_heads"], 32)


def test_computation_without_values_and_bad_input(client):
    run = make_run(client, "tiny-gpt", values=False)
    c = client.get(f"/api/runs/{run['run_id']}/computation", params={"query": 0}).json()
    assert c["values"] is False and c["v"] is None and c["output"] is None
    assert c["weights"] == [1.0] + [0.0] * (run["n_tokens"] - 1)  # causal: the first query sees itself only
    r = client.get(f"/api/runs/{run['run_id']}/computation", params={"query": run["n_tokens"]})
    assert r.status_code == 422 and r.json()["detail"].startswith("query:")
    r = client.get(f"/api/runs/{run['run_id']}/computation", params={"layer": 2})
    assert r.status_code == 422 and r.json()["detail"].startswith("layer:")
    r = client.get(f"/api/runs/{run['run_id']}/computation", params={"query": -1})
    assert r.status_code == 422 and "query" in r.text
    r = client.get(f"/api/runs/{run['run_id']}/attention", params={"weighting": "value_norm"})
    assert r.status_code == 422 and r.json()["detail"].startswith("values:")
    r = client.get(f"/api/runs/{'0' * 32}/computation")
    assert r.status_code == 404


@pytest.mark.parametrize("model", MODELS)
def test_value_norm_tiles(client, model):
    run = make_run(client, model)
    rid = run["run_id"]
    kind = run["kinds"][-1]
    n = len(client.get(f"/api/runs/{rid}/attention", params={"kind": kind}).json()["attention"])
    raw = tile(client, rid, kind=kind, layer=1, head=2)
    weighted = tile(client, rid, kind=kind, layer=1, head=2, weighting="value_norm")
    c = client.get(f"/api/runs/{rid}/computation", params={"kind": kind, "layer": 1, "head": 2, "query": n - 1}).json()
    expected = np.array(c["weights"]) * np.array(c["value_norms"])
    np.testing.assert_allclose(weighted[n - 1], expected / expected.sum(), atol=1e-5)
    np.testing.assert_allclose(weighted.sum(1), 1, atol=1e-5)
    assert not np.allclose(weighted, raw)
    assert ((weighted > 0) == (raw > 0)).all()  # the same keys, weighted differently
    block = tile(client, rid, kind=kind, layer=1, head=2, weighting="value_norm", rows="1:3", cols="0:2")
    np.testing.assert_allclose(block, weighted[1:3, 0:2], atol=1e-6)
    pooled = client.get(f"/api/runs/{rid}/attention",
                        params={"kind": kind, "layer": 1, "head": 2, "weighting": "value_norm", "pool": 2})
    assert pooled.status_code == 200 and pooled.json()["weighting"] == "value_norm"
    factor = pooled.json()["factor"]
    cells = np.array(pooled.json()["attention"])
    assert abs(cells[0, 0] - weighted[:factor, :factor].max()) < 1e-6
    f16 = client.get(f"/api/runs/{rid}/attention", params={"kind": kind, "layer": 1, "head": 2,
                                                            "weighting": "value_norm", "format": "f16"})
    assert f16.status_code == 200
    np.testing.assert_allclose(np.frombuffer(f16.content, "<f2").reshape(weighted.shape), weighted, atol=1e-3)


def test_qk_geometry(client):
    run = make_run(client, "tiny-t5", values=False)
    rid = run["run_id"]
    r = client.get(f"/api/runs/{rid}/qk", params={"kind": "cross", "layer": 0, "head": 1})
    assert r.status_code == 200, r.text
    p = r.json()
    n_q, n_k = len(run["target_tokens"]), run["n_tokens"]
    assert p["role"] == ["query"] * n_q + ["key"] * n_k
    assert p["token"] == run["target_tokens"] + run["tokens"]
    assert len(p["x"]) == len(p["y"]) == n_q + n_k and p["method"] == "pca"
    xy = np.stack([p["x"], p["y"]], 1)
    assert np.isfinite(xy).all() and xy.std(0).min() > 0
    # PCA of centred points: the mean is the origin, and a second call gives the same map
    np.testing.assert_allclose(xy.mean(0), 0, atol=1e-4)
    assert client.get(f"/api/runs/{rid}/qk", params={"kind": "cross", "layer": 0, "head": 1}).json()["x"] == p["x"]
    r = client.get(f"/api/runs/{rid}/qk", params={"kind": "encoder", "method": "tsne", "seed": 3})
    assert r.status_code == 200 and len(r.json()["x"]) == 2 * n_k
    r = client.get(f"/api/runs/{rid}/qk", params={"method": "mds"})
    assert r.status_code == 422 and "method" in r.text


def test_qk_point_limit():
    from fastapi.testclient import TestClient

    from attnlab.main import create_app
    from tests.support import make_settings, tiny_registry

    app = create_app(make_settings(qk_max_points=10), registry=tiny_registry())
    with TestClient(app, raise_server_exceptions=False) as c:
        rid = make_run(c, "tiny-gpt", values=False)["run_id"]
        r = c.get(f"/api/runs/{rid}/qk", params={"method": "tsne"})
        assert r.status_code == 413 and r.json()["detail"].startswith("method:") and "qk_max_points 10" in r.text
        assert c.get(f"/api/runs/{rid}/qk").status_code == 200  # PCA is not capped


def test_trained_positional_tables_of_the_zoo():
    """The shipped zoo: the seq2seq model's T5 biases and the extrapolation lab's learned table."""
    from fastapi.testclient import TestClient

    from attnlab.main import create_app
    from attnlab.models.registry import Registry, zoo_entries
    from tests.support import make_settings

    registry = Registry([e for e in zoo_entries() if e.id == "seq2seq"])
    app = create_app(make_settings(), registry=registry)
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/api/positional/trained/seq2seq", params={"max_len": 16})
        assert r.status_code == 200, r.text
        biases = r.json()["t5_biases"]
        assert r.json()["tables"] == [] and len(biases) == 2
        for b in biases:
            assert len(b["offsets"]) == 31 and len(b["by_offset"]) == b["n_heads"]
            table = np.array(b["buckets"])
            assert table.std() > 0.05  # trained, not the 0.02-std initialisation
            np.testing.assert_allclose(np.array(b["by_offset"])[:, 15], table[b["bucket_of_offset"][15]], atol=1e-6)
        r = c.get("/api/positional/trained/extrapolation-learned", params={"max_len": 64})
        assert r.status_code == 200, r.text
        (table,) = r.json()["tables"]
        sim = np.array(table["similarity"])
        assert sim.shape == (64, 64) and np.allclose(np.diag(sim), 1, atol=1e-5)
        r = c.get("/api/positional/trained/minilm")
        assert r.status_code == 404 and r.json()["detail"].startswith("model:")
        r = c.get("/api/positional/trained/gpt9")
        assert r.status_code == 422 and r.json()["detail"].startswith("source:")
        r = c.get("/api/positional/trained/seq2seq", params={"max_len": 513})
        assert r.status_code == 422 and r.json()["detail"].startswith("max_len:")


@pytest.mark.parametrize("model,params", [
    ("tiny-gpt", {"pattern": "longformer", "window": 4, "global_tokens": 1}),
    ("tiny-bert", {"pattern": "bigbird", "block": 4, "random_blocks": 1}),
    ("tiny-t5", {"pattern": "longformer", "window": 2, "global_tokens": 0, "kind": "cross"}),
])
def test_sparse_pattern_on_a_real_head(client, model, params):
    from attnlab.models import make_pattern

    run = make_run(client, model, values=False, text="The cat sat on the mat, and the dog sat on the log.")
    r = client.get(f"/api/runs/{run['run_id']}/sparse", params={"layer": 1, "head": 1, **params})
    assert r.status_code == 200, r.text
    s = r.json()
    dense, allowed, sparse = (np.array(s[k], dtype=np.float64) for k in ("dense", "allowed", "sparse"))
    kind = s["kind"]
    np.testing.assert_allclose(dense, tile(client, run["run_id"], kind=kind, layer=1, head=1), atol=1e-6)
    t_q, t_k = dense.shape
    p = dict(s["params"])
    pattern = make_pattern(s["pattern"], **p)
    import torch

    offset = t_k - t_q if kind == "decoder" else 0
    ref = pattern.allowed(torch.arange(t_q) + offset, torch.arange(t_k)).numpy() & (dense > 0)
    np.testing.assert_array_equal(allowed.astype(bool), ref)
    kept = (dense * allowed).sum(1)
    np.testing.assert_allclose(s["kept"], kept, atol=1e-6)
    rows = kept > 0
    np.testing.assert_allclose(sparse[rows], dense[rows] * allowed[rows] / kept[rows, None], atol=1e-5)
    np.testing.assert_allclose(sparse[rows].sum(1), 1, atol=1e-5)
    assert s["density"] == pytest.approx(allowed.sum() / (dense > 0).sum())
    assert 0 < s["density"] < 1


def test_sparse_limits_and_cost(client):
    run = make_run(client, "tiny-gpt", values=False)
    r = client.get(f"/api/runs/{run['run_id']}/sparse", params={"pattern": "bigbird", "block": 0})
    assert r.status_code == 422 and r.json()["detail"].startswith("block:")
    r = client.get("/api/sparse/cost", params={"seq_lens": [64, 128], "window": 8, "n_heads": 1, "head_dim": 16})
    assert r.status_code == 200, r.text
    rows = r.json()["rows"]
    assert [row["seq_len"] for row in rows] == [64, 128]
    assert all(row["dense_ms"] > 0 and row["sparse_ms"] > 0 for row in rows)
    assert rows[1]["density"] < rows[0]["density"]  # a fixed window covers less of a longer map
    r = client.get("/api/sparse/cost", params={"seq_lens": [65536]})
    assert r.status_code == 422 and r.json()["detail"].startswith("seq_lens.0:") and "sparse_cost_max_len" in r.text
    r = client.get("/api/sparse/cost", params={"seq_lens": [1024], "n_heads": 32})  # 32 x 1024^2 > 4 Mi cells
    assert r.status_code == 413 and r.json()["detail"].startswith("seq_lens:") and "benchmark_max_cells" in r.text


def test_qk_umap_without_the_extra(client, monkeypatch):
    """Without umap-learn (the optional extra) method=umap is a 409 that says how to install it."""
    import attnlab.services.explain as explain

    monkeypatch.setattr(explain, "umap_available", lambda: False)
    rid = make_run(client, "tiny-bert", values=False)["run_id"]
    r = client.get(f"/api/runs/{rid}/qk", params={"method": "umap"})
    assert r.status_code == 409 and r.json()["detail"].startswith("method:") and "attnlab[umap]" in r.text


def test_qk_pools_several_texts(client):
    a = make_run(client, "tiny-bert", values=False, text="the cat sat")
    b = make_run(client, "tiny-bert", values=False, text="a dog ran far away")
    r = client.get(f"/api/runs/{a['run_id']}/qk", params={"layer": 1, "head": 0, "also": [b["run_id"]]})
    assert r.status_code == 200, r.text
    p = r.json()
    n_a, n_b = a["n_tokens"], b["n_tokens"]
    assert p["runs"] == [a["run_id"], b["run_id"]]
    assert p["role"] == ["query"] * (n_a + n_b) + ["key"] * (n_a + n_b)
    assert p["run"] == [0] * n_a + [1] * n_b + [0] * n_a + [1] * n_b
    assert p["token"] == a["tokens"] + b["tokens"] + a["tokens"] + b["tokens"]
    alone = client.get(f"/api/runs/{a['run_id']}/qk", params={"layer": 1, "head": 0}).json()
    assert len(alone["x"]) == 2 * n_a and alone["run"] == [0] * (2 * n_a)
    other = make_run(client, "tiny-gpt", values=False, text="the cat sat")
    r = client.get(f"/api/runs/{a['run_id']}/qk", params={"also": [other["run_id"]]})
    assert r.status_code == 422 and r.json()["detail"].startswith("also:")
    r = client.get(f"/api/runs/{a['run_id']}/qk", params={"also": ["nothex"]})
    assert r.status_code == 422 and "also" in r.json()["detail"]
