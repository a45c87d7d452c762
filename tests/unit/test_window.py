"""SlidingWindow (Mistral's mask): brute force, tile skipping never lies, flash equals math."""

from __future__ import annotations

import pytest
import torch

from attnlab.models.attention import AttentionSpec, get_backend
from attnlab.models.attention.flash import flash_attention
from attnlab.models.attention.window import SlidingWindow


@pytest.mark.parametrize("size", [1, 3, 8])
def test_allowed_is_the_band_behind_each_query(size):
    w = SlidingWindow(size)
    pos = torch.arange(20)
    allowed = w.allowed(pos, pos)
    for i in range(20):
        for j in range(20):
            assert bool(allowed[i, j]) == (j > i - size), (i, j)
    causal = allowed & (pos[None, :] <= pos[:, None])
    assert causal.sum(-1).tolist() == [min(i + 1, size) for i in range(20)]  # every query keeps min(i+1, W) keys
    assert w.density(20) == pytest.approx(causal.sum().item() / (20 * 21 / 2))


def test_block_is_empty_never_lies():
    w = SlidingWindow(5)
    pos = torch.arange(40)
    allowed = w.allowed(pos, pos)
    for q0 in range(0, 40, 4):
        for k0 in range(0, 40, 3):
            q1, k1 = q0 + 4, min(k0 + 3, 40)
            if w.block_is_empty(q0, q1, k0, k1):
                assert not allowed[q0:q1, k0:k1].any(), (q0, k0)
    assert w.block_is_empty(20, 24, 0, 10) and not w.block_is_empty(20, 24, 10, 20)


def test_size_must_be_positive():
    with pytest.raises(ValueError, match="sliding window size must be >= 1, got 0"):
        SlidingWindow(0)


def test_flash_with_window_equals_math_and_skips_tiles():
    b, h, t, d = 1, 2, 70, 8
    q, k, v = (torch.randn(b, h, t, d) for _ in range(3))
    spec = AttentionSpec(scale=d**-0.5, causal=True, pattern=SlidingWindow(9))
    ref = get_backend("math")(q, k, v, spec)
    got = flash_attention(q, k, v, spec, block_q=8, block_k=8)
    torch.testing.assert_close(got.out, ref.out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.lse, ref.lse, atol=1e-5, rtol=1e-5)
    skipped = sum(spec.block_is_empty(q0, q0 + 8, k0, k0 + 8) for q0 in range(0, t, 8) for k0 in range(0, t, 8))
    assert skipped > 30  # most of the lower triangle of 9 x 9 tiles lies left of the band
