"""What an attention call needs besides Q, K, V: scale, masks and additive bias.

The spec is *lazy*: it never stores a T x T tensor. Masks and biases are produced
block by block from absolute query/key positions, so the same spec serves the dense
`math` backend, the tiled `flash` backend and the capture's exact tiles.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor


class BiasFn(Protocol):
    """Additive attention bias as a function of absolute positions (ALiBi, T5)."""

    n_heads: int

    def __call__(self, q_pos: Tensor, k_pos: Tensor) -> Tensor:
        """Return the bias for these positions, shape (H, len(q_pos), len(k_pos))."""
        ...


class MaskPattern(Protocol):
    """A static sparsity pattern (Longformer, BigBird) over absolute positions."""

    def allowed(self, q_pos: Tensor, k_pos: Tensor) -> Tensor:
        """Boolean (len(q_pos), len(k_pos)): True where query may attend key."""
        ...

    def block_is_empty(self, q0: int, q1: int, k0: int, k1: int) -> bool:
        """True if no query in [q0, q1) may attend any key in [k0, k1)."""
        ...


@dataclass
class AttentionSpec:
    """Everything about one attention call except the tensors Q, K, V.

    Positions are absolute: query i sits at ``q_offset + i`` and key j at ``j``.
    With a KV cache the new queries start at ``q_offset = past_length``, which is
    what makes a causal mask correct for Tq != Tk. ``q_offset = Tk - Tq`` aligns the
    queries with the last keys (FlashAttention's bottom-right causal mask); with more
    queries than keys it is negative and the first Tq - Tk queries see no key.
    """

    scale: float
    causal: bool = False
    bias: BiasFn | None = None
    key_padding: Tensor | None = None  # (B, Tk) bool, True = a real token
    pattern: MaskPattern | None = None
    q_offset: int = 0
    extras: dict = field(default_factory=dict)  # free-form description for plots

    def positions(self, t_q: int, t_k: int, device=None) -> tuple[Tensor, Tensor]:
        q_pos = torch.arange(self.q_offset, self.q_offset + t_q, device=device)
        k_pos = torch.arange(t_k, device=device)
        return q_pos, k_pos

    def mask_block(self, q_pos: Tensor, k_pos: Tensor, k_slice: slice | None = None) -> Tensor | None:
        """Boolean allowed-mask for a block, shape (B or 1, 1, tq, tk), or None if all allowed."""
        mask = None
        if self.causal:
            mask = k_pos[None, :] <= q_pos[:, None]
        if self.pattern is not None:
            allowed = self.pattern.allowed(q_pos, k_pos)
            mask = allowed if mask is None else mask & allowed
        out = None if mask is None else mask[None, None]
        if self.key_padding is not None:
            pad = self.key_padding if k_slice is None else self.key_padding[:, k_slice]
            pad = pad[:, None, None, :]  # (B, 1, 1, tk)
            out = pad if out is None else out & pad
        return out

    def bias_block(self, q_pos: Tensor, k_pos: Tensor, dtype: torch.dtype) -> Tensor | None:
        """Additive bias for a block, shape (1, H, tq, tk), or None."""
        if self.bias is None:
            return None
        return self.bias(q_pos, k_pos).to(dtype)[None]

    def bias_for_heads(self, q_pos: Tensor, k_pos: Tensor, heads: Tensor, dtype: torch.dtype) -> Tensor | None:
        """Additive bias of some heads for a block, shape (len(heads), tq, tk), or None. A bias that can
        (``for_heads``: ALiBi, T5 buckets) computes only those heads, not all of them."""
        if self.bias is None:
            return None
        for_heads = getattr(self.bias, "for_heads", None)
        out = for_heads(q_pos, k_pos, heads) if for_heads is not None else self.bias(q_pos, k_pos)[heads]
        return out.to(dtype)

    def block_is_empty(self, q0: int, q1: int, k0: int, k1: int) -> bool:
        """True if the whole block [q0,q1) x [k0,k1) (absolute positions) is masked out."""
        if self.causal and k0 > q1 - 1:
            return True
        if self.pattern is not None and self.pattern.block_is_empty(q0, q1, k0, k1):
            return True
        return False

    def scores_block(self, q: Tensor, k: Tensor, q_pos: Tensor, k_pos: Tensor, k_slice: slice | None = None) -> Tensor:
        """Masked, biased, scaled scores q.k for a block: (B, H, tq, tk), -inf where masked."""
        scores = torch.matmul(q, k.transpose(-2, -1)) * self.scale
        bias = self.bias_block(q_pos, k_pos, scores.dtype)
        if bias is not None:
            scores = scores + bias
        mask = self.mask_block(q_pos, k_pos, k_slice)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        return scores

    def dense_mask(self, t_q: int, t_k: int, dtype: torch.dtype, device=None) -> tuple[Tensor | None, Tensor | None]:
        """The whole additive mask+bias as one tensor, for SDPA, and the rows with no allowed key.

        Returns ``(mask, empty)``. ``mask`` (B or 1, H or 1, Tq, Tk) is the bias where a
        key is allowed and -inf where it is not (the smallest float instead would give a
        row with no key the mean of V, not 0); None when there is neither. ``empty``
        (B or 1, 1, Tq, 1) bool marks rows with no allowed key, or is None when there are
        none: those rows are left unmasked, so no kernel meets an all -inf row (NaN in
        some), and the caller sets their output to 0.
        """
        q_pos, k_pos = self.positions(t_q, t_k, device)
        bias = self.bias_block(q_pos, k_pos, dtype)
        allowed = self.mask_block(q_pos, k_pos)
        if allowed is None:
            return bias, None
        empty = ~allowed.any(dim=-1, keepdim=True)  # (B or 1, 1, Tq, 1)
        if empty.any():
            allowed = allowed | empty
        else:
            empty = None
        neg = torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill(~allowed, float("-inf"))
        return (neg if bias is None else neg + bias), empty

    def describe(self) -> dict:
        """A JSON-friendly summary (for capture records and the API)."""
        return {
            "scale": self.scale,
            "causal": self.causal,
            "bias": type(self.bias).__name__ if self.bias is not None else None,
            "padding": self.key_padding is not None,
            "pattern": type(self.pattern).__name__ if self.pattern is not None else None,
            "q_offset": self.q_offset,
            **self.extras,
        }
