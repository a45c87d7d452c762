"""Head-type scores, rollout and flow against brute force on dense maps; the profiler."""

from __future__ import annotations

import pytest
import torch

from attnlab.models import TransformerConfig, build_model, capture
from attnlab.models.analysis import flow, head_scores, rollout
from attnlab.models.profiler import profile_model


@pytest.fixture(scope="module")
def captured():
    torch.manual_seed(0)
    model = build_model(TransformerConfig(d_model=32, n_heads=4, n_layers=3, vocab_size=20, positional="rope")).eval()
    segment = torch.randint(1, 20, (1, 15))
    ids = torch.cat([segment, segment], dim=1)  # repeats give induction / duplicate targets
    with torch.no_grad(), capture() as rec:
        model(ids)
    return rec, ids[0]


def brute_force(w: torch.Tensor, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """The same scores from one dense (H, T, T) map, row by row."""
    H, T, _ = w.shape
    prev, ind, dup, offset, diag = [], [], [], [], []
    for i in range(T):
        if i >= 1:
            prev.append(w[:, i, i - 1])
        earlier = [j for j in range(i) if ids[j] == ids[i]]
        if earlier:
            dup.append(w[:, i, earlier].sum(-1))
        targets = [j + 1 for j in earlier if j + 1 < i]
        if targets:
            ind.append(w[:, i, targets].sum(-1))
        offset.append(sum(w[:, i, j] * (i - j) for j in range(T)))
        diag.append(sum(w[:, i, j] for j in range(T) if abs(i - j) <= 1))
    logw = torch.where(w > 0, w.log(), torch.zeros_like(w))
    return {
        "previous_token": torch.stack(prev).mean(0),
        "induction": torch.stack(ind).mean(0),
        "duplicate_token": torch.stack(dup).mean(0),
        "first_token_sink": w[:, :, 0].mean(-1),
        "mean_offset": torch.stack(offset).mean(0),
        "diagonality": torch.stack(diag).mean(0),
        "entropy": -(w * logw).sum(-1).mean(-1),
    }


@pytest.mark.parametrize("band", [7, 128])
def test_head_scores_equal_brute_force(captured, band):
    rec, ids = captured
    scores = head_scores(rec, "decoder", ids, band=band)
    for layer in range(3):
        ref = brute_force(rec.dense("decoder", layer), ids)
        for name, value in ref.items():
            torch.testing.assert_close(torch.tensor(scores[name][layer], dtype=torch.float32), value,
                                       atol=1e-5, rtol=1e-4, msg=f"{name} layer {layer}")


def test_special_sink_counts_special_keys(captured):
    rec, ids = captured
    special = [i in (0, 29) for i in range(30)]
    scores = head_scores(rec, "decoder", ids, special=special)
    w = rec.dense("decoder", 1)
    torch.testing.assert_close(torch.tensor(scores["special_sink"][1], dtype=torch.float32),
                               (w[:, :, 0] + w[:, :, 29]).mean(-1), atol=1e-6, rtol=1e-5)


def test_rollout_is_the_product_of_residual_mixed_maps(captured):
    rec, _ = captured
    out = rollout(rec, "decoder")
    assert out.shape == (3, 30, 30)
    torch.testing.assert_close(out.sum(-1), torch.ones(3, 30))
    eye = torch.eye(30)
    a = [0.5 * rec.dense("decoder", layer).mean(0) + 0.5 * eye for layer in range(3)]
    torch.testing.assert_close(out[-1], a[2] @ a[1] @ a[0], atol=1e-6, rtol=1e-5)
    # causal: nothing flows from the future
    assert torch.triu(out[-1], diagonal=1).abs().max() < 1e-7


def test_flow_is_widest_path(captured):
    rec, _ = captured
    out = flow(rec, "decoder", chunk=7)
    torch.testing.assert_close(out.sum(-1), torch.ones(3, 30))
    a = [0.5 * rec.dense("decoder", layer).mean(0) + 0.5 * torch.eye(30) for layer in range(2)]
    i, j = 17, 4
    best = max(min(a[1][i, k].item(), a[0][k, j].item()) for k in range(30))
    raw = torch.stack([torch.minimum(a[1][i], a[0][:, jj]).max() for jj in range(30)])
    assert out[1, i, j].item() == pytest.approx(best / raw.sum().item(), rel=1e-5)


def test_profiler_times_every_component():
    model = build_model(TransformerConfig(d_model=32, n_heads=4, n_layers=2, vocab_size=50))
    prof = profile_model(model, {"ids": torch.randint(0, 50, (1, 16))}, repeats=1).to_dict()
    names = {row["component"] for row in prof["components"]}
    assert {"embedding", "attention", "feed_forward", "norm", "head", "other"} <= names
    assert all(row["forward_ms"] >= 0 and row["backward_ms"] >= 0 for row in prof["components"])
    timed = sum(row["forward_ms"] for row in prof["components"] if row["component"] != "other")
    assert 0 < timed <= prof["total_forward_ms"] * 1.01
    assert next(r for r in prof["components"] if r["component"] == "attention")["backward_ms"] > 0


def test_profiler_sees_backward_of_modules_called_with_keywords():
    """HF attention modules take keyword tensors, which module backward hooks do not see."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    model = LlamaForCausalLM(cfg)
    prof = profile_model(model, {"input_ids": torch.randint(0, 64, (1, 16))}, repeats=1).to_dict()
    rows = {row["component"]: row for row in prof["components"]}
    assert rows["attention"]["backward_ms"] > 0 and rows["feed_forward"]["backward_ms"] > 0
    assert rows["other"]["backward_ms"] < 0.5 * prof["total_backward_ms"]
