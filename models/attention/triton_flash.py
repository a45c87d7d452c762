"""The ``triton`` backend: our FlashAttention-2 in Triton (kernels in ``triton_kernels``).

FlashAttention-2 (Dao 2023, arXiv 2307.08691) as fused GPU kernels: a forward that
returns the output and the row log-sum-exp (so the capture works unchanged), and a
backward that recomputes tiles from Q, K, V and the LSE. Same signature, contract and
capabilities as ``flash`` (see ``backends``): GQA/MQA without repeating K/V, causal with
``q_offset``, key padding, additive biases, sparse patterns, head dims up to 256, rows
with no allowed key giving 0 and LSE -inf.

Where it runs: on CUDA tensors, compiled; on CPU tensors only under Triton's interpreter
(``TRITON_INTERPRET=1`` set before Triton is imported), which is how the tests check it
without a GPU and is far too slow to serve. It is registered in the backend registry
(and so offered by the toggle) only where it can run here: Triton installed and a CUDA
device present. :func:`unavailable_reason` says why not; the Backend object ``TRITON``
exists either way.

Memory: O(T * d) for no bias or a relative bias (ALiBi, T5: ``shift_invariant``, a table
of H x (Tq + Tk - 1) values); another bias function is materialised as (H, Tq, Tk) and a
sparse pattern as a (Tq, Tk) byte mask, both counted in ``peak`` measurements.
Precision: tiles accumulate in float32 (float32 inputs use IEEE products, not TF32);
the output comes back in Q's dtype, the LSE in float32.
Bias gradients: a bias with trainable parameters (T5 being trained) gets its exact gradient:
the bias tensor (the relative table, or the dense bias) is built under autograd and the dQ
kernel adds dS, summed over the batch, into its layout with atomics.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .backends import BACKENDS, AttentionResult, Backend, kv_groups
from .spec import AttentionSpec

LOG2E = 1.4426950408889634
MAX_HEAD_DIM = 256


def interpreting() -> bool:
    """True when Triton's interpreter runs the kernels (``TRITON_INTERPRET=1``): CPU tensors, slowly."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


@functools.lru_cache(maxsize=1)
def triton_version() -> str | None:
    """The installed Triton's version, or None; does not import Triton's compiler."""
    if importlib.util.find_spec("triton") is None:
        return None
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("triton")
    except PackageNotFoundError:
        return None


def unavailable_reason(device: str | torch.device = "cuda") -> str | None:
    """Why the triton backend cannot run on ``device`` here, or None when it can."""
    if triton_version() is None:
        return "Triton is not installed (pip install triton; it ships with CUDA builds of torch on Linux)"
    dev = torch.device(device)
    if dev.type == "cuda":
        return None if torch.cuda.is_available() else "no CUDA device here"
    if dev.type == "cpu":
        return None if interpreting() else (
            "Triton kernels run on a CUDA GPU; on CPU only under TRITON_INTERPRET=1 (tests, far too slow to serve)")
    return f"Triton kernels run on CUDA, not on {dev.type}"


@dataclass(frozen=True)
class LaunchConfig:
    """Fixed tile sizes and launch parameters (no autotuning: the interpreter cannot run it)."""

    block_m: int
    block_n: int
    num_warps: int
    num_stages: int


