"""Interventions on Hugging Face models through the bridge: gated heads equal transformers' eager model with
the head's output zeroed by hand; the logit lens's last layer equals the model's logits (tiny models, MiniLM,
SmolLM2)."""

from __future__ import annotations

import pytest
import torch

from attnlab.models.interventions import ablate, gradient_importance, logit_lens, patch_heads

pretrained = pytest.importorskip("attnlab.models.hf")
from tests.hf.tiny_hf import load_eager  # noqa: E402

TEXT = "the cat sat on a mat the dog ran far away"
# where each architecture's heads are concatenated: the input of the attention's output projection
O_PROJ = {"llama": "model.layers.{}.self_attn.o_proj", "gpt2": "transformer.h.{}.attn.c_proj",
          "bert": "bert.encoder.layer.{}.attention.output.dense"}


def eager_with_zeroed_heads(directory, kind, ids, heads, head_dim):
    model = load_eager(directory)
    handles = []
    for layer in {la for la, _ in heads}:
        def pre(module, args, layer=layer):
            x = args[0].clone()
            for la, h in heads:
                if la == layer:
                    x[..., h * head_dim:(h + 1) * head_dim] = 0
            return (x,)
        handles.append(model.get_submodule(O_PROJ[kind].format(layer)).register_forward_pre_hook(pre))
    with torch.no_grad():
        return model(input_ids=ids).logits, model


