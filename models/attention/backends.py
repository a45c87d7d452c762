"""Attention kernels behind one signature, looked up by name.

The contract every backend keeps (checked by ``kv_groups``; tests/unit/test_kernel_matrix.py
holds each backend to it against a float64 reference):

- inputs: Q (B, H, Tq, D); K and V of one shape (B, Hkv, Tk, D), where Hkv divides H.
  Hkv < H is grouped-query attention (Hkv = 1: multi-query): query head h reads K/V
  head ``h // (H // Hkv)``, the layout of ``repeat_interleave`` and of Hugging Face's
  ``repeat_kv``. Callers may pass K/V repeated per head or not; the result is the same,
  and the gradients of un-repeated K/V are summed over their group. Anything else is a
  ValueError naming the three shapes.
- positions are absolute (``AttentionSpec.q_offset``), so Tq != Tk in either alignment,
  and a query offset with Tq == Tk, mean the same to every backend.
- a query row with no allowed key (left padding under a causal mask, more queries than
  keys aligned bottom-right, a query outside every local window) has output 0 and row
  log-sum-exp -inf, and passes no gradient: the same as the capture's maps, whose
  weights on such a row are 0.
- the result is an AttentionResult; a backend declares whether it can return the
  weight matrix (asking one that cannot is an error, never a silent None) and whether
  it returns the row log-sum-exp (``row_lse`` computes it for the capture otherwise).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..memory import profiled_here
from ..names import lookup
from .spec import AttentionSpec

KERNEL_RANGE = "attnlab::attention_kernel"  # the profiler range around every kernel call


@dataclass
class AttentionResult:
    out: Tensor  # (B, H, Tq, D)
    weights: Tensor | None = None  # (B, H, Tq, Tk) when asked for
    lse: Tensor | None = None  # (B, H, Tq) row log-sum-exp of the scores, when the kernel has it
    # size -> (B, H, n_q, n_k): each head's whole map max-pooled by factor ceil(max(Tq, Tk) / size), when asked
    # of a kernel that pools as it goes (flash)
    pooled: dict[int, Tensor] | None = None


KernelFn = Callable[..., AttentionResult]


@dataclass(frozen=True)
class Backend:
    name: str
    fn: KernelFn
    returns_weights: bool
    returns_lse: bool
    description: str
    devices: tuple[str, ...] = ("cpu", "cuda")  # device types whose tensors it takes
    pools: bool = False  # can pool each head's whole map while it runs (AttentionResult.pooled)

    def __call__(self, q: Tensor, k: Tensor, v: Tensor, spec: AttentionSpec,
                 need_weights: bool = False, pool_sizes: tuple[int, ...] = ()) -> AttentionResult:
        """``pool_sizes`` is passed on to a backend that ``pools``; the others ignore it."""
        if need_weights and not self.returns_weights:
            raise ValueError(
                f"backend {self.name!r} cannot return attention weights; use 'math', "
                "or capture (Q, K, LSE) and read tiles from the recorder"
            )
        extra = {"pool_sizes": tuple(pool_sizes)} if pool_sizes and self.pools else {}
        if not profiled_here():
            return self.fn(q, k, v, spec, need_weights=need_weights, **extra)
        # a named range, so that a profile (attnlab's memory measurement) can tell the kernel's share
        with torch.profiler.record_function(KERNEL_RANGE):
            return self.fn(q, k, v, spec, need_weights=need_weights, **extra)


BACKENDS: dict[str, Backend] = {}


def register_backend(name: str, *, returns_weights: bool, returns_lse: bool, description: str,
                     devices: tuple[str, ...] = ("cpu", "cuda"), pools: bool = False):
    def deco(fn: KernelFn) -> KernelFn:
        BACKENDS[name] = Backend(name, fn, returns_weights, returns_lse, description, devices, pools)
        return fn

    return deco


_override: contextvars.ContextVar[str | None] = contextvars.ContextVar("attnlab_backend", default=None)


@contextlib.contextmanager
def use_backend(name: str | None) -> Iterator[None]:
    """Run every attention call in this block (this thread / task only) on one backend.

    A per-request switch: two server requests on one model can use different kernels
    without fighting over the model's own setting.
    """
    if name is not None:
        get_backend(name)
    token = _override.set(name)
    try:
        yield
    finally:
        _override.reset(token)


def active_backend(default: str) -> str:
    """The backend of the current ``use_backend`` block, else the module's own."""
    return _override.get() or default


def get_backend(name: str) -> Backend:
    """The backend registered as ``name``; ``UnknownName`` (a KeyError) lists the known ones."""
    return lookup(BACKENDS, name, "attention backend")


def kv_groups(q: Tensor, k: Tensor, v: Tensor) -> int:
    """How many query heads share each K/V head: H // Hkv for q (B, H, Tq, D), k and v (B, Hkv, Tk, D).

    Raises ValueError, naming the three shapes, on inputs outside the contract above.
    """
    shapes = f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(f"attention takes (B, H, T, D) tensors; got {shapes}")
    if k.shape != v.shape:
        raise ValueError(f"K and V must have one shape (B, Hkv, Tk, D); got {shapes}")
    if q.shape[0] != k.shape[0] or q.shape[3] != k.shape[3]:
        raise ValueError(f"Q and K/V must have the same batch size and head dim; got {shapes}")
    if k.shape[1] == 0 or q.shape[1] % k.shape[1]:
        raise ValueError(f"K/V heads ({k.shape[1]}) must divide the number of query heads ({q.shape[1]}); got {shapes}")
    return q.shape[1] // k.shape[1]