def launch_config(head_dim: int, backward: bool, on_gpu: bool, itemsize: int = 2) -> LaunchConfig:
    """Tiles by head dim and input size: register and shared-memory use grow with BLOCK_D, so tiles shrink as it grows.

    The GPU values are FlashAttention-2's and Triton's tutorial's starting points for an
    A100/H100 (bf16); they have not been tuned on a GPU here (none was lent). float32 inputs
    take half the tiles: bench/triton_compile.py found the 16-bit ones over sm_80's 163 KiB of
    shared memory per block in float32 (e.g. the d128 forward: 289 KiB). Under the interpreter,
    tiles of 32 keep the number of (Python-run) programs small.
    """
    if not on_gpu:
        return LaunchConfig(32, 32, 1, 1)
    if itemsize >= 4:
        if backward:
            return LaunchConfig(64, 64, 4, 2) if head_dim <= 64 else LaunchConfig(32, 32, 4, 1)
        if head_dim <= 64:
            return LaunchConfig(64, 64, 4, 2)
        return LaunchConfig(64, 32, 4, 2) if head_dim <= 128 else LaunchConfig(32, 32, 4, 1)
    if backward:  # dK and dV accumulate two (BLOCK_N, BLOCK_D) float32 tiles: 8 warps keep them in registers
        if head_dim <= 64:
            return LaunchConfig(64, 64, 4, 2)
        return LaunchConfig(64, 64, 8, 2) if head_dim <= 128 else LaunchConfig(32, 32, 4, 1)
    if head_dim <= 64:
        return LaunchConfig(128, 64, 4, 3)
    if head_dim <= 128:
        return LaunchConfig(128, 64, 8, 3)
    return LaunchConfig(64, 32, 4, 2)


def padded_head_dim(head_dim: int) -> int:
    # tl.dot needs every dimension >= 16 and tl.arange a power of two: pad inside the kernel
    return max(16, 1 << (head_dim - 1).bit_length())


def _has_trainable_bias(spec: AttentionSpec) -> bool:
    return isinstance(spec.bias, nn.Module) and any(p.requires_grad for p in spec.bias.parameters())


class _SpecInputs:
    """The spec turned into the kernels' extra arguments (mask, padding and bias tensors, strides).

    ``bias_grad``: the bias tensor is built with autograd on (a trainable bias, T5 being trained), so
    the backward's dS, summed into its layout, flows back to the bias's parameters.
    """

    def __init__(self, spec: AttentionSpec, q: Tensor, t_k: int, bias_grad: bool = False):
        b, h, t_q, _ = q.shape
        dev = q.device
        dummy = torch.zeros(1, dtype=torch.float32, device=dev)
        self.pad, self.stride_pb = dummy, 0
        if spec.key_padding is not None:
            if spec.key_padding.shape != (b, t_k):
                raise ValueError(f"key_padding must be (B, Tk) = {(b, t_k)}; got {tuple(spec.key_padding.shape)}")
            self.pad = spec.key_padding.to(device=dev, dtype=torch.uint8).contiguous()  # (B, Tk)
            self.stride_pb = self.pad.stride(0)
        self.bias_mode, self.bias, self.bias_strides, self.rel_zero = 0, dummy, (0, 0, 0), 0
        with torch.set_grad_enabled(bias_grad):
            if spec.bias is not None:
                if getattr(spec.bias, "shift_invariant", False):
                    # bias(q, k) depends on k - q alone: tabulate it once per offset, k - q + P in [0, Tq + Tk - 2],
                    # P the last query's position (>= 0 whenever a key exists)
                    last = spec.q_offset + t_q - 1
                    q_pos = torch.tensor([last], device=dev)
                    k_pos = torch.arange(0, t_k + t_q - 1, device=dev)
                    table = spec.bias(q_pos, k_pos).float()[:, 0, :].contiguous()  # (H, Tq + Tk - 1)
                    self.bias_mode, self.bias, self.rel_zero = 1, table, last
                    self.bias_strides = (table.stride(0), 0, table.stride(1))
                else:
                    q_pos, k_pos = spec.positions(t_q, t_k, dev)
                    dense = spec.bias(q_pos, k_pos).float().expand(h, t_q, t_k).contiguous()  # (H, Tq, Tk)
                    self.bias_mode, self.bias = 2, dense
                    self.bias_strides = dense.stride()
        self.bias_grad = bias_grad and self.bias.requires_grad
        with torch.no_grad():
            self.mask, self.mask_strides = dummy, (0, 0)
            if spec.pattern is not None:
                q_pos, k_pos = spec.positions(t_q, t_k, dev)
                self.mask = spec.pattern.allowed(q_pos, k_pos).to(torch.uint8).contiguous()  # (Tq, Tk)
                self.mask_strides = self.mask.stride()

    def args(self) -> tuple:
        return (self.pad, self.stride_pb, self.bias.detach(), *self.bias_strides, self.rel_zero, self.mask,
                *self.mask_strides)

    def flags(self, spec: AttentionSpec) -> dict:
        return {"CAUSAL": spec.causal, "HAS_PAD": spec.key_padding is not None, "BIAS_MODE": self.bias_mode,
                "HAS_MASK": spec.pattern is not None}


