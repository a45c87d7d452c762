"""POST /api/attention: dense maps as JSON and NPY, for decoder, encoder and encoder-decoder."""

from __future__ import annotations

import numpy as np
import pytest

from attnlab.models.labels import show_text
from tests.support import load_npy, meta_of

TEXT = "the cat sat on the mat"
LABELS = [show_text(c) for c in TEXT]  # char tokenizer: one label per character, spaces as ·


def _rows_sum_to_one(weights: np.ndarray) -> None:
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-4)


@pytest.mark.parametrize("model", ["tiny-gpt", "tiny-bert"])
def test_json_shape_and_rows(client, model):
    r = client.post("/api/attention", json={"model": model, "text": TEXT})
    assert r.status_code == 200, r.text
    body = r.json()
    weights = np.asarray(body["attention"])
    assert list(weights.shape) == body["shape"] == [2, 4, len(TEXT), len(TEXT)]
    assert body["tokens"] == LABELS and body["key_tokens"] == LABELS
    _rows_sum_to_one(weights)
    if model == "tiny-gpt":  # causal: nothing above the diagonal
        assert np.triu(weights, k=1).max() == 0.0


def test_npy_equals_json(client):
    req = {"model": "tiny-gpt", "text": TEXT, "backend": "flash"}
    as_json = np.asarray(client.post("/api/attention", json=req).json()["attention"])
    r = client.post("/api/attention", json={**req, "format": "npy"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
    weights = load_npy(r.content)
    assert weights.dtype == np.float16
    meta = meta_of(r)
    assert list(weights.shape) == meta["shape"] and r.headers["X-Shape"] == ",".join(map(str, weights.shape))
    assert meta["tokens"] == LABELS and meta["backend"] == "flash"
    np.testing.assert_allclose(weights.astype(np.float32), as_json, atol=1e-3)


def test_npy_meta_of_many_tokens_is_bounded(client):
    """format=npy of ~440 tokens (one head fits dense_budget): the meta header leaves the per-token lists out,
    names them in `omitted`, and keeps what describes the array."""
    from attnlab.api.transport import META_MAX_BYTES

    text = "abc, " * 88
    r = client.post("/api/attention", json={"model": "tiny-gpt", "text": text, "layers": [1], "heads": [2],
                                            "format": "npy"})
    assert r.status_code == 200, r.text
    assert len(r.headers["X-Attnlab-Meta"]) <= META_MAX_BYTES
    meta = meta_of(r)
    assert meta["omitted"] == ["tokens", "token_ids", "offsets", "special", "segments", "key_tokens",
                               "key_token_ids", "key_offsets", "key_special", "key_segments"]
    assert not set(meta["omitted"]) & set(meta)
    assert meta["shape"] == [1, 1, 440, 440] == list(load_npy(r.content).shape)
    assert meta["layers"] == [1] and meta["heads"] == [2] and meta["kind"] == "decoder"


def test_layer_and_head_selection(client):
    r = client.post("/api/attention", json={"model": "tiny-gpt", "text": TEXT, "layers": [1], "heads": [3, 0]})
    full = np.asarray(client.post("/api/attention", json={"model": "tiny-gpt", "text": TEXT}).json()["attention"])
    body = r.json()
    assert body["shape"] == [1, 2, len(TEXT), len(TEXT)] and body["layers"] == [1] and body["heads"] == [3, 0]
    np.testing.assert_allclose(np.asarray(body["attention"]), full[[1]][:, [3, 0]], atol=1e-6)


@pytest.mark.parametrize("backend", ["math", "sdpa", "flash"])
def test_backends_agree(client, backend):
    ref = np.asarray(client.post("/api/attention", json={"model": "tiny-bert", "text": TEXT}).json()["attention"])
    got = client.post("/api/attention", json={"model": "tiny-bert", "text": TEXT, "backend": backend}).json()
    np.testing.assert_allclose(np.asarray(got["attention"]), ref, atol=1e-5)


def test_encoder_decoder_parts(client):
    r = client.post("/api/attention", json={"model": "tiny-t5", "text": "hello"})
    assert r.status_code == 200, r.text
    body = r.json()
    t_enc = len("hello")
    for kind in ("encoder", "decoder", "cross"):
        part = body[kind]
        weights = np.asarray(part["attention"])
        assert list(weights.shape) == part["shape"] and part["kind"] == kind
        _rows_sum_to_one(weights)
    assert body["encoder"]["shape"][2:] == [t_enc, t_enc]
    t_dec = body["decoder"]["shape"][2]
    assert body["cross"]["shape"][2:] == [t_dec, t_enc]
    assert body["cross"]["key_tokens"] == list("hello") and body["cross"]["tokens"] == body["decoder"]["tokens"]


def test_encoder_decoder_npy_needs_kind(client):
    r = client.post("/api/attention", json={"model": "tiny-t5", "text": "hello", "format": "npy"})
    assert r.status_code == 422 and "kind" in r.json()["detail"]
    r = client.post("/api/attention", json={"model": "tiny-t5", "text": "hello", "format": "npy", "kind": "cross"})
    assert r.status_code == 200 and load_npy(r.content).shape[3] == 5


def test_over_dense_budget_points_to_runs(client):
    # budget 200_000 in the test settings: 2 x 4 x 200^2 = 320_000
    r = client.post("/api/attention", json={"model": "tiny-gpt", "text": "a" * 200})
    assert r.status_code == 413
    assert "/api/runs" in r.json()["detail"] and "dense_budget" in r.json()["detail"]
