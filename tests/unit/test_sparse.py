"""Sparse patterns: masks equal their brute-force definitions, tiles never lie, flash agrees."""

import random

import pytest
import torch

from attnlab.models.attention import (
    PATTERNS,
    AttentionSpec,
    BigBirdPattern,
    LongformerPattern,
    get_backend,
    make_pattern,
)
from attnlab.models.attention.flash import flash_attention

LONGFORMERS = [
    LongformerPattern(window=0),
    LongformerPattern(window=4, global_tokens=(0,)),
    LongformerPattern(window=7, global_tokens=(3, 20, 200)),
]
BIGBIRDS = [
    BigBirdPattern(block=1, window_blocks=1, global_blocks=0, random_blocks=0),
    BigBirdPattern(block=4, window_blocks=3, global_blocks=1, random_blocks=2, seed=0),
    BigBirdPattern(block=5, window_blocks=4, global_blocks=2, random_blocks=3, seed=11),
]
ALL = LONGFORMERS + BIGBIRDS


def brute_longformer(p: LongformerPattern, i: int, j: int) -> bool:
    return abs(i - j) <= p.window // 2 or i in p.global_tokens or j in p.global_tokens


def brute_bigbird(p: BigBirdPattern, i: int, j: int) -> bool:
    a, c = i // p.block, j // p.block
    return (abs(a - c) <= p.window_blocks // 2 or a < p.global_blocks or c < p.global_blocks
            or c in p.random_key_blocks(a).tolist())


def brute(p, i: int, j: int) -> bool:
    return brute_longformer(p, i, j) if isinstance(p, LongformerPattern) else brute_bigbird(p, i, j)


@pytest.mark.parametrize("pattern", ALL, ids=repr)
def test_allowed_equals_brute_force_on_arbitrary_positions(pattern):
    q_pos = torch.tensor([0, 1, 2, 5, 9, 10, 17, 31, 33])
    k_pos = torch.arange(40)
    got = pattern.allowed(q_pos, k_pos)
    want = torch.tensor([[brute(pattern, int(i), int(j)) for j in k_pos] for i in q_pos])
    assert got.dtype == torch.bool and torch.equal(got, want)


@pytest.mark.parametrize("pattern", ALL, ids=repr)
def test_diagonal_is_always_allowed(pattern):
    pos = torch.arange(97)
    assert pattern.allowed(pos, pos).diagonal().all()


@pytest.mark.parametrize("pattern", ALL, ids=repr)
def test_block_is_empty_never_lies(pattern):
    """Exact in both directions: a tile is empty iff no pair in it is allowed."""
    rng = random.Random(0)
    t = 64
    full = pattern.allowed(torch.arange(t), torch.arange(t))
    for _ in range(300):
        q0, k0 = rng.randrange(t), rng.randrange(t)
        q1, k1 = rng.randint(q0 + 1, min(t, q0 + 12)), rng.randint(k0 + 1, min(t, k0 + 12))
        assert pattern.block_is_empty(q0, q1, k0, k1) == (not full[q0:q1, k0:k1].any()), (q0, q1, k0, k1)
    assert pattern.block_is_empty(5, 5, 0, 10) and pattern.block_is_empty(0, 10, 7, 7)


@pytest.mark.parametrize("t", [1, 13, 50])
@pytest.mark.parametrize("pattern", ALL, ids=repr)
def test_density_is_the_fraction_of_allowed_pairs(pattern, t):
    pos = torch.arange(t)
    assert pattern.density(t) == pytest.approx(pattern.allowed(pos, pos).float().mean().item())


@pytest.mark.parametrize("pattern", ALL, ids=repr)
def test_describe_max_pools_the_mask(pattern):
    t, cells = 50, 8
    desc = pattern.describe(t, max_cells=cells)
    c = desc["cell_size"]
    full = pattern.allowed(torch.arange(t), torch.arange(t))
    n = len(desc["mask"])
    assert n <= cells and all(len(row) == n for row in desc["mask"])
    want = [[int(full[a * c:(a + 1) * c, b * c:(b + 1) * c].any()) for b in range(n)] for a in range(n)]
    assert desc["mask"] == want
    assert desc["density"] == pytest.approx(pattern.density(t))
    assert desc["name"] in PATTERNS and desc["seq_len"] == t
    assert make_pattern(desc["name"], **desc["params"]) == pattern  # params round-trip through JSON


def test_longformer_window_convention():
    p = LongformerPattern(window=4)  # two keys on each side
    row = p.allowed(torch.tensor([10]), torch.arange(20))[0]
    assert torch.nonzero(row).flatten().tolist() == [8, 9, 10, 11, 12]


def test_bigbird_random_blocks_are_deterministic_and_independent_of_length():
    a = BigBirdPattern(block=4, random_blocks=2, seed=5)
    b = BigBirdPattern(block=4, random_blocks=2, seed=5)
    short, long = torch.arange(40), torch.arange(400)
    assert torch.equal(a.allowed(short, short), b.allowed(long, long)[:40, :40])
    assert torch.equal(a.allowed(long, long), b.allowed(long, long))
    seeds = {tuple(BigBirdPattern(block=4, random_blocks=2, seed=s).random_key_blocks(50).tolist()) for s in range(5)}
    assert len(seeds) > 1
    # candidates are the past blocks between the global blocks and the window
    for qb in range(60):
        r = a.random_key_blocks(qb).tolist()
        assert len(r) == min(2, max(0, qb - 2)) and len(set(r)) == len(r)
        assert all(1 <= c < qb - 1 for c in r)


def test_registry_and_errors():
    assert set(PATTERNS) == {"longformer", "bigbird"}
    assert make_pattern("longformer", window=8, global_tokens=[0]) == LongformerPattern(8, (0,))
    with pytest.raises(KeyError, match="bigbird.*longformer"):
        make_pattern("reformer")
    with pytest.raises(ValueError, match="window"):
        LongformerPattern(window=-1)
    with pytest.raises(ValueError, match="global_tokens"):
        LongformerPattern(window=2, global_tokens=(-1,))
    with pytest.raises(ValueError, match="block"):
        BigBirdPattern(block=0)
    with pytest.raises(TypeError):
        make_pattern("bigbird", blocks=4)


@pytest.mark.parametrize("causal", [False, True], ids=["bidir", "causal"])
@pytest.mark.parametrize("pattern", ALL, ids=repr)
def test_flash_with_pattern_equals_the_dense_masked_reference(pattern, causal):
    b, h, t, d = 1, 2, 45, 8
    q, k, v = (torch.randn(b, h, t, d, requires_grad=True) for _ in range(3))
    spec = AttentionSpec(scale=d**-0.5, causal=causal, pattern=pattern)
    # math is the dense reference: it applies pattern.allowed to the whole T x T at once
    ref = get_backend("math")(q, k, v, spec)
    got = flash_attention(q, k, v, spec, block_q=8, block_k=16)
    torch.testing.assert_close(got.out, ref.out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.lse, ref.lse, atol=1e-5, rtol=1e-5)
    g_ref = torch.autograd.grad(ref.out.sum(), [q, k, v])
    g_got = torch.autograd.grad(got.out.sum(), [q, k, v])
    for a, c in zip(g_got, g_ref):
        torch.testing.assert_close(a, c, atol=1e-5, rtol=1e-5)