def dot_precision(dtype: torch.dtype) -> str:
    # float32 inputs: exact IEEE products (TF32 would keep 10 mantissa bits); ignored for 16-bit inputs
    return "ieee" if dtype == torch.float32 else "tf32"


def _meta(extra: _SpecInputs, spec: AttentionSpec, q: Tensor, bm: int, bn: int, cfg: LaunchConfig) -> dict:
    """The kernels' compile-time arguments and launch parameters."""
    return dict(**extra.flags(spec), PRECISION=dot_precision(q.dtype), UPCAST=not q.is_cuda, BLOCK_M=bm, BLOCK_N=bn,
                BLOCK_D=padded_head_dim(q.shape[-1]), num_warps=cfg.num_warps, num_stages=cfg.num_stages)


def _forward(q: Tensor, k: Tensor, v: Tensor, spec: AttentionSpec, group: int, blocks: tuple[int | None, int | None],
             extra: _SpecInputs) -> tuple[Tensor, Tensor]:
    from . import triton_kernels as tk

    b, h, t_q, d = q.shape
    t_k = k.shape[2]
    cfg = launch_config(d, backward=False, on_gpu=q.is_cuda, itemsize=q.element_size())
    bm, bn = blocks[0] or cfg.block_m, blocks[1] or cfg.block_n
    out = torch.empty_like(q)
    lse = torch.empty(b, h, t_q, dtype=torch.float32, device=q.device)
    grid = (triton_cdiv(t_q, bm), b * h)
    tk.flash_fwd[grid](
        q, k, v, out, lse, q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
        h, group, t_q, t_k, d, spec.q_offset, spec.scale * LOG2E, *extra.args(),
        **_meta(extra, spec, q, bm, bn, cfg),
    )
    return out, lse


def triton_cdiv(n: int, block: int) -> int:
    return -(-n // block)


def _backward(ctx, d_out: Tensor, d_lse: Tensor | None):
    from . import triton_kernels as tk

    q, k, v, out, lse = ctx.saved_tensors
    spec, group, blocks, extra = ctx.spec, ctx.group, ctx.blocks, ctx.extra
    b, h, t_q, d = q.shape
    t_k = k.shape[2]
    d_out = d_out.contiguous()
    # D_i = rowsum(dO * O), the softmax Jacobian's term; a gradient on the LSE output enters as D_i - dlse_i
    delta = (d_out.float() * out.float()).sum(-1)  # (B, H, Tq)
    if d_lse is not None:
        delta = delta - d_lse.float()
    delta = delta.contiguous()
    # base-2 LSE; +inf on rows with no key, so every p = exp2(s - lse2) there is 0
    lse2 = (lse * LOG2E).masked_fill(lse == float("-inf"), float("inf")).contiguous()
    cfg = launch_config(d, backward=True, on_gpu=q.is_cuda, itemsize=q.element_size())
    bm, bn = blocks[0] or cfg.block_m, blocks[1] or cfg.block_n
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    common = (h, group, t_q, t_k, d, spec.q_offset, spec.scale * LOG2E, spec.scale, *extra.args())
    strides = (q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2))
    meta = _meta(extra, spec, q, bm, bn, cfg)
    tk.flash_bwd_dkdv[(triton_cdiv(t_k, bn), b * k.shape[1])](q, k, v, d_out, lse2, delta, dk, dv, *strides, *common,
                                                              **meta)
    d_bias = torch.zeros(extra.bias.shape, dtype=torch.float32, device=q.device) if extra.bias_grad else None
    tk.flash_bwd_dq[(triton_cdiv(t_q, bm), b * h)](q, k, v, d_out, lse2, delta, dq, *strides, *common,
                                                   lse2 if d_bias is None else d_bias, **meta,
                                                   BIAS_GRAD=d_bias is not None)
    return dq, dk, dv, d_bias, None, None, None, None


