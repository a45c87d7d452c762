"""Building blocks: norms (``NORMS``), feed-forward, KV cache, multi-head attention, one residual Block.

``MultiHeadAttention`` keeps the projections and rotary; the kernel call, the backend choice
and the capture are ``attnlab.models.dispatch.attend``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import AttentionSpec, BiasFn, MaskPattern
from .config import TransformerConfig
from .dispatch import attend
from .positional import PositionalScheme


class RMSNorm(nn.Module):
    """Root-mean-square norm (Zhang & Sennrich 2019): no mean subtraction, no bias."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        # in float32 like Llama, so half-precision activations do not underflow the mean
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


NORMS = {
    "layernorm": lambda dim, eps: nn.LayerNorm(dim, eps=eps),
    "rmsnorm": RMSNorm,
}


def make_norm(cfg: TransformerConfig) -> nn.Module:
    return NORMS[cfg.norm](cfg.d_model, cfg.norm_eps)


ACTIVATIONS = {
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),  # GPT-2's "gelu_new"
    "relu": F.relu,
    "swiglu": F.silu,  # the gate's activation; see FeedForward
}


class FeedForward(nn.Module):
    """Position-wise MLP; with ``swiglu`` a gated unit (Shazeer 2020, arXiv 2002.05202)."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.act = ACTIVATIONS[cfg.activation]
        self.up = nn.Linear(cfg.d_model, cfg.ff_dim, bias=cfg.bias)
        self.gate = nn.Linear(cfg.d_model, cfg.ff_dim, bias=cfg.bias) if cfg.activation == "swiglu" else None
        self.down = nn.Linear(cfg.ff_dim, cfg.d_model, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor) -> Tensor:
        h = self.act(self.gate(x)) * self.up(x) if self.gate is not None else self.act(self.up(x))
        return self.dropout(self.down(h))


@dataclass
class AttentionContext:
    """Per-forward facts shared by every layer of one stack (built once, not per layer)."""

    causal: bool
    positions: Tensor  # (Tq,) absolute positions of the queries
    key_padding: Tensor | None = None  # (B, Tk) True = real token
    bias: BiasFn | None = None
    rotary: PositionalScheme | None = None
    pattern: MaskPattern | None = None


@dataclass
class KVCache:
    """Keys and values of past positions, per layer, after rotary (B, Hkv, T, hd)."""

    keys: list[Tensor | None] = field(default_factory=list)
    values: list[Tensor | None] = field(default_factory=list)

    def length(self) -> int:
        return 0 if not self.keys or self.keys[0] is None else self.keys[0].shape[-2]

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        while len(self.keys) <= layer:
            self.keys.append(None)
            self.values.append(None)
        if self.keys[layer] is not None:
            k = torch.cat([self.keys[layer], k], dim=-2)
            v = torch.cat([self.values[layer], v], dim=-2)
        self.keys[layer], self.values[layer] = k, v
        return k, v


class MultiHeadAttention(nn.Module):
    """Self- or cross-attention. Keeps the projections; the kernel is looked up by name."""

    def __init__(self, cfg: TransformerConfig, kind: str, layer: int, cross: bool = False):
        super().__init__()
        self.kind, self.layer, self.cross = kind, layer, cross
        self.n_heads, self.n_kv, self.head_dim = cfg.n_heads, cfg.kv_heads, cfg.head_dim
        self.backend = cfg.attn_backend
        self.q_proj = nn.Linear(cfg.d_model, cfg.n_heads * cfg.head_dim, bias=cfg.bias)
        self.k_proj = nn.Linear(cfg.d_model, cfg.kv_heads * cfg.head_dim, bias=cfg.bias)
        self.v_proj = nn.Linear(cfg.d_model, cfg.kv_heads * cfg.head_dim, bias=cfg.bias)
        self.o_proj = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.d_model, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def _heads(self, x: Tensor, n: int) -> Tensor:
        B, T, _ = x.shape
        return x.view(B, T, n, self.head_dim).transpose(1, 2)  # (B, n, T, hd)

    def forward(self, x: Tensor, ctx: AttentionContext, memory: Tensor | None = None,
                cache: KVCache | None = None) -> Tensor:
        B, T, C = x.shape
        q = self._heads(self.q_proj(x), self.n_heads)
        source = memory if self.cross else x
        k = self._heads(self.k_proj(source), self.n_kv)
        v = self._heads(self.v_proj(source), self.n_kv)
        if ctx.rotary is not None and not self.cross:
            q = ctx.rotary.rotate(q, ctx.positions)
            k = ctx.rotary.rotate(k, ctx.positions)
        if cache is not None and not self.cross:
            k, v = cache.update(self.layer, k, v)
        spec = AttentionSpec(
            scale=1.0 / math.sqrt(self.head_dim),
            causal=ctx.causal and not self.cross,
            bias=None if self.cross else ctx.bias,
            key_padding=ctx.key_padding,
            pattern=None if self.cross else ctx.pattern,
            q_offset=int(ctx.positions[0]) if len(ctx.positions) else 0,
        )
        out = attend(q, k, v, spec, self.kind, self.layer, self.backend)  # (B, H, T, hd); K/V un-repeated
        out = out.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim)  # (B, T, C)
        return self.dropout(self.o_proj(out))


class Block(nn.Module):
    """One layer: self-attention, optional cross-attention, feed-forward, each in a residual.

    ``pre`` norm: x + f(norm(x)); ``post`` norm: norm(x + f(x)) (the original Transformer, BERT).
    """

    def __init__(self, cfg: TransformerConfig, kind: str, layer: int, cross: bool = False):
        super().__init__()
        self.pre = cfg.norm_position == "pre"
        self.attn = MultiHeadAttention(cfg, kind, layer)
        self.norm1 = make_norm(cfg)
        self.cross_attn = MultiHeadAttention(cfg, "cross", layer, cross=True) if cross else None
        self.norm_cross = make_norm(cfg) if cross else None
        self.ff = None if cfg.attention_only else FeedForward(cfg)
        self.norm2 = None if cfg.attention_only else make_norm(cfg)

    def _residual(self, x: Tensor, norm: nn.Module, fn) -> Tensor:
        return x + fn(norm(x)) if self.pre else norm(x + fn(x))

    def forward(self, x: Tensor, ctx: AttentionContext, memory: Tensor | None = None,
                memory_ctx: AttentionContext | None = None, cache: KVCache | None = None) -> Tensor:
        x = self._residual(x, self.norm1, lambda h: self.attn(h, ctx, cache=cache))
        if self.cross_attn is not None:
            x = self._residual(x, self.norm_cross, lambda h: self.cross_attn(h, memory_ctx, memory=memory))
        if self.ff is not None:
            x = self._residual(x, self.norm2, self.ff)
        return x
