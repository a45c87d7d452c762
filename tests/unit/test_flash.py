"""The flash backend equals the math reference: outputs, row LSE and gradients.

Every case runs with tile sizes that do not divide the sequence lengths, so partial
tiles, skipped tiles and tiles crossing the causal diagonal are all exercised.
"""

import pytest
import torch
from torch import nn

from attnlab.models.attention import AttentionSpec, BigBirdPattern, LongformerPattern, get_backend
from attnlab.models.attention import flash as flash_module
from attnlab.models.attention.flash import flash_attention

B, H, D = 2, 3, 8
ATOL = 1e-5


class AlibiLike:
    """ALiBi-style bias: -slope_h * |i - j| with fixed per-head slopes (no parameters)."""

    def __init__(self, n_heads: int):
        self.n_heads = n_heads
        self.slopes = 2.0 ** -torch.arange(1, n_heads + 1, dtype=torch.float32)

    def __call__(self, q_pos, k_pos):
        dist = (q_pos[:, None] - k_pos[None, :]).abs().float()  # (tq, tk)
        return -self.slopes[:, None, None] * dist  # (H, tq, tk)


class T5Like(nn.Module):
    """T5-style learned bias: one trainable scalar per head and clipped relative offset."""

    def __init__(self, n_heads: int, max_offset: int = 6):
        super().__init__()
        self.n_heads, self.max_offset = n_heads, max_offset
        self.table = nn.Embedding(2 * max_offset + 1, n_heads)
        nn.init.normal_(self.table.weight, std=0.5)

    def forward(self, q_pos, k_pos):
        rel = (k_pos[None, :] - q_pos[:, None]).clamp(-self.max_offset, self.max_offset) + self.max_offset
        return self.table(rel).permute(2, 0, 1)  # (tq, tk, H) -> (H, tq, tk)


def _padding(t_k: int, left: int = 0) -> torch.Tensor:
    """Key padding (B, Tk): batch 0 has all keys; batch 1 pads 3 at the end (and `left` at the start)."""
    pad = torch.ones(B, t_k, dtype=torch.bool)
    pad[1, -3:] = False
    pad[1, :left] = False
    return pad


def make_spec(case: str, causal: bool, t_k: int, q_offset: int = 0) -> AttentionSpec:
    kwargs = dict(scale=D**-0.5, causal=causal, q_offset=q_offset)
    if case == "padding":
        kwargs["key_padding"] = _padding(t_k)
    elif case == "alibi":
        kwargs["bias"] = AlibiLike(H)
    elif case == "t5":
        kwargs["bias"] = T5Like(H)
    elif case == "longformer":
        kwargs["pattern"] = LongformerPattern(window=6, global_tokens=(0, 9))
    elif case == "bigbird":
        kwargs["pattern"] = BigBirdPattern(block=4, window_blocks=3, global_blocks=1, random_blocks=2, seed=3)
    elif case == "padding+alibi+longformer":
        kwargs.update(key_padding=_padding(t_k), bias=AlibiLike(H),
                      pattern=LongformerPattern(window=4, global_tokens=(2,)))
    return AttentionSpec(**kwargs)


CASES = ["plain", "padding", "alibi", "t5", "longformer", "bigbird", "padding+alibi+longformer"]
BLOCKS = [(5, 7), (16, 8), (None, None)]


def qkv(t_q: int, t_k: int, dtype=torch.float32, requires_grad=False):
    q = torch.randn(B, H, t_q, D, dtype=dtype)
    k = torch.randn(B, H, t_k, D, dtype=dtype)
    v = torch.randn(B, H, t_k, D, dtype=dtype)
    return [x.requires_grad_(requires_grad) for x in (q, k, v)]


def assert_close(a, b, atol=ATOL):
    torch.testing.assert_close(a, b, atol=atol, rtol=1e-5)


