"""The API on real pretrained weights: MiniLM-L6 (bundled, offline), equal to transformers' eager maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from attnlab.main import create_app
from attnlab.models import Registry
from tests.support import load_npy, make_settings, meta_of

pretrained = pytest.importorskip("attnlab.models.hf")
if pretrained.minilm_dir() is None:
    pytest.skip("MiniLM package not installed", allow_module_level=True)

TEXT, PAIR = "The cat sat on the mat.", "Where did the cat sit?"


@pytest.fixture(scope="module")
def minilm(one_thread):
    app = create_app(make_settings(dense_budget=4_000_000), registry=Registry([pretrained.minilm_entry()]))
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def eager():
    from transformers import AutoModel, AutoTokenizer

    directory = pretrained.minilm_dir()
    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModel.from_pretrained(directory, attn_implementation="eager").eval()
    with torch.no_grad():
        enc = tokenizer(TEXT, PAIR, return_tensors="pt")
        attentions = model(**enc, output_attentions=True).attentions
    return tokenizer.convert_ids_to_tokens(enc["input_ids"][0]), torch.stack(attentions)[:, 0].numpy()


@pytest.mark.parametrize("backend", ["math", "flash"])
def test_dense_equals_transformers_eager(minilm, eager, backend):
    tokens, ref = eager
    r = minilm.post("/api/attention", json={"model": "minilm", "text": TEXT, "text_pair": PAIR, "backend": backend})
    assert r.status_code == 200, r.text
    body = r.json()
    weights = np.asarray(body["attention"])
    assert body["tokens"] == tokens and tokens[0] == "[CLS]"
    assert list(weights.shape) == body["shape"] == [6, 12, len(tokens), len(tokens)]
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-4)
    np.testing.assert_allclose(weights, ref, atol=1e-5)

    npy = minilm.post("/api/attention", json={"model": "minilm", "text": TEXT, "text_pair": PAIR, "format": "npy",
                                              "backend": backend})
    np.testing.assert_allclose(load_npy(npy.content).astype(np.float32), ref, atol=1e-3)
    assert meta_of(npy)["tokens"] == tokens


def test_run_tiles_and_heads(minilm, eager):
    tokens, ref = eager
    run = minilm.post("/api/runs", json={"model": "minilm", "text": TEXT, "text_pair": PAIR, "backend": "sdpa"}).json()
    assert run["kinds"] == ["encoder"] and run["n_layers"] == 6 and run["n_heads"] == 12
    scores = run["head_stats"]["encoder"]
    assert np.asarray(scores["special_sink"]).shape == (6, 12)
    tile = minilm.get(f"/api/runs/{run['run_id']}/attention", params={"layer": 5, "head": 11, "rows": "1:4"}).json()
    np.testing.assert_allclose(np.asarray(tile["attention"]), ref[5, 11, 1:4], atol=1e-5)
    detail = minilm.get("/api/models/minilm").json()
    assert detail["config"]["num_hidden_layers"] == 6
