"""POST /api/fill-mask and POST /api/objectives on the zoo's real `mlm` and `lm` checkpoints: answers equal the
softmax of the same weights' logits computed here, attention rows are distributions, bad input is a 4xx that
names the field."""

from __future__ import annotations

import math

import pytest
import torch
from fastapi.testclient import TestClient

from attnlab.main import create_app
from attnlab.models.architectures import load_model
from attnlab.models.paths import ZOO
from attnlab.models.registry import Registry, zoo_entries
from attnlab.models.tokenization import load_tokenizer
from tests.support import make_settings, tiny_registry

pytestmark = pytest.mark.skipif(not (ZOO / "mlm" / "model.safetensors").exists()
                                or not (ZOO / "lm" / "model.safetensors").exists(),
                                reason="needs the shipped lm and mlm checkpoints (bench/make_zoo.py)")

TEXT = "It is a truth universally acknowledged, that a single man"


@pytest.fixture(scope="module")
def client(one_thread):
    entries = [e for e in zoo_entries(ZOO) if e.id in ("lm", "mlm")]
    tiny = tiny_registry()
    registry = Registry(entries + [tiny.entries["tiny-gpt"], tiny.entries["tiny-bert"]])
    app = create_app(make_settings(objectives_max_tokens=40), registry=registry)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def mlm():
    return load_model(ZOO / "mlm").float().eval(), load_tokenizer(ZOO / "mlm")


@pytest.fixture(scope="module")
def lm():
    return load_model(ZOO / "lm").float().eval(), load_tokenizer(ZOO / "lm")


def test_fill_mask_equals_the_softmax_of_the_weights(client, mlm):
    r = client.post("/api/fill-mask", json={"model": "mlm", "text": "She was [MASK] to see him.", "k": 4})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["text"] == "She was<mask> to see him."  # the byte-level slot takes the space
    model, tok = mlm
    ids = tok.encode(body["text"])
    assert body["token_ids"] == ids
    (mask,) = body["masks"]
    assert ids[mask["position"]] == tok.mask_id and body["special"][mask["position"]]
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, mask["position"]].float()
    logits[sorted(tok.special_ids.values())] = float("-inf")
    probs = logits.softmax(-1)
    top = torch.topk(probs, 4)
    assert [g["token_id"] for g in mask["top"]] == top.indices.tolist()
    assert [g["prob"] for g in mask["top"]] == pytest.approx(top.values.tolist(), abs=1e-5)
    assert all(not g["token"].startswith("<") for g in mask["top"])
    # the run holds the same text's maps: the mask token's row is a distribution over the tokens
    tile = client.get(f"/api/runs/{body['run_id']}/attention",
                      params={"layer": 0, "head": 0, "rows": f"{mask['position']}:{mask['position'] + 1}"})
    assert tile.status_code == 200, tile.text
    row = tile.json()["attention"][0]
    assert len(row) == len(ids) and sum(row) == pytest.approx(1, abs=1e-4)


def test_fill_mask_two_masks(client):
    body = client.post("/api/fill-mask", json={"model": "mlm", "text": "I [MASK] not [MASK] what you mean."}).json()
    assert [m["position"] for m in body["masks"]] == [i for i, s in enumerate(body["special"]) if s]
    assert all(len(m["top"]) == 5 for m in body["masks"])  # k defaults to 5
    for m in body["masks"]:
        probs = [g["prob"] for g in m["top"]]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6


@pytest.mark.parametrize(("body", "status", "start"), [
    ({"model": "mlm", "text": "no mask here"}, 422, "text: has no mask token"),
    ({"model": "lm", "text": "I do not [MASK]"}, 422, "model: model 'lm' is a decoder"),
    ({"model": "nope", "text": "a [MASK]"}, 404, "model:"),
    ({"model": "mlm", "text": "a [MASK]", "k": 0}, 422, "k:"),
    ({"model": "mlm", "text": "a [MASK]", "k": 51}, 422, "k:"),
    ({"model": "mlm", "text": ""}, 422, "text:"),
    ({"model": "mlm", "text": "a [MASK]", "extra": 1}, 422, "extra:"),
])
def test_fill_mask_bad_input(client, body, status, start):
    r = client.post("/api/fill-mask", json=body)
    assert r.status_code == status, r.text
    assert r.json()["detail"].startswith(start), r.json()["detail"]


