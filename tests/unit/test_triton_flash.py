"""The triton backend beyond the kernel matrix: 16-bit inputs, the LSE's gradient, what it
refuses, where it is registered, and (with a GPU) real sizes against SDPA.

On CPU the kernels run under Triton's interpreter (tests/conftest.py sets TRITON_INTERPRET=1),
so shapes here are tiny; the cuda-marked tests compile them on a GPU (bench/gpu_check.sh).
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from attnlab.models.attention import BACKENDS, AttentionSpec, get_backend
from attnlab.models.attention.triton_flash import TRITON, launch_config, unavailable_reason
from attnlab.models.positional import T5Bias

needs_triton = pytest.mark.skipif(unavailable_reason("cpu") is not None,
                                  reason=f"triton on CPU: {unavailable_reason('cpu')}")
cuda = pytest.mark.skipif(not torch.cuda.is_available() or unavailable_reason("cuda") is not None,
                          reason="needs a CUDA GPU and triton")


def _qkv(b, h, h_kv, t_q, t_k, d, dtype=torch.float32, device="cpu", grad=False):
    q = torch.randn(b, h, t_q, d, dtype=dtype, device=device)
    k = torch.randn(b, h_kv, t_k, d, dtype=dtype, device=device)
    v = torch.randn(b, h_kv, t_k, d, dtype=dtype, device=device)
    return [x.requires_grad_(grad) for x in (q, k, v)]


@needs_triton
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_16_bit_inputs_are_as_close_to_float64_as_math_in_that_dtype(dtype):
    # flash-attn's criterion: at most twice the error of the plain softmax run in the input's dtype
    q, k, v = _qkv(2, 4, 2, 40, 40, 64, dtype)
    spec = AttentionSpec(scale=64**-0.5, causal=True)
    res = TRITON(q, k, v, spec)
    want = get_backend("math")(q.double(), k.double(), v.double(), spec)
    plain = get_backend("math")(q, k, v, spec)
    assert res.out.dtype == dtype and res.lse.dtype == torch.float32
    error = (res.out.double() - want.out).abs().max().item()
    assert error <= 2 * (plain.out.double() - want.out).abs().max().item() + 1e-3
    # the LSE accumulates in float32 from 16-bit scores: as exact as the float32 rounding of those
    assert torch.allclose(res.lse.double(), want.lse, atol=1e-4)


@needs_triton
def test_the_lse_output_carries_its_gradient():
    q, k, v = _qkv(1, 2, 1, 20, 33, 32, grad=True)
    spec = AttentionSpec(scale=32**-0.5, causal=True, q_offset=13)
    grads = []
    for run in (lambda: TRITON(q, k, v, spec), lambda: get_backend("math")(q, k, v, spec)):
        res = run()
        loss = (res.out * torch.linspace(-1, 1, 32)).sum() + (res.lse * torch.linspace(0, 2, 20)).sum()
        grads.append(torch.autograd.grad(loss, [q, k, v]))
    for got, want in zip(*grads):
        torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)


class _TrainedDenseBias(torch.nn.Module):
    """A trainable bias that is not a function of k - q alone: triton materialises it (H, Tq, Tk)."""

    n_heads = 4

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(4, 1, 1))

    def forward(self, q_pos, k_pos):
        return self.w * torch.sin(0.3 * q_pos[:, None] + 0.7 * k_pos[None, :]).float()  # (H, tq, tk)


@needs_triton
@pytest.mark.parametrize("bias", ["t5", "dense"])
def test_a_trainable_bias_gets_its_exact_gradient(bias):
    # T5 buckets being trained: the table's gradient is dS summed per offset and batch (atomics in the dQ kernel)
    module = T5Bias(4, bidirectional=False, num_buckets=16, max_distance=32) if bias == "t5" else _TrainedDenseBias()
    if bias == "t5":
        torch.nn.init.normal_(module.relative_attention_bias.weight, std=1.0)
    q, k, v = _qkv(2, 4, 2, 21, 40, 32, grad=True)
    spec = AttentionSpec(scale=32**-0.5, causal=True, q_offset=19, bias=module,
                         key_padding=torch.tensor([[True] * 40, [False] * 5 + [True] * 35]))
    d_out = torch.randn(2, 4, 21, 32)
    grads = []
    for name in ("triton", "math"):
        out = (TRITON if name == "triton" else get_backend(name))(q, k, v, spec).out
        grads.append(torch.autograd.grad(out, [q, k, v, *module.parameters()], d_out))
    for got, want in zip(*grads):
        assert got.abs().max() > 0
        torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)


@needs_triton
@pytest.mark.parametrize(("kwargs", "message"), [
    ({"d": 264}, "head dims up to 256; got 264"),
    ({"block_m": 24}, "block_m must be a power of two >= 16; got 24"),
    ({"block_n": 8}, "block_n must be a power of two >= 16; got 8"),
])
def test_refusals_name_the_limit(kwargs, message):
    d = kwargs.pop("d", 16)
    q, k, v = _qkv(1, 1, 1, 4, 4, d)
    with pytest.raises(ValueError, match=message):
        TRITON.fn(q, k, v, AttentionSpec(scale=1.0), **kwargs)


def test_registered_only_where_it_can_run():
    # the toggle offers it where Triton is installed and a CUDA device is present
    assert ("triton" in BACKENDS) == (unavailable_reason("cuda") is None)
    if not torch.cuda.is_available():
        assert "CUDA" in unavailable_reason("cuda") or "not installed" in unavailable_reason("cuda")


def test_cpu_without_the_interpreter_says_why(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    reason = unavailable_reason("cpu")
    assert reason is not None and ("TRITON_INTERPRET=1" in reason or "not installed" in reason)


def test_launch_configs_are_fixed_and_fit_the_kernels():
    for d, backward, itemsize in itertools.product((32, 64, 96, 128, 160, 256), (False, True), (2, 4)):
        cfg = launch_config(d, backward, on_gpu=True, itemsize=itemsize)
        assert cfg.block_m >= 16 and cfg.block_n >= 16 and cfg.num_warps in (4, 8)
        assert cfg.block_m & (cfg.block_m - 1) == 0 and cfg.block_n & (cfg.block_n - 1) == 0


# --- on a GPU: real sizes, compiled kernels --------------------------------------------------

@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("t", [1024, 4096])
@pytest.mark.parametrize("heads", [(16, 16), (16, 4)], ids=["mha", "gqa"])
@pytest.mark.parametrize("d", [64, 128])
def test_cuda_bf16_matches_sdpa_math_in_float32(t, heads, d):
    h, h_kv = heads
    q, k, v = _qkv(2, h, h_kv, t, t, d, torch.bfloat16, "cuda", grad=True)
    spec = AttentionSpec(scale=d**-0.5, causal=True)
    res = TRITON(q, k, v, spec)
    qf, kf, vf = (x.detach().float().requires_grad_() for x in (q, k, v))
    group = h // h_kv
    want = F.scaled_dot_product_attention(qf, kf.repeat_interleave(group, 1), vf.repeat_interleave(group, 1),
                                          is_causal=True)
    assert (res.out.float() - want).abs().max().item() < 2e-2
    d_out = torch.randn_like(want)
    got = torch.autograd.grad(res.out, [q, k, v], d_out.bfloat16())
    ref = torch.autograd.grad(want, [qf, kf, vf], d_out)
    for g, r in zip(got, ref):
        assert (g.float() - r).abs().max().item() <= 5e-2 * max(1.0, r.abs().max().item())


@pytest.mark.cuda
@cuda
def test_cuda_float32_uses_ieee_products():
    q, k, v = _qkv(1, 4, 4, 2048, 2048, 64, torch.float32, "cuda")
    spec = AttentionSpec(scale=0.125, causal=True)
    got = TRITON(q, k, v, spec).out
    want = get_backend("math")(q.double(), k.double(), v.double(), spec).out
    assert (got.double() - want).abs().max().item() < 1e-5  # TF32 would be ~1e-3


# --- SDPA's kernels: which one a call takes -----------------------------------------------------

def test_which_kernel_follows_sdpa_kernel_restrictions():
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from attnlab.models.attention.sdpa_kernels import available_kernels, which_kernel

    q = torch.randn(1, 2, 16, 32)
    with sdpa_kernel(SDPBackend.MATH):
        assert which_kernel(q, q, q, is_causal=True) == "math"
    assert which_kernel(q, q, q) in available_kernels("cpu")
    assert available_kernels("cpu") == ["flash", "math"] or torch.cuda.is_available()


@pytest.mark.slow
@pytest.mark.skipif(unavailable_reason("cpu") is not None and unavailable_reason("cuda") is not None,
                    reason="triton is not installed")
def test_kernels_compile_for_hopper_within_its_shared_memory(tmp_path):
    # what the interpreter cannot check: Triton compiles the kernels to a cubin for sm_90 (no GPU needed)
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "TRITON_INTERPRET": "0", "TRITON_CACHE_DIR": str(tmp_path), "TRITON_DEFAULT_FP_FUSION": "1"}
    done = subprocess.run([sys.executable, str(root / "bench" / "triton_compile.py"), "--arch", "90", "--dtype",
                           "bfloat16", "--head-dim", "128", "--kernels", "flash_fwd", "flash_bwd_dkdv", "flash_bwd_dq",
                           "--features"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "triton_compile: 6 kernels, all within shared memory"