class _TritonFlash(torch.autograd.Function):
    """Saves Q, K, V, O and the LSE only; the backward kernels recompute every tile."""

    @staticmethod
    def forward(ctx, q, k, v, bias, spec, group, blocks, extra):
        # bias is extra.bias again, as an input: autograd takes its gradient on to the bias's parameters
        out, lse = _forward(q, k, v, spec, group, blocks, extra)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.spec, ctx.group, ctx.blocks, ctx.extra = spec, group, blocks, extra
        return out, lse

    @staticmethod
    def backward(ctx, d_out, d_lse):
        return _backward(ctx, d_out, d_lse)


def triton_attention(q: Tensor, k: Tensor, v: Tensor, spec: AttentionSpec, need_weights: bool = False, *,
                     block_m: int | None = None, block_n: int | None = None) -> AttentionResult:
    """FlashAttention-2 in Triton over q (B, H, Tq, D), k and v (B, Hkv, Tk, D), Hkv dividing H.

    Returns ``AttentionResult(out, None, lse)``: out (B, H, Tq, D) in q's dtype, lse
    (B, H, Tq) float32 (natural log, -inf on rows with no allowed key, whose output is 0).
    ``block_m``/``block_n`` override the tile sizes (powers of two, >= 16).
    Raises ValueError for shapes outside the contract, a head dim over 256, and tensors on
    a device where the kernels cannot run (see :func:`unavailable_reason`).
    """
    if need_weights:
        raise ValueError("triton attention never builds the weight matrix; use 'math' or the capture's tiles")
    group = kv_groups(q, k, v)
    d = q.shape[-1]
    if d > MAX_HEAD_DIM:
        raise ValueError(f"triton attention takes head dims up to {MAX_HEAD_DIM}; got {d}")
    reason = unavailable_reason(q.device)
    if reason is not None:
        raise ValueError(f"triton attention cannot run on {q.device.type} tensors: {reason}")
    for name, block in (("block_m", block_m), ("block_n", block_n)):
        if block is not None and (block < 16 or block & (block - 1)):
            raise ValueError(f"{name} must be a power of two >= 16; got {block}")
    b, h, t_q, _ = q.shape
    t_k = k.shape[2]
    if t_q == 0 or t_k == 0 or b == 0:
        out = q.new_zeros(q.shape)
        return AttentionResult(out, None, torch.full((b, h, t_q), float("-inf"), device=q.device))
    bias_grad = torch.is_grad_enabled() and _has_trainable_bias(spec)
    needs_graph = torch.is_grad_enabled() and (bias_grad or any(t.requires_grad for t in (q, k, v)))
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    extra = _SpecInputs(spec, q, t_k, bias_grad)
    blocks = (block_m, block_n)
    if needs_graph:
        out, lse = _TritonFlash.apply(q, k, v, extra.bias, spec, group, blocks, extra)
    else:
        out, lse = _forward(q, k, v, spec, group, blocks, extra)
    return AttentionResult(out, None, lse)


TRITON = Backend("triton", triton_attention, returns_weights=False, returns_lse=True,
                 description="FlashAttention-2 in Triton (CUDA; CPU only under TRITON_INTERPRET=1): "
                             "fused forward and backward kernels, returns row LSE", devices=("cuda",))

if unavailable_reason("cuda") is None:
    BACKENDS[TRITON.name] = TRITON
