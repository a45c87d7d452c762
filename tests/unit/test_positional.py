"""Positional schemes against their references (Hugging Face code on the same inputs)."""

from __future__ import annotations

import math

import pytest
import torch

from attnlab.models.positional import POSITIONAL, alibi_slopes, make_positional, t5_bucket


@pytest.mark.parametrize("name", sorted(POSITIONAL))
def test_describe_gives_plot_data(name):
    scheme = make_positional(name, d_model=32, n_heads=4, max_positions=64)
    data = scheme.describe(max_len=16)
    assert data["scheme"] == name
    if name in ("sinusoidal", "learned"):
        assert torch.tensor(data["matrix"]).shape == (16, 32)
    if name in ("sinusoidal", "learned", "rope"):
        sim = data["similarity"]
        assert len(sim["offset"]) == 16 and sim["value"][0] == pytest.approx(1.0)
    if name in ("alibi", "t5_relative"):
        assert torch.tensor(data["bias"]).shape == (4, 16, 16)
    if name == "rope":
        assert len(data["frequencies"]) == 4  # head_dim 8 -> 4 rotation pairs
    if name == "t5_relative":
        assert len(data["buckets"]["offset"]) == 31


def test_sinusoidal_matches_the_paper_formula():
    enc = make_positional("sinusoidal", d_model=8, n_heads=2, max_positions=64).embed(torch.arange(5))
    pos, i = 3, 2  # PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(...)
    assert enc[pos, 2 * i].item() == pytest.approx(math.sin(pos / 10000 ** (2 * i / 8)), abs=1e-6)
    assert enc[pos, 2 * i + 1].item() == pytest.approx(math.cos(pos / 10000 ** (2 * i / 8)), abs=1e-6)


def test_learned_refuses_to_extrapolate():
    scheme = make_positional("learned", d_model=8, n_heads=2, max_positions=16)
    with pytest.raises(ValueError, match="past the learned table of 16 positions"):
        scheme.embed(torch.arange(17))


@pytest.mark.parametrize("bidirectional", [True, False])
def test_t5_buckets_match_transformers(bidirectional):
    from transformers.models.t5.modeling_t5 import T5Attention

    relative = torch.arange(-300, 300)[None, :] - torch.arange(0, 5)[:, None]
    ours = t5_bucket(relative, bidirectional, 32, 128)
    ref = T5Attention._relative_position_bucket(relative, bidirectional=bidirectional, num_buckets=32, max_distance=128)
    assert torch.equal(ours, ref)


@pytest.mark.parametrize("n_heads", [4, 8, 12, 6])
def test_alibi_slopes_match_bloom(n_heads):
    from transformers.models.bloom.modeling_bloom import build_alibi_tensor

    mask = torch.ones(1, 5)
    # BLOOM's alibi is slope * position; the slope per head is alibi[h, 0, 1]
    ref = build_alibi_tensor(mask, n_heads, torch.float32).view(n_heads, 1, 5)[:, 0, 1]
    torch.testing.assert_close(alibi_slopes(n_heads), ref)


def test_alibi_bias_is_linear_in_distance():
    scheme = make_positional("alibi", d_model=32, n_heads=4, max_positions=64, causal=False)
    bias = scheme.bias()(torch.arange(6), torch.arange(6))
    slopes = alibi_slopes(4)
    assert bias[1, 5, 2].item() == pytest.approx(-3 * slopes[1].item())
    assert bias[1, 2, 5].item() == pytest.approx(-3 * slopes[1].item())  # bidirectional: |i - j|


def test_rope_matches_llama_rotation():
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    scheme = make_positional("rope", d_model=64, n_heads=4, max_positions=64, base=10000.0)
    q, k = torch.randn(1, 4, 7, 16), torch.randn(1, 4, 7, 16)
    pos = torch.arange(3, 10)
    freqs = pos.float()[:, None] * scheme.inv_freq[None]
    emb = torch.cat([freqs, freqs], dim=-1)[None]
    ref_q, ref_k = apply_rotary_pos_emb(q, k, emb.cos(), emb.sin())
    torch.testing.assert_close(scheme.rotate(q, pos), ref_q)
    torch.testing.assert_close(scheme.rotate(k, pos), ref_k)


def test_rope_scores_depend_only_on_offset():
    scheme = make_positional("rope", d_model=32, n_heads=2, max_positions=64)
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)

    def score(i, j):
        return (scheme.rotate(q, torch.tensor([i])) * scheme.rotate(k, torch.tensor([j]))).sum().item()

    assert score(5, 2) == pytest.approx(score(13, 10), abs=1e-5)


def test_unknown_scheme_lists_known_ones():
    with pytest.raises(ValueError, match="unknown positional scheme 'xpos'; known: \\['alibi'"):
        make_positional("xpos", d_model=8, n_heads=2, max_positions=8)


@pytest.mark.parametrize("causal", [True, False])
def test_a_bias_for_some_heads_equals_those_heads_of_the_whole_bias(causal):
    """ALiBi and T5 buckets compute only the heads a pooled overview asks for; the values are those heads'
    rows of the full (H, tq, tk) bias, through AttentionSpec.bias_for_heads."""
    from attnlab.models.attention import AttentionSpec
    from attnlab.models.positional import ALiBiBias, T5Bias

    torch.manual_seed(0)
    q_pos, k_pos = torch.arange(40, 90), torch.arange(0, 120)
    heads = torch.tensor([3, 1])
    for bias in (ALiBiBias(6, causal), T5Bias(6, bidirectional=not causal)):
        if isinstance(bias, T5Bias):
            torch.nn.init.normal_(bias.relative_attention_bias.weight)
        spec = AttentionSpec(scale=0.125, causal=causal, bias=bias)
        some = spec.bias_for_heads(q_pos, k_pos, heads, torch.float32)
        assert torch.equal(some, bias(q_pos, k_pos)[heads])
    assert AttentionSpec(scale=1.0).bias_for_heads(q_pos, k_pos, heads, torch.float32) is None
