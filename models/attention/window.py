"""Sliding-window attention (Mistral, Qwen2 with ``use_sliding_window``, Gemma 2/3 local layers).

Query ``i`` sees the last ``size`` keys up to itself: key ``j`` is allowed when ``i - size < j``.
With ``AttentionSpec(causal=True, pattern=SlidingWindow(size))`` that is exactly the mask of
Hugging Face's ``sliding_window_causal_mask`` (Mistral 7B, arXiv:2310.06825; Longformer's local
band, arXiv:2004.05150, is its two-sided form). Like every pattern it is lazy: positions in,
booleans out, never a stored T x T mask; the flash backend skips tiles left of the band.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class SlidingWindow:
    """A one-sided band: query at absolute position q may see keys q - size + 1 ... (and, unless causal, later).

    ``size`` counts the query itself (HF's ``config.sliding_window``). Raises ValueError for size < 1.
    """

    size: int
    name: str = "sliding_window"

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"sliding window size must be >= 1, got {self.size}")

    def allowed(self, q_pos: Tensor, k_pos: Tensor) -> Tensor:
        """(len(q_pos), len(k_pos)) bool: True where the key is within the window behind the query."""
        return k_pos[None, :] > q_pos[:, None] - self.size

    def block_is_empty(self, q0: int, q1: int, k0: int, k1: int) -> bool:
        """True when every key of [k0, k1) is behind the window of every query of [q0, q1)."""
        return k1 - 1 <= q0 - self.size

    def density(self, seq_len: int) -> float:
        """Share of the causal (query, key) pairs the window keeps."""
        w = min(self.size, seq_len)
        kept = w * seq_len - w * (w - 1) // 2
        return kept / (seq_len * (seq_len + 1) // 2)
