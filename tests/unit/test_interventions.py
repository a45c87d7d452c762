"""Interventions on from-scratch models: head gates against eager references, importance against a finite
difference, patching, the logit lens against the model's own logits, and the induction lab's result."""

from __future__ import annotations

import json

import pytest
import torch

from attnlab.models import ScratchAdapter, TransformerConfig, build_model
from attnlab.models.gates import HeadGates, gate_heads, record_heads
from attnlab.models.interventions import (
    Unsupported,
    ablate,
    ablation_grid,
    anatomy,
    gradient_importance,
    logit_lens,
    patch_heads,
)
from attnlab.models.paths import ZOO
from attnlab.models.tokenization import CharTokenizer

CORPUS = "abcdefghijklmnopqrstuvwxyz .,"
TEXT = "the cat sat on the mat, the cat sat."


def tiny(family: str = "decoder", dtype=torch.float32, **cfg) -> ScratchAdapter:
    torch.manual_seed(0)
    tok = CharTokenizer.from_corpus(CORPUS)
    config = TransformerConfig(vocab_size=tok.vocab_size, d_model=32, n_layers=2, n_heads=4, family=family,
                               positional="rope" if family == "decoder" else "learned", max_positions=64, **cfg)
    model = build_model(config).to(dtype)
    with torch.no_grad():  # random LayerNorms are identities: perturb so a swapped weight shows
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return ScratchAdapter("tiny", model, tok)


def stacks(adapter):
    model = adapter.model
    return model.decoder if hasattr(model, "decoder") else model.encoder


def reference_logits(adapter, ids, edits: dict[tuple[int, int], callable]) -> torch.Tensor:
    """Eager reference: run the plain model with each (layer, head)'s slice of the input of o_proj rewritten
    by ``edits[(layer, head)](slice (B, T, hd)) -> new slice``."""
    hd = adapter.model.config.head_dim
    handles = []
    for layer, block in enumerate(stacks(adapter).blocks):
        def pre(module, args, layer=layer):
            x = args[0].clone()
            for (lay, head), fn in edits.items():
                if lay == layer:
                    x[..., head * hd:(head + 1) * hd] = fn(x[..., head * hd:(head + 1) * hd])
            return (x,)
        handles.append(block.attn.o_proj.register_forward_pre_hook(pre))
    try:
        with torch.no_grad():
            return adapter.model(ids).logits
    finally:
        for h in handles:
            h.remove()


@pytest.mark.parametrize("kv_heads", [None, 2])
@pytest.mark.parametrize("family", ["decoder", "encoder"])
def test_zero_gate_equals_zeroing_the_head_output(family, kv_heads):
    adapter = tiny(family, n_kv_heads=kv_heads)
    enc = adapter.tokenize(TEXT)
    heads = [(0, 1), (1, 3)]  # query heads: under GQA (2 KV heads) heads 0/1 and 2/3 share keys and values
    anat = anatomy(adapter)
    gates = HeadGates.ones(2, 4)
    for layer, head in heads:
        gates.scale[0, layer, head] = 0
    with torch.no_grad(), gate_heads(gates):
        gated = anat.run(enc.ids).logits
    ref = reference_logits(adapter, enc.ids, {h: torch.zeros_like for h in heads})
    plain = adapter.model(enc.ids).logits
    torch.testing.assert_close(gated, ref, atol=1e-6, rtol=0)
    assert (gated - plain).abs().max() > 1e-3  # the heads mattered: the test can fail


def test_mean_gate_is_the_running_mean_in_a_decoder_and_the_sequence_mean_in_an_encoder():
    for family in ("decoder", "encoder"):
        adapter = tiny(family)
        enc = adapter.tokenize(TEXT)
        T = enc.ids.shape[1]
        if family == "decoder":
            def fn(x, T=T):
                return x.cumsum(1) / torch.arange(1, T + 1)[None, :, None]
        else:
            def fn(x):
                return x.mean(1, keepdim=True).expand_as(x)
        anat = anatomy(adapter)
        gates = HeadGates.ones(2, 4, replacement="mean")
        gates.scale[0, 1, 2] = 0
        with torch.no_grad(), gate_heads(gates):
            gated = anat.run(enc.ids).logits
        torch.testing.assert_close(gated, reference_logits(adapter, enc.ids, {(1, 2): fn}), atol=1e-6, rtol=0)


