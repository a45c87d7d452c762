"""attnlab.models.positional_tables on from-scratch models: learned tables and T5 biases read back exactly."""

from __future__ import annotations

import torch

from attnlab.models.positional_tables import positional_tables
from tests.support import tiny_adapter


def test_learned_table_similarity_and_offsets(one_thread):
    model = tiny_adapter("m", family="decoder", positional="learned", max_positions=48).model
    out = positional_tables(model, max_len=20)
    assert out["t5_biases"] == []
    (table,) = out["tables"]
    weight = dict(model.named_modules())[table["name"]].table.weight.detach()
    assert (table["n_positions"], table["d_model"], table["shown"]) == (48, 32, 20)
    sim = torch.as_tensor(table["similarity"])
    ref = torch.nn.functional.cosine_similarity(weight[:20, None].double(), weight[None, :20].double(), dim=-1)
    torch.testing.assert_close(sim.double(), ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.as_tensor(table["norms"]), weight[:20].norm(dim=-1))
    assert abs(table["by_offset"][0] - 1) < 1e-6
    assert abs(table["by_offset"][3] - float(ref.diagonal(3).mean())) < 1e-6


def test_t5_bias_by_offset_is_what_the_model_adds(one_thread):
    model = tiny_adapter("m", family="encoder-decoder", positional="t5_relative", max_positions=64).model
    out = positional_tables(model, max_len=10)
    assert out["tables"] == []
    biases = out["t5_biases"]
    assert sorted(b["bidirectional"] for b in biases) == [False, True]  # decoder (causal) and encoder
    modules = dict(model.named_modules())
    for b in biases:
        module = modules[b["name"]]
        offsets = torch.tensor(b["offsets"])
        q = torch.tensor([9])
        added = module(q, q + offsets[offsets >= -9])  # (H, 1, keys) for keys at q + offset >= 0
        by_offset = torch.as_tensor(b["by_offset"])
        torch.testing.assert_close(by_offset[:, : added.shape[-1]], added[:, 0].detach())
        assert torch.as_tensor(b["buckets"]).shape == (b["num_buckets"], b["n_heads"])