@pytest.mark.parametrize("blocks", BLOCKS, ids=lambda b: f"blocks{b[0]}x{b[1]}")
@pytest.mark.parametrize("causal", [False, True], ids=["bidir", "causal"])
@pytest.mark.parametrize("case", CASES)
def test_forward_and_lse_match_math(case, causal, blocks):
    t = 23
    q, k, v = qkv(t, t)
    spec = make_spec(case, causal, t)
    ref = get_backend("math")(q, k, v, spec)
    got = flash_attention(q, k, v, spec, block_q=blocks[0], block_k=blocks[1])
    assert got.weights is None and got.lse.dtype == torch.float32
    assert_close(got.out, ref.out)
    assert_close(got.lse, ref.lse)


@pytest.mark.parametrize("causal", [False, True], ids=["bidir", "causal"])
@pytest.mark.parametrize("case", CASES)
def test_gradients_match_math(case, causal):
    t = 19
    q, k, v = qkv(t, t, requires_grad=True)
    spec = make_spec(case, causal, t)
    d_out = torch.randn(B, H, t, D)
    grads = {}
    for name in ("math", "flash"):
        fn = get_backend(name) if name == "math" else lambda *a: flash_attention(*a, block_q=6, block_k=5)
        res = fn(q, k, v, spec)
        # a loss on the lse too checks the lse output's gradient path
        loss = (res.out * d_out).sum() + res.lse.sum()
        params = list(spec.bias.parameters()) if isinstance(spec.bias, nn.Module) else []
        grads[name] = torch.autograd.grad(loss, [q, k, v, *params])
    for g_flash, g_math in zip(grads["flash"], grads["math"]):
        assert_close(g_flash, g_math)


def test_t5_bias_parameters_get_their_gradient_through_flash():
    """Training a T5 relative bias under flash: the bias table's gradient equals math's."""
    t = 17
    q, k, v = qkv(t, t)
    spec = make_spec("t5", True, t)
    table = spec.bias.table.weight
    for name in ("math", "flash"):
        table.grad = None
        get_backend(name)(q, k, v, spec).out.square().sum().backward()
        grads = table.grad.clone()
        if name == "math":
            ref = grads
    assert grads.abs().sum() > 0
    assert_close(grads, ref)


@pytest.mark.parametrize("case", ["plain", "padding", "alibi", "bigbird"])
def test_kv_cache_queries_with_offset(case):
    """Tq != Tk: the last queries against all keys equal the same rows of a full pass."""
    t_k, t_q = 29, 6
    q_all, k, v = qkv(t_k, t_k)
    full = flash_attention(q_all, k, v, make_spec(case, True, t_k), block_q=4, block_k=7)
    spec = make_spec(case, True, t_k, q_offset=t_k - t_q)
    q = q_all[:, :, -t_q:]
    ref = get_backend("math")(q, k, v, spec)
    got = flash_attention(q, k, v, spec, block_q=4, block_k=7)
    assert_close(got.out, ref.out)
    assert_close(got.lse, ref.lse)
    assert_close(got.out, full.out[:, :, -t_q:])


def test_kv_cache_gradients_with_offset():
    t_k, t_q = 21, 5
    q, _, _ = qkv(t_q, t_q, requires_grad=True)
    _, k, v = qkv(t_k, t_k, requires_grad=True)
    spec = make_spec("alibi", True, t_k, q_offset=t_k - t_q)
    grads = [torch.autograd.grad(get_backend(n)(q, k, v, spec).out.sum(), [q, k, v]) for n in ("math", "flash")]
    for a, b in zip(*grads):
        assert_close(a, b)