def test_mean_ablation_does_not_leak_later_tokens_in_a_decoder():
    adapter = tiny("decoder")
    a, b = adapter.tokenize("the cat sat on"), adapter.tokenize("the cat sat on the mat.")
    anat = anatomy(adapter)
    outs = []
    for enc in (a, b):
        gates = HeadGates.ones(2, 4, replacement="mean")
        gates.scale[0, :, :] = 0
        with torch.no_grad(), gate_heads(gates):
            outs.append(anat.run(enc.ids).logits[0, : a.ids.shape[1]])
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=0)


def test_ablating_nothing_changes_nothing_exactly():
    for family in ("decoder", "encoder"):
        for mode in ("zero", "mean"):
            result = ablate(tiny(family), tiny(family).tokenize(TEXT), [], mode)
            assert result.loss_change == 0.0
            assert result.loss_before == result.loss_after and not result.changed_predictions


def test_ablate_reports_per_position_losses_and_changed_predictions():
    adapter = tiny("decoder")
    enc = adapter.tokenize(TEXT)
    result = ablate(adapter, enc, [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1), (1, 2), (1, 3)])
    T = enc.ids.shape[1]
    assert len(result.loss_before) == len(result.loss_after) == T and result.loss_after[-1] is None
    logits = reference_logits(adapter, enc.ids, {(la, h): torch.zeros_like for la in range(2) for h in range(4)})
    ref = torch.nn.functional.cross_entropy(logits[0, :-1], enc.ids[0, 1:], reduction="none")
    torch.testing.assert_close(torch.tensor(result.loss_after[:-1]), ref, atol=1e-5, rtol=0)
    assert result.loss_change == pytest.approx(float(ref.mean()) - sum(result.loss_before[:-1]) / (T - 1), abs=1e-5)
    top = logits[0].softmax(-1).max(-1)
    for c in result.changed_predictions:
        assert c.after_id == int(top.indices[c.position])
        assert c.after_prob == pytest.approx(float(top.values[c.position]))
        assert c.before_id != c.after_id


def test_gradient_importance_equals_a_finite_difference_of_the_gate():
    adapter = tiny("decoder", dtype=torch.float64)
    enc = adapter.tokenize(TEXT)
    anat = anatomy(adapter)
    grad = torch.tensor(gradient_importance(adapter, enc).importance)
    eps = 1e-5
    from attnlab.models.interventions.effects import mean_loss, position_losses

    for layer, head in [(0, 0), (1, 2), (1, 3)]:
        losses = []
        for sign in (1, -1):
            gates = HeadGates(torch.ones(1, 2, 4, dtype=torch.float64))
            gates.scale[0, layer, head] += sign * eps
            with torch.no_grad(), gate_heads(gates):
                logits = anat.run(enc.ids).logits
            losses.append(float(mean_loss(position_losses(logits, enc.ids, True, enc.special))[0]))
        fd = (losses[0] - losses[1]) / (2 * eps)
        assert grad[layer, head] == pytest.approx(abs(fd), rel=1e-5, abs=1e-9)


def test_ablation_grid_batched_equals_one_ablation_at_a_time():
    adapter = tiny("decoder")
    enc = adapter.tokenize(TEXT)
    grid = torch.tensor(ablation_grid(adapter, enc, chunk_tokens=3 * enc.ids.shape[1]))  # 3 rows per chunk
    for layer, head in [(0, 0), (0, 3), (1, 1)]:
        assert grid[layer, head] == pytest.approx(ablate(adapter, enc, [(layer, head)]).loss_change, abs=1e-5)


def test_patching_a_run_into_itself_restores_its_logits_exactly():
    adapter = tiny("decoder")
    enc = adapter.tokenize(TEXT)
    anat = anatomy(adapter)
    with torch.no_grad(), record_heads() as rec:
        clean = anat.run(enc.ids).logits
    gates = HeadGates(torch.zeros(1, 2, 4), replacement="patch", source=rec.outputs)
    with torch.no_grad(), gate_heads(gates):
        patched = anat.run(enc.ids).logits
    assert torch.equal(patched, clean)


