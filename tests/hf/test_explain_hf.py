"""attnlab.models.explain on Hugging Face models: tiny GPT-2 (Conv1D projection), BERT and Llama (GQA + RoPE),
the bundled MiniLM and SmolLM2. Each step is checked against the model's own tensors, read with hooks on the
modules transformers names (the output projection's input and output, the query projection's output)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")

from attnlab.models import default_registry  # noqa: E402
from attnlab.models.explain import query_computation  # noqa: E402
from attnlab.models.hf import load_hf  # noqa: E402

TEXT = "the cat sat on a mat and the dog ran far away in the rain"

# (output projection, query projection) of layer {l}, as transformers names them
PATHS = {
    "gpt2": ("transformer.h.{l}.attn.c_proj", None),
    "bert": ("bert.encoder.layer.{l}.attention.output.dense", None),
    "minilm": ("encoder.layer.{l}.attention.output.dense", None),
    "llama": ("model.layers.{l}.self_attn.o_proj", "model.layers.{l}.self_attn.q_proj"),
}


def check_head_computations(adapter, paths, layers, queries, atol=1e-5):
    """Every invariant of the computation view on the given layers and queries, all heads."""
    o_path, q_path = paths
    seen = {}
    handles = []
    for layer in layers:
        o_mod = adapter.model.get_submodule(o_path.format(l=layer))
        handles.append(o_mod.register_forward_hook(
            lambda m, args, out, layer=layer: seen.update({(layer, "in"): args[0], (layer, "out"): out})))
        if q_path:
            handles.append(adapter.model.get_submodule(q_path.format(l=layer)).register_forward_hook(
                lambda m, args, out, layer=layer: seen.update({(layer, "q"): out})))
    try:
        result = adapter.forward(TEXT, keep_values=True)
    finally:
        for h in handles:
            h.remove()
    rec = result.recorder
    kind = rec.kinds[0]
    for layer in layers:
        record = rec.get(kind, layer)
        w_o, b_o = adapter.output_projection(kind, layer)
        hd = record.q.shape[-1]
        t_q = record.shape[0]
        for query in queries(t_q):
            projected = []
            for head in range(record.n_heads):
                step = query_computation(record, head, query, w_o)
                row = rec.tile(kind, layer, head, rows=(query, query + 1))[0]
                torch.testing.assert_close(step.weights, row, atol=1e-6, rtol=1e-5)  # float32 LSE
                torch.testing.assert_close(torch.softmax(step.scores, -1), step.weights, atol=1e-6, rtol=0)
                own = seen[(layer, "in")][0, query, head * hd:(head + 1) * hd]
                torch.testing.assert_close(step.output, own, atol=atol, rtol=0)
                projected.append(step.output_projected)
            block = torch.stack(projected).sum(0) + (b_o if b_o is not None else 0)
            torch.testing.assert_close(block, seen[(layer, "out")][0, query], atol=atol * 10, rtol=1e-4)
        if q_path:
            q_pre = seen[(layer, "q")][0].view(t_q, -1, hd).transpose(0, 1)
            back = adapter.unrotate(record.q[0], torch.arange(t_q))
            torch.testing.assert_close(back, q_pre, atol=atol, rtol=1e-4)
        else:
            assert adapter.unrotate(record.q[0], torch.arange(t_q)) is None
    return rec


@pytest.mark.parametrize("kind", ["gpt2", "bert", "llama"])
def test_tiny_hf_computation_matches_the_model(tiny_dir, kind):
    adapter = load_hf(f"tiny-{kind}", tiny_dir[kind])
    rec = check_head_computations(adapter, PATHS[kind], [0, 1], lambda t: range(t))
    if kind == "llama":  # grouped-query attention: V kept once per KV head
        assert rec.records[0].v.shape[1] == 2 and rec.records[0].n_heads == 4


def test_minilm_computation_matches_the_model():
    registry = default_registry()
    if not registry.info("minilm").available:
        pytest.skip(registry.info("minilm").reason)
    adapter = registry.load("minilm")
    check_head_computations(adapter, PATHS["minilm"], [0, 5], lambda t: (0, t // 2, t - 1))
    with pytest.raises(KeyError, match="layer 6"):
        adapter.output_projection("encoder", 6)


@pytest.mark.slow
def test_smollm2_computation_matches_the_model():
    registry = default_registry()
    if not registry.info("smollm2").available:
        pytest.skip(registry.info("smollm2").reason)
    adapter = registry.load("smollm2")
    check_head_computations(adapter, PATHS["llama"], [0, 29], lambda t: (0, t - 1), atol=1e-4)


def test_minilm_trained_position_table():
    from attnlab.models.positional_tables import positional_tables

    registry = default_registry()
    if not registry.info("minilm").available:
        pytest.skip(registry.info("minilm").reason)
    model = registry.load("minilm").model
    (table,) = positional_tables(model, max_len=64)["tables"]
    weight = model.embeddings.position_embeddings.weight.detach()
    assert (table["n_positions"], table["d_model"]) == (512, 384) and table["name"].endswith("position_embeddings")
    torch.testing.assert_close(torch.as_tensor(table["norms"]), weight[:64].norm(dim=-1))
    by_offset = table["by_offset"]
    assert by_offset[1] > by_offset[32]  # trained: near positions are more alike than far ones