def test_fully_masked_rows_give_zero_output_and_minus_inf_lse():
    """Left padding under a causal mask leaves the first queries of batch 1 with no key."""
    t, left = 12, 4
    q, k, v = qkv(t, t, requires_grad=True)
    spec = AttentionSpec(scale=D**-0.5, causal=True, key_padding=_padding(t, left=left))
    res = flash_attention(q, k, v, spec, block_q=3, block_k=5)
    assert torch.equal(res.out[1, :, :left], torch.zeros(H, left, D))
    assert torch.isneginf(res.lse[1, :, :left]).all()
    assert torch.isfinite(res.out).all() and torch.isfinite(res.lse[0]).all()
    ref = get_backend("math")(q, k, v, spec)
    assert_close(res.out, ref.out)
    assert_close(res.lse, ref.lse)
    res.out.sum().backward()
    assert all(torch.isfinite(x.grad).all() for x in (q, k, v))
    assert torch.equal(q.grad[1, :, :left], torch.zeros(H, left, D))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inputs_accumulate_in_float32(dtype):
    t = 40
    q, k, v = qkv(t, t, dtype=dtype)
    spec = make_spec("padding", True, t)
    got = flash_attention(q, k, v, spec, block_q=16, block_k=16)
    ref = get_backend("math")(q.float(), k.float(), v.float(), spec)
    assert got.out.dtype == dtype and got.lse.dtype == torch.float32
    assert_close(got.out.float(), ref.out, atol=2e-2)
    assert_close(got.lse, ref.lse, atol=1e-4)
    qg = q.clone().requires_grad_()
    flash_attention(qg, k, v, spec).out.float().sum().backward()
    assert qg.grad.dtype == dtype


@pytest.mark.parametrize("causal", [False, True], ids=["bidir", "causal"])
@pytest.mark.parametrize("case", ["plain", "padding", "alibi"])
def test_sdpa_matches_math(case, causal):
    t = 20
    q, k, v = qkv(t, t)
    spec = make_spec(case, causal, t)
    assert_close(get_backend("sdpa")(q, k, v, spec).out, get_backend("math")(q, k, v, spec).out)


@pytest.mark.parametrize("name", ["flash", "sdpa"])
def test_backends_without_weights_refuse_need_weights(name):
    q, k, v = qkv(4, 4)
    backend = get_backend(name)
    assert not backend.returns_weights
    with pytest.raises(ValueError, match="cannot return attention weights"):
        backend(q, k, v, AttentionSpec(scale=1.0), need_weights=True)


def test_flash_is_registered_with_its_capabilities():
    backend = get_backend("flash")
    assert backend.returns_lse and not backend.returns_weights and backend.description
    with pytest.raises(ValueError, match="block sizes"):
        flash_attention(*qkv(4, 4), AttentionSpec(scale=1.0), block_q=0, block_k=4)


@pytest.mark.parametrize("case", ["plain", "padding", "alibi"])
@pytest.mark.parametrize("causal", [False, True], ids=["bidir", "causal"])
def test_calls_large_enough_for_the_worker_pool_match_math(case, causal):
    """B*H*T*T >= MIN_PARALLEL_SCORES: tiles run on the worker threads (when torch has 2+ threads)."""
    t = 520  # not a multiple of the default tile
    q = torch.randn(B, H, t, D, requires_grad=True)
    k = torch.randn(B, H, t, D, requires_grad=True)
    v = torch.randn(B, H, t, D, requires_grad=True)
    assert B * H * t * t >= flash_module.MIN_PARALLEL_SCORES
    spec = make_spec(case, causal, t)
    threads = torch.get_num_threads()
    ref = get_backend("math")(q, k, v, spec)
    got = flash_attention(q, k, v, spec)
    assert_close(got.out, ref.out)
    assert_close(got.lse, ref.lse)
    d_out = torch.randn_like(ref.out)
    for a, b in zip(torch.autograd.grad(got.out, [q, k, v], d_out), torch.autograd.grad(ref.out, [q, k, v], d_out)):
        assert_close(a, b)
    assert torch.get_num_threads() == threads  # the pool leaves the caller's thread count alone
    if threads > 1:
        assert flash_module._POOLS.get(threads) is not None  # the parallel path really ran
