"""Attention kernels behind one signature, looked up by name.

Every backend takes Q (B, H, Tq, D), K and V (B, H, Tk, D) and an AttentionSpec and
returns an AttentionResult. A backend declares whether it can return the weight
matrix; asking one that cannot is an error, never a silent None.
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from .spec import AttentionSpec


@dataclass
class AttentionResult:
    out: Tensor  # (B, H, Tq, D)
    weights: Tensor | None = None  # (B, H, Tq, Tk) when asked for
    lse: Tensor | None = None  # (B, H, Tq) row log-sum-exp of the scores, when the kernel has it


KernelFn = Callable[..., AttentionResult]


@dataclass(frozen=True)
class Backend:
    name: str
    fn: KernelFn
    returns_weights: bool
    returns_lse: bool
    description: str

    def __call__(self, q: Tensor, k: Tensor, v: Tensor, spec: AttentionSpec, need_weights: bool = False) -> AttentionResult:
        if need_weights and not self.returns_weights:
            raise ValueError(
                f"backend {self.name!r} cannot return attention weights; use 'math', "
                "or capture (Q, K, LSE) and read tiles from the recorder"
            )
        return self.fn(q, k, v, spec, need_weights=need_weights)


BACKENDS: dict[str, Backend] = {}


def register_backend(name: str, *, returns_weights: bool, returns_lse: bool, description: str):
    def deco(fn: KernelFn) -> KernelFn:
        BACKENDS[name] = Backend(name, fn, returns_weights, returns_lse, description)
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
    try:
        return BACKENDS[name]
    except KeyError:
        raise KeyError(f"unknown attention backend {name!r}; known: {sorted(BACKENDS)}") from None


@register_backend("math", returns_weights=True, returns_lse=True, description="explicit softmax(QK^T*scale + bias + mask) V")
def math_attention(q: Tensor, k: Tensor, v: Tensor, spec: AttentionSpec, need_weights: bool = False) -> AttentionResult:
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


@register_backend("sdpa", returns_weights=False, returns_lse=False, description="torch.nn.functional.scaled_dot_product_attention")
def sdpa_attention(q: Tensor, k: Tensor, v: Tensor, spec: AttentionSpec, need_weights: bool = False) -> AttentionResult:
    t_q, t_k = q.shape[-2], k.shape[-2]
    simple_causal = spec.causal and spec.bias is None and spec.key_padding is None and spec.pattern is None and t_q == t_k
    if simple_causal or (not spec.causal and spec.bias is None and spec.key_padding is None and spec.pattern is None):
        out = F.scaled_dot_product_attention(q, k, v, is_causal=simple_causal, scale=spec.scale)
    else:
        mask = spec.dense_mask(t_q, t_k, q.dtype, q.device)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=spec.scale)
    return AttentionResult(out)


def row_lse(q: Tensor, k: Tensor, spec: AttentionSpec, block: int = 1024) -> Tensor:
    """Row log-sum-exp of the scores, computed in key blocks (no Tq x Tk tensor).

    Used when a backend (SDPA) does not return the LSE but the capture needs it.
    """
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
            s = spec.scores_block(q[..., r0:r1, :].float(), k[..., c0:c1, :].float(), q_pos[r0:r1], k_pos[c0:c1], slice(c0, c1))
            acc = torch.logaddexp(acc, torch.logsumexp(s, dim=-1))
        lse[..., r0:r1] = acc
    return lse