def repeat_kv(x: Tensor, group: int) -> Tensor:
    """(B, Hkv, T, D) -> (B, Hkv * group, T, D), K/V head j serving query heads j*group ... j*group + group-1."""
    if group == 1:
        return x
    b, h_kv, t, d = x.shape
    return x[:, :, None].expand(b, h_kv, group, t, d).reshape(b, h_kv * group, t, d)  # (B, H, T, D)


@register_backend("math", returns_weights=True, returns_lse=True,
                  description="explicit softmax(QK^T*scale + bias + mask) V")
def math_attention(q: Tensor, k: Tensor, v: Tensor, spec: AttentionSpec, need_weights: bool = False) -> AttentionResult:
    group = kv_groups(q, k, v)
    k, v = repeat_kv(k, group), repeat_kv(v, group)  # (B, H, Tk, D)
    q_pos, k_pos = spec.positions(q.shape[-2], k.shape[-2], q.device)
    scores = spec.scores_block(q, k, q_pos, k_pos)  # (B, H, Tq, Tk)
    # softmax written out so the row log-sum-exp comes for free: lse = max + log(sum(exp(s - max)))
    row_max = scores.amax(-1, keepdim=True).clamp_min(torch.finfo(scores.dtype).min)  # all-masked rows: finite
    tiny = torch.finfo(scores.dtype).tiny
    if scores.requires_grad:
        weights = (scores - row_max).exp()
        total = weights.sum(-1, keepdim=True)
        weights = weights / total.clamp_min(tiny)  # all-masked rows stay 0
    else:  # inference: reuse the scores' memory
        weights = scores.sub_(row_max).exp_()
        total = weights.sum(-1, keepdim=True)
        weights = weights.div_(total.clamp_min(tiny))
    lse = (row_max + total.log()).squeeze(-1)  # (B, H, Tq); -inf for all-masked rows
    out = torch.matmul(weights, v)
    return AttentionResult(out, weights if need_weights else None, lse)


@register_backend("sdpa", returns_weights=False, returns_lse=False,
                  description="torch.nn.functional.scaled_dot_product_attention (on CPU without a bias or padding "
                              "mask, its fused flash kernel, which also gives the LSE)")
def sdpa_attention(q: Tensor, k: Tensor, v: Tensor, spec: AttentionSpec, need_weights: bool = False) -> AttentionResult:
    group = kv_groups(q, k, v)
    k, v = repeat_kv(k, group), repeat_kv(v, group)  # (B, H, Tk, D)
    t_q, t_k = q.shape[-2], k.shape[-2]
    unmasked = spec.bias is None and spec.key_padding is None and spec.pattern is None
    if unmasked and (not spec.causal or (spec.q_offset == 0 and t_q == t_k)):
        # is_causal is our causal mask only for a square call starting at position 0: with
        # a query offset (a KV cache) the diagonal moves, and for Tq != Tk the kernels
        # have not always agreed on the alignment; those take the explicit mask below.
        if _cpu_flash_gives_lse(q):
            # the kernel F.scaled_dot_product_attention runs here anyway, called so that it hands over its
            # row log-sum-exp: a capture then needs no second pass over the scores (row_lse)
            out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
                q, k, v, 0.0, spec.causal, scale=spec.scale)
            return AttentionResult(out, None, lse)
        return AttentionResult(F.scaled_dot_product_attention(q, k, v, is_causal=spec.causal, scale=spec.scale))
    mask, empty = spec.dense_mask(t_q, t_k, q.dtype, q.device)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=spec.scale)
    if empty is not None:
        out = out.masked_fill(empty, 0.0)  # rows with no key: 0, as math and flash give and the capture draws
    return AttentionResult(out)


def _cpu_flash_gives_lse(q: Tensor) -> bool:
    """Whether SDPA's fused CPU flash kernel can be called for its LSE: CPU, float32, no autograd graph (the
    public function's backward is the one tested against ``math``)."""
    return (q.device.type == "cpu" and q.dtype == torch.float32 and not (torch.is_grad_enabled() and q.requires_grad)
            and hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu"))


def row_lse(q: Tensor, k: Tensor, spec: AttentionSpec, block: int = 1024) -> Tensor:
    """Row log-sum-exp of the scores, computed in key blocks (no Tq x Tk tensor).

    Used when a backend (SDPA) does not return the LSE but the capture needs it. q is
    (B, H, Tq, D), k (B, Hkv, Tk, D) under the backends' GQA contract; returns float32
    (B, H, Tq), -inf on rows with no allowed key.
    """
    k = repeat_kv(k, kv_groups(q, k, k))
    t_q, t_k = q.shape[-2], k.shape[-2]
    q_pos, k_pos = spec.positions(t_q, t_k, q.device)
    lse = torch.full(q.shape[:-1], float("-inf"), dtype=torch.float32, device=q.device)
    for r0 in range(0, t_q, block):
        r1 = min(r0 + block, t_q)
        acc = lse[..., r0:r1]
        for c0 in range(0, t_k, block):
            c1 = min(c0 + block, t_k)
            if spec.block_is_empty(r0 + spec.q_offset, r1 + spec.q_offset, c0, c1):
                continue
            s = spec.scores_block(q[..., r0:r1, :].float(), k[..., c0:c1, :].float(), q_pos[r0:r1], k_pos[c0:c1],
                                  slice(c0, c1))
            acc = torch.logaddexp(acc, torch.logsumexp(s, dim=-1))
        lse[..., r0:r1] = acc
    return lse
