"""Long runs keep Q and K as int16 with a float32 scale per vector (attnlab.models.capture.packed).

- The kept values read back exactly as the values attention ran on; each is within absmax/65534 of the
  original (half a step of the grid), where float16 is within 2^-11 of each value.
- A capture in int16 rebuilds rows that sum to 1 and tiles within 2e-3 of the float32 model's; its size is
  (H + Hkv) x d x 2 + (H + Hkv) x 4 scale bytes + H x 4 LSE bytes per token per layer.
"""

from __future__ import annotations

import pytest
import torch

from attnlab.models.capture import capture, capture_dtype
from attnlab.models.capture.packed import LEVELS, Int16Vectors, bytes_per_value, nbytes


def test_kept_values_read_back_as_used_and_within_half_a_step():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 50, 64, generator=g, dtype=torch.float64).float() * 30
    x[0, 0, 0] = 0.0  # a zero vector stays zero (scale 0)
    kept, used = Int16Vectors.quantize(x)
    assert kept.values.dtype == torch.int16 and kept.scale.shape == (2, 3, 50, 1)
    assert torch.equal(kept.float(), used)
    assert torch.equal(kept[1, 2, 10:20], used[1, 2, 10:20])
    assert torch.equal(kept[0, torch.tensor([2, 0]), 5:7], used[0, torch.tensor([2, 0]), 5:7])
    step = x.abs().amax(-1, keepdim=True) / LEVELS
    # half a step, plus float32's own rounding of values x scale (2^-24 of absmax: 0.002 of a step)
    assert ((used - x).abs() <= step * 0.502 + 1e-12).all()
    assert torch.equal(used[0, 0, 0], torch.zeros(64))
    assert kept.nbytes == x.numel() * 2 + 2 * 3 * 50 * 4 == nbytes(kept)
    assert bytes_per_value(torch.int16, 64) == 2 + 4 / 64 and bytes_per_value(torch.float16, 64) == 2


def test_scores_from_int16_are_closer_than_from_float16():
    """The reason for the format: score errors from int16-with-scale are several times below float16's."""
    g = torch.Generator().manual_seed(1)
    q = torch.randn(4, 256, 64, generator=g) * 8
    k = torch.randn(4, 256, 64, generator=g) * 8
    k[..., 3] *= 20  # an outlier channel, as real keys have
    exact = (q.double() @ k.double().transpose(1, 2))
    int16 = Int16Vectors.quantize(q)[1].double() @ Int16Vectors.quantize(k)[1].double().transpose(1, 2)
    half = q.half().double() @ k.half().double().transpose(1, 2)
    assert (int16 - exact).abs().max() * 4 < (half - exact).abs().max()


def test_only_leading_dimensions_can_be_indexed():
    kept, _ = Int16Vectors.quantize(torch.randn(1, 2, 3, 8))
    with pytest.raises(IndexError, match="leading dimensions"):
        kept[0, 0, 0, 1]
    with pytest.raises(IndexError, match="leading dimensions"):
        kept[..., 1]


def test_gradient_passes_straight_through_the_rounding():
    x = torch.randn(3, 16, requires_grad=True)
    _, used = Int16Vectors.quantize(x)
    used.sum().backward()
    assert torch.equal(x.grad, torch.ones(3, 16))


def test_unknown_capture_dtype_is_refused():
    with pytest.raises(ValueError, match="float32, float16, bfloat16 or int16"), capture_dtype(torch.int8):
        pass


@pytest.mark.parametrize("backend", ["math", "sdpa", "flash"])
def test_an_int16_capture_rebuilds_the_weights_it_ran_with(backend):
    """Attention runs on the kept values, so the backend's LSE is theirs: rows sum to 1 and the tiles are the
    float32 model's within 2e-3; the record's size is what the format promises."""
    from tests.support import tiny_adapter

    adapter = tiny_adapter("t", family="decoder", positional="rope", max_positions=512)
    enc = adapter.tokenize("the quick brown fox jumps over the lazy dog " * 6, None)
    ref = adapter.forward_encoded(enc, "math").recorder
    with capture_dtype(torch.int16):
        run = adapter.forward_encoded(enc, backend).recorder
    rec = run.get("decoder", 1)
    assert isinstance(rec.q, Int16Vectors) and isinstance(rec.k, Int16Vectors)
    t = rec.shape[0]
    dense = run.dense("decoder", 1)
    torch.testing.assert_close(dense.sum(-1), torch.ones(rec.n_heads, t), atol=1e-5, rtol=0)
    assert (dense - ref.dense("decoder", 1)).abs().max() <= 2e-3
    h, hkv, d = rec.n_heads, rec.k.shape[1], rec.q.shape[-1]
    assert rec.nbytes() == t * ((h + hkv) * (d * 2 + 4) + h * 4)


def test_capture_keeps_plain_tensors_passed_to_add_in_its_format():
    with capture_dtype(torch.int16), capture() as rec:
        from attnlab.models.attention import AttentionSpec

        q, k = torch.randn(1, 2, 5, 8), torch.randn(1, 2, 5, 8)
        rec.add("decoder", 0, q, k, AttentionSpec(scale=8 ** -0.5, causal=True), None)
    stored = rec.get("decoder", 0)
    assert isinstance(stored.q, Int16Vectors)
    torch.testing.assert_close(rec.dense("decoder", 0).sum(-1), torch.ones(2, 5))