def test_fill_mask_on_any_encoder_with_a_mask_token(client):
    # a character-level tokenizer keeps the space: only the typed alias becomes the mask token
    body = client.post("/api/fill-mask", json={"model": "tiny-bert", "text": "a [MASK] b", "k": 2}).json()
    assert body["text"] == "a <mask> b" and body["tokens"][2] == "<mask>"
    assert [m["position"] for m in body["masks"]] == [2] and len(body["masks"][0]["top"]) == 2


def test_objectives_equal_each_models_own_softmax(client, lm, mlm):
    r = client.post("/api/objectives", json={"text": TEXT, "position": 5, "k": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    ids = body["token_ids"]
    T = len(ids)
    assert body["position"] == 5 and body["clm_model"] == "lm" and body["mlm_model"] == "mlm"
    clm_model, _ = lm
    with torch.no_grad():
        logp = clm_model(torch.tensor([ids])).logits[0].float().log_softmax(-1)
    clm = body["clm"]
    assert clm["per_token"][0] is None
    for t in range(1, T):  # token t from tokens < t: the logits at t - 1
        assert clm["per_token"][t]["prob"] == pytest.approx(math.exp(float(logp[t - 1, ids[t]])), rel=1e-4)
    assert clm["loss"] == pytest.approx(-float(logp[torch.arange(T - 1), ids[1:]].mean()), rel=1e-5)
    assert clm["query"] == 4 and clm["predicts_from"] == [0, 1, 2, 3, 4]
    mlm_model, tok = mlm
    masked = list(ids)
    masked[5] = tok.mask_id
    with torch.no_grad():
        logits = mlm_model(torch.tensor([masked])).logits[0, 5].float()
    logits[sorted(tok.special_ids.values())] = float("-inf")
    assert body["mlm"]["prob"] == pytest.approx(float(logits.softmax(-1)[ids[5]]), rel=1e-4)
    assert body["mlm"]["top"][0]["token_id"] == int(logits.argmax())
    assert body["mlm"]["query"] == 5 and 5 not in body["mlm"]["predicts_from"]
    assert len(body["mlm"]["predicts_from"]) == T - 1
    # the attention of the predicting query, per layer: a distribution; causal: nothing after the query
    for side in ("clm", "mlm"):
        rows = body[side]["attention"]
        assert len(rows) == 4 and all(len(row) == T for row in rows)
        assert all(sum(row) == pytest.approx(1, abs=1e-4) for row in rows)
    assert all(v == 0 for row in clm["attention"] for v in row[5:])
    assert any(v > 0 for row in body["mlm"]["attention"] for v in row[6:])  # the masked model looks right too


@pytest.mark.parametrize(("body", "status", "start"), [
    ({"text": TEXT, "position": 0}, 422, "position:"),
    ({"text": TEXT, "position": 500}, 422, "position: 500 is outside"),
    ({"text": "It"}, 422, "text: gives 1 token"),
    ({"text": TEXT * 4}, 413, "text: "),  # over objectives_max_tokens (40 here)
    ({"text": TEXT, "clm_model": "mlm"}, 422, "clm_model: model 'mlm' is an encoder"),
    ({"text": TEXT, "mlm_model": "lm"}, 422, "mlm_model: model 'lm' is a decoder"),
    ({"text": TEXT, "clm_model": "tiny-gpt"}, 422, "mlm_model: 'mlm' tokenizes the text differently"),
    ({"text": TEXT, "k": 0}, 422, "k:"),
])
def test_objectives_bad_input(client, body, status, start):
    r = client.post("/api/objectives", json=body)
    assert r.status_code == status, r.text
    assert r.json()["detail"].startswith(start), r.json()["detail"]


def test_openapi_states_the_bounds(client):
    doc = client.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    k = schemas["FillMaskRequest"]["properties"]["k"]
    assert (k["minimum"], k["maximum"]) == (1, 50)
    for path in ("/api/fill-mask", "/api/objectives"):
        assert {"404", "413", "422"} <= set(doc["paths"][path]["post"]["responses"])
