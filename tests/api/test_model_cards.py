"""Model cards (attnlab.models.cards): every shipped model declares the input it reads, and its examples
are input it can read: no <unk>, the seq2seq example decodes to its answer, the induction example makes
the card's focus head copy. Over the real zoo checkpoints (small: loaded in well under a second each)."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from attnlab.main import create_app
from attnlab.models.cards import PRETRAINED_CARDS, CardError, load_card
from attnlab.models.paths import ZOO
from attnlab.models.registry import Registry, zoo_entries
from tests.support import make_settings

ZOO_IDS = sorted(e.id for e in zoo_entries())


def zoo_dir(model_id: str):
    """The checkpoint directory of a zoo id (a lab's variant ``name-variant`` lives in ``name/variant``)."""
    return ZOO / model_id if (ZOO / model_id).is_dir() else ZOO.joinpath(*model_id.split("-", 1))


@pytest.fixture(scope="module")
def client(one_thread):
    app = create_app(make_settings(), registry=Registry(zoo_entries()))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def test_every_zoo_checkpoint_has_a_card_in_its_metadata():
    assert {"induction", "lm", "mlm", "seq2seq", "extrapolation"} <= set(ZOO_IDS)
    for model_id in ZOO_IDS:
        card = load_card(zoo_dir(model_id))
        assert card is not None, f"models/zoo/{model_id}/card.json is missing"
        assert card.expects and card.examples, model_id


def test_models_endpoint_serves_each_card(client):
    models = {m["id"]: m for m in client.get("/api/models").json()}
    for model_id in ZOO_IDS:
        card = models[model_id]["card"]
        assert card["expects"] == load_card(zoo_dir(model_id)).expects
        assert all(e["text"] for e in card["examples"])
    assert models["seq2seq"]["card"]["focus"] == {
        "kind": "cross", "layer": 1, "head": 3, "why": load_card(ZOO / "seq2seq").focus.why}
    # the OpenAPI document states the card's shape
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    assert "card" in schema["ModelInfoOut"]["properties"] and "expects" in schema["ModelCardOut"]["required"]


@pytest.mark.parametrize("model_id", ["induction", "lm", "mlm", "seq2seq", "extrapolation"])
def test_every_example_is_input_the_model_can_read(client, model_id):
    """No example turns into <unk>: each token of it is in the model's vocabulary."""
    card = load_card(zoo_dir(model_id))
    from attnlab.models.registry import scratch_entry

    adapter = scratch_entry(model_id, ZOO / model_id).load()
    for example in card.examples:
        ids = adapter.tokenize(example.text).seq().ids
        unknown = [i for i in ids if i == adapter.unk_id]
        assert not unknown, f"{model_id}: example {example.text!r} has {len(unknown)} <unk> tokens"
        assert len(ids) <= adapter.info.max_positions


def test_seq2seq_default_decodes_its_task_and_english_does_not(client):
    card = load_card(ZOO / "seq2seq")
    default = card.default("seq2seq")
    assert default.startswith("rev:")
    answer = client.post("/api/attention", json={"model": "seq2seq", "text": default}).json()
    assert answer["target_text"] == default[len("rev:"):][::-1]
    copy = next(e.text for e in card.examples if e.text.startswith("copy:"))
    assert client.post("/api/attention", json={"model": "seq2seq", "text": copy}).json()["target_text"] == copy[5:]
    # what the page used to open with: spaces read as <unk> and the decode is not the text
    english = client.post("/api/attention", json={"model": "seq2seq", "text": "the quick brown fox"}).json()
    assert any(t.startswith("<unk>") for t in english["encoder"]["tokens"])
    assert english["target_text"] not in ("the quick brown fox", "xof nworb kciuq eht")


def test_induction_example_makes_the_focus_head_copy(client):
    """On the repeat, the focus head puts most of each row's weight on the token after the earlier copy."""
    card = load_card(ZOO / "induction")
    text = card.default("explorer")
    half = len(text) // 2
    assert text[:half] == text[half:]
    f = card.focus
    answer = client.post("/api/attention", json={"model": "induction", "text": text, "layers": [f.layer],
                                                 "heads": [f.head]}).json()
    weights = answer["attention"][0][0]  # single-stack models answer flat
    scores = [weights[i][i - half + 1] for i in range(half, 2 * half)]
    assert sum(scores) / len(scores) > 0.5
    # the card's "no repeat" example has nothing to copy: the same head finds no such pattern
    plain = card.examples[-1].text
    answer = client.post("/api/attention", json={"model": "induction", "text": plain, "layers": [f.layer],
                                                 "heads": [f.head]}).json()
    weights = answer["attention"][0][0]  # single-stack models answer flat
    n = len(plain) // 2
    assert sum(weights[i][i - n + 1] for i in range(n, 2 * n)) / n < 0.2


def test_bundled_models_have_cards_and_a_bad_card_names_its_field(tmp_path):
    assert {"minilm", "smollm2", "gpt2"} <= set(PRETRAINED_CARDS)
    assert PRETRAINED_CARDS["smollm2"].default("generate") == "Once upon a time"
    # an example written for the page comes first, else one for every page
    lm = load_card(ZOO / "lm")
    assert lm.default("generate") == "It is a truth universally acknowledged"
    assert lm.default("explorer") == lm.examples[0].text != lm.default("generate")
    (tmp_path / "card.json").write_text(json.dumps({"examples": []}))
    with pytest.raises(CardError, match="expects"):
        load_card(tmp_path)
    (tmp_path / "card.json").write_text("{")
    with pytest.raises(CardError, match="not JSON"):
        load_card(tmp_path)
    assert load_card(tmp_path / "none") is None