@pytest.mark.parametrize("kind", ["llama", "gpt2", "bert"])
def test_ablation_through_the_bridge_equals_eager_with_the_head_zeroed(tiny_dir, kind):
    adapter = pretrained.load_hf(f"tiny-{kind}", tiny_dir[kind])
    enc = adapter.tokenize(TEXT)
    heads = [(0, 1), (1, 2)]  # llama: 4 query heads over 2 KV heads, so a query head, not its KV group
    from attnlab.models.gates import HeadGates, gate_heads
    from attnlab.models.interventions import anatomy

    anat = anatomy(adapter)
    gates = HeadGates.ones(2, 4)
    for la, h in heads:
        gates.scale[0, la, h] = 0
    with torch.no_grad(), gate_heads(gates):
        gated = anat.run(enc.ids, enc.token_type_ids).logits
    ref, _ = eager_with_zeroed_heads(tiny_dir[kind], kind, enc.ids, heads, 32 // 4)
    torch.testing.assert_close(gated, ref, atol=1e-5, rtol=0)
    plain = ablate(adapter, enc, [])
    assert plain.loss_change == 0.0
    assert ablate(adapter, enc, heads).loss_change != 0.0


@pytest.mark.parametrize("kind", ["llama", "gpt2", "bert"])
def test_lens_last_layer_equals_the_logits(tiny_dir, kind):
    adapter = pretrained.load_hf(f"tiny-{kind}", tiny_dir[kind])
    enc = adapter.tokenize(TEXT)
    lens = logit_lens(adapter, enc, k=2)
    ref = load_eager(tiny_dir[kind])
    with torch.no_grad():
        logits = ref(input_ids=enc.ids).logits[0]
    torch.testing.assert_close(lens.lens_logits, logits, atol=1e-5, rtol=0)
    assert len(lens.residual_norm) == 3 and len(lens.ffn_norm) == 2


def test_patching_and_importance_run_on_a_gqa_model(tiny_dir):
    adapter = pretrained.load_hf("tiny-llama", tiny_dir["llama"])
    clean, corrupted = adapter.tokenize("the cat sat on a"), adapter.tokenize("the dog ran on a")
    result = patch_heads(adapter, clean, corrupted)
    assert len(result.heads) == 2 and len(result.heads[0]) == 4 and result.complete
    grad = gradient_importance(adapter, clean)
    assert grad.objective == "loss" and len(grad.importance) == 2 and len(grad.importance[0]) == 4


@pytest.mark.slow
def test_minilm_importance_and_norms():
    if pretrained.minilm_dir() is None:
        pytest.skip("MiniLM package not installed")
    adapter = pretrained.minilm_entry().load()
    enc = adapter.tokenize("The cat sat on the mat.")
    imp = gradient_importance(adapter, enc, probes=4)
    assert imp.objective == "hidden" and len(imp.importance) == 6 and len(imp.importance[0]) == 12
    assert all(v >= 0 for row in imp.importance for v in row) and max(max(r) for r in imp.importance) > 0
    result = ablate(adapter, enc, [(0, 0)])
    assert result.loss_change is None and len(result.hidden_cosine) == len(enc)
    lens = logit_lens(adapter, enc)
    assert lens.top_ids is None and len(lens.residual_norm) == 7
    # BERT is post-norm: every block's output is LayerNorm'd, so its norm is about sqrt(d) times gamma's scale
    assert all(n > 0 for row in lens.residual_norm for n in row)


@pytest.mark.slow
def test_smollm2_lens_last_layer_equals_its_logits():
    if pretrained.smollm2_gguf() is None:
        pytest.skip("SmolLM2 package not installed")
    adapter = pretrained.smollm2_entry().load()
    enc = adapter.tokenize("The capital of France is")
    lens = logit_lens(adapter, enc, k=3, layers=[0, 15, 29])
    torch.testing.assert_close(lens.lens_logits, lens.logits, atol=1e-4, rtol=0)
    with torch.no_grad():
        logits = adapter.model(input_ids=enc.ids, use_cache=False).logits[0]
    torch.testing.assert_close(lens.logits, logits, atol=1e-4, rtol=0)


@pytest.fixture(scope="module")
def pretrained_client(one_thread):
    from fastapi.testclient import TestClient

    from attnlab.main import create_app
    from attnlab.models import Registry
    from tests.support import make_settings

    entries = [e() for e, found in ((pretrained.minilm_entry, pretrained.minilm_dir()),
                                    (pretrained.smollm2_entry, pretrained.smollm2_gguf())) if found is not None]
    if not entries:
        pytest.skip("neither MiniLM nor SmolLM2 is installed")
    app = create_app(make_settings(patch_budget_s=15.0), registry=Registry(entries))
    with TestClient(app) as c:
        yield c


@pytest.mark.slow
def test_minilm_over_http_has_hidden_changes_not_losses(pretrained_client):
    if pretrained.minilm_dir() is None:
        pytest.skip("MiniLM package not installed")
    body = {"model": "minilm", "text": "The cat sat on the mat."}
    r = pretrained_client.post("/api/interventions/ablate", json={**body, "heads": [[2, 5]]}).json()
    assert r["loss_change"] is None and r["loss_before"] is None and len(r["hidden_change"]) == len(r["tokens"])
    assert r["tokens"][0] == "[CLS]" and all(0 < c["relative_norm"] < 1 for c in r["hidden_change"])
    imp = pretrained_client.post("/api/interventions/importance", json=body).json()
    assert imp["objective"] == "hidden" and imp["ablation_loss_change"] is None  # 72 heads > ablation_grid_max_heads
    patch = pretrained_client.post("/api/interventions/patch", json={"model": "minilm", "clean": "a cat",
                                                                     "corrupted": "a dog"})
    assert patch.status_code == 422 and patch.json()["detail"].startswith("model: 'minilm' has no LM head")


@pytest.mark.slow
def test_smollm2_name_swap_finds_a_head_that_moves_the_name(pretrained_client):
    """The page's default pair: layer 23 alone restores the whole logit difference, and one of its heads most of it
    (SmolLM2's name mover for this sentence)."""
    if pretrained.smollm2_gguf() is None:
        pytest.skip("SmolLM2 package not installed")
    r = pretrained_client.post("/api/interventions/patch", json={
        "model": "smollm2", "clean": "When Mary and John went to the store, John gave a drink to",
        "corrupted": "When Mary and John went to the store, Mary gave a drink to"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["target"]["token"] == "·Mary" and body["clean_logit"] > body["corrupted_logit"] + 3
    best_layer = max(range(30), key=lambda layer: body["layers"][layer])
    assert best_layer == 23 and body["layers"][23] > 0.8
    assert max(body["heads"][23]) > 0.8
