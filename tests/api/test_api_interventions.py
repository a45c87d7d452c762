"""The interventions over HTTP: answers equal the models layer's, 4xx messages name the field, OpenAPI states the
bounds, and run_id stands in for model + text."""

from __future__ import annotations

import pytest

from attnlab.models.interventions import ablate, logit_lens
from tests.support import tiny_registry

TEXT = "the cat sat on the mat."


@pytest.fixture(scope="module")
def tiny_gpt():
    return tiny_registry().load("tiny-gpt")


def post(client, path, body):
    return client.post(f"/api{path}", json=body)


def test_ablate_equals_the_models_layer(client, tiny_gpt):
    r = post(client, "/interventions/ablate", {"model": "tiny-gpt", "text": TEXT, "heads": [[0, 1], [1, 2]]})
    assert r.status_code == 200, r.text
    body = r.json()
    ref = ablate(tiny_gpt, tiny_gpt.tokenize(TEXT), [(0, 1), (1, 2)])
    assert body["loss_change"] == pytest.approx(ref.loss_change, abs=1e-6)
    assert body["loss_after"][-1] is None and len(body["loss_after"]) == len(body["tokens"]) == len(TEXT)
    assert [c["position"] for c in body["changed_predictions"]] == [c.position for c in ref.changed_predictions]
    for c in body["changed_predictions"]:
        assert c["before"]["token"] == tiny_gpt.labels([c["before"]["token_id"]])[0]
    none = post(client, "/interventions/ablate", {"model": "tiny-gpt", "text": TEXT, "heads": [], "mode": "mean"})
    assert none.json()["loss_change"] == 0.0


def test_importance_has_the_gradient_and_the_ablation_grid(client):
    r = post(client, "/interventions/importance", {"model": "tiny-gpt", "text": TEXT})
    body = r.json()
    assert r.status_code == 200, r.text
    assert body["objective"] == "loss" and body["n_layers"] == 2 and body["n_heads"] == 4
    assert len(body["ablation_loss_change"]) == 2 and len(body["ablation_loss_change"][1]) == 4
    single = post(client, "/interventions/ablate", {"model": "tiny-gpt", "text": TEXT, "heads": [[1, 3]]}).json()
    assert body["ablation_loss_change"][1][3] == pytest.approx(single["loss_change"], abs=1e-5)


def test_patch_answers_a_grid_and_refuses_unequal_lengths(client):
    r = post(client, "/interventions/patch", {"model": "tiny-gpt", "clean": "the cat sat", "corrupted": "the dog sat"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["heads"]) == 2 and len(body["heads"][0]) == 4 and body["complete"] is True
    assert body["position"] == len("the cat sat") - 1 and body["clean_logit"] != body["corrupted_logit"]
    bad = post(client, "/interventions/patch", {"model": "tiny-gpt", "clean": "the cat sat", "corrupted": "a dog"})
    assert bad.status_code == 422
    assert bad.json()["detail"] == ("corrupted: 5 tokens, but clean has 11; patching needs texts of the same token "
                                    "length")


def test_lens_equals_the_models_layer_and_labels_tokens(client, tiny_gpt):
    r = post(client, "/lens", {"model": "tiny-gpt", "text": TEXT, "k": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    ref = logit_lens(tiny_gpt, tiny_gpt.tokenize(TEXT), 3)
    assert [[c["token_id"] for c in cell] for cell in body["top"][1]] == ref.top_ids[1]
    assert body["final_tokens"] == tiny_gpt.labels(ref.final_ids)
    assert len(body["residual_norm"]) == 3 and len(body["attention_norm"]) == 2


def test_a_run_id_stands_in_for_model_and_text(client):
    run = client.post("/api/runs", json={"model": "tiny-bert", "text": TEXT}).json()
    by_run = post(client, "/interventions/ablate", {"run_id": run["run_id"], "heads": [[0, 0]]}).json()
    by_text = post(client, "/interventions/ablate", {"model": "tiny-bert", "text": TEXT, "heads": [[0, 0]]}).json()
    assert by_run["loss_after"] == by_text["loss_after"] and by_run["model"] == "tiny-bert"
    lens = post(client, "/lens", {"run_id": run["run_id"]})
    assert lens.status_code == 200 and lens.json()["tokens"] == run["tokens"]


@pytest.mark.parametrize(("path", "body", "status", "detail"), [
    ("/interventions/ablate", {"model": "tiny-gpt", "text": TEXT, "heads": [[2, 0]]}, 422,
     "heads: layer 2 is outside 0..1 (the model has 2 layers)"),
    ("/interventions/ablate", {"model": "tiny-gpt", "text": TEXT, "heads": [[0, 9]]}, 422,
     "heads: head 9 is outside 0..3 (the model has 4 heads per layer)"),
    ("/interventions/ablate", {"model": "tiny-t5", "text": TEXT, "heads": []}, 422,
     "model: 'tiny-t5' is an encoder-decoder; interventions take encoders and decoders"),
    ("/interventions/ablate", {"model": "tiny-gpt", "heads": []}, 422,
     "text: required (give model and text, or a run_id)"),
    ("/interventions/ablate", {"model": "tiny-gpt", "text": TEXT, "run_id": "0" * 32, "heads": []}, 422,
     "run_id: give either run_id or model and text, not both"),
    ("/interventions/importance", {"model": "nope", "text": TEXT}, 404, "model: "),
    ("/interventions/importance", {"model": "tiny-gpt", "text": "x" * 300}, 413,
     "text: 300 tokens is over the limit of 128 tokens for interventions (intervention_max_tokens)"),
    ("/interventions/patch", {"model": "tiny-gpt", "corrupted": TEXT}, 422,
     "clean: required (give model and clean, or a run_id)"),
    ("/lens", {"model": "tiny-gpt", "text": TEXT, "layers": [5]}, 422, "layers: [5] outside 0..1"),
    ("/lens", {"model": "tiny-gpt", "text": TEXT, "k": 21}, 422, "k: Input should be less than or equal to 20"),
    ("/interventions/importance", {"model": "tiny-gpt", "text": TEXT, "probes": 17}, 422,
     "probes: Input should be less than or equal to 16 (importance_max_probes)"),
    ("/interventions/ablate", {"model": "tiny-gpt", "text": TEXT, "heads": [[0]]}, 422, "heads.0: List should have"),
    ("/interventions/ablate", {"model": "tiny-gpt", "text": TEXT, "heads": [], "mode": "max"}, 422, "mode: "),
    ("/interventions/ablate", {"run_id": "a" * 32, "heads": []}, 404, "run_id: run aaaa"),
])
def test_errors_name_the_field_and_the_limit(client, path, body, status, detail):
    r = post(client, path, body)
    assert r.status_code == status, r.text
    assert r.json()["detail"].startswith(detail), r.json()["detail"]


def test_openapi_states_the_bounds_and_enums(client):
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert schemas["LensRequest"]["properties"]["k"]["maximum"] == 20
    assert schemas["ImportanceRequest"]["properties"]["probes"]["maximum"] == 16
    assert schemas["AblateRequest"]["properties"]["mode"]["enum"] == ["zero", "mean"]
    for path in ("/api/interventions/ablate", "/api/interventions/importance", "/api/interventions/patch",
                 "/api/lens"):
        assert {"404", "413", "422"} <= set(spec["paths"][path]["post"]["responses"]), path
    assert "/api/interventions/lab" in spec["paths"]


def test_lab_results_are_served(client):
    r = client.get("/api/interventions/lab")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["lab"] == "heads" and body["induction"]["layer1_ablated_loss"] > 1.0