def test_patching_one_head_equals_copying_its_clean_output():
    adapter = tiny("decoder")
    clean, corrupted = adapter.tokenize("the cat sat on"), adapter.tokenize("the dog ran on")
    hd = adapter.model.config.head_dim
    saved = {}
    block = stacks(adapter).blocks[1]
    handle = block.attn.o_proj.register_forward_pre_hook(lambda m, a: saved.__setitem__("x", a[0].clone()))
    with torch.no_grad():
        clean_logits = adapter.model(clean.ids).logits
    handle.remove()
    ref = reference_logits(adapter, corrupted.ids, {(1, 2): lambda x: saved["x"][..., 2 * hd:3 * hd]})
    result = patch_heads(adapter, clean, corrupted)
    target, pos = result.target_id, result.position
    assert target == int(clean_logits[0, pos].argmax())
    expected = (ref[0, pos, target] - result.corrupted_logit) / (result.clean_logit - result.corrupted_logit)
    assert result.heads[1][2] == pytest.approx(float(expected), abs=1e-4)
    assert result.complete and all(v is not None for row in result.heads for v in row)


def test_patching_refuses_texts_of_different_lengths():
    adapter = tiny("decoder")
    with pytest.raises(ValueError, match="corrupted: 3 tokens, but clean has 4"):
        patch_heads(adapter, adapter.tokenize("abcd"), adapter.tokenize("abc"))


@pytest.mark.parametrize("family", ["decoder", "encoder"])
def test_last_layer_lens_equals_the_model_logits(family):
    adapter = tiny(family)
    enc = adapter.tokenize(TEXT)
    lens = logit_lens(adapter, enc, k=3)
    with torch.no_grad():
        logits = adapter.model(enc.ids).logits[0]
    torch.testing.assert_close(lens.lens_logits, logits, atol=1e-6, rtol=0)
    T = enc.ids.shape[1]
    assert len(lens.residual_norm) == 3 and len(lens.attention_norm) == len(lens.ffn_norm) == 2
    assert len(lens.top_ids) == 2 and len(lens.top_ids[0]) == T and len(lens.top_ids[0][0]) == 3
    probs = logits.softmax(-1)
    assert lens.top_ids[-1][0][0] == int(probs[0].argmax())
    torch.testing.assert_close(torch.tensor(lens.final_prob[-1]), probs.max(-1).values, atol=1e-6, rtol=0)
    # the stream entering block 0 is the embedding; the attention's contribution is what o_proj wrote
    with torch.no_grad():
        emb = stacks(adapter).embed(enc.ids, torch.arange(T))
    torch.testing.assert_close(torch.tensor(lens.residual_norm[0]), emb[0].norm(dim=-1), atol=1e-5, rtol=0)


def test_errors_name_the_field():
    adapter = tiny("decoder")
    enc = adapter.tokenize(TEXT)
    with pytest.raises(ValueError, match=r"heads: layer 5 is outside 0..1"):
        ablate(adapter, enc, [(5, 0)])
    with pytest.raises(ValueError, match=r"heads: head 4 is outside 0..3"):
        ablate(adapter, enc, [(0, 4)])
    with pytest.raises(ValueError, match=r"layers: \[2\] outside 0..1"):
        logit_lens(adapter, enc, layers=[2])
    t5 = tiny("encoder-decoder")
    with pytest.raises(Unsupported, match="encoder-decoder"):
        ablate(t5, t5.tokenize(TEXT), [(0, 0)])


def test_heads_lab_results_reproduce_on_the_shipped_induction_model():
    """The heads lab's checkable result (models/zoo/heads/results.json) is what the shipped checkpoint gives."""
    from attnlab.models.labs.heads import induction_ablation

    shipped = json.loads((ZOO / "heads" / "results.json").read_text())["induction"]
    again = induction_ablation()
    assert again["repeated_half_loss"] == pytest.approx(shipped["repeated_half_loss"], abs=1e-4)
    assert again["layer1_ablated_loss"] == pytest.approx(shipped["layer1_ablated_loss"], abs=1e-3)
    assert again["best_head_ablated_loss"] == pytest.approx(shipped["best_head_ablated_loss"], abs=1e-3)
    assert again["layer1_ablated_loss"] > 10 * again["repeated_half_loss"]


def test_patching_stops_at_its_budget_and_says_so():
    adapter = tiny("decoder")
    result = patch_heads(adapter, adapter.tokenize("the cat sat"), adapter.tokenize("the dog sat"), budget_s=0.0)
    assert not result.complete
    assert result.layers == [None, None] and all(v is None for row in result.heads for v in row)
