"""Positional schemes, each a small module with the paper it comes from.

A scheme can act at three places, and each class overrides only the one it uses:

- ``embed(positions)``: a vector added to the token embeddings (sinusoidal, learned);
- ``rotate(x, positions)``: a rotation of queries and keys (RoPE);
- ``bias(n_heads)``: an additive attention bias as a function of positions (T5, ALiBi).

Every scheme also ``describe()``s itself for plots.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor, nn

from .names import lookup


class PositionalScheme(nn.Module):
    """Base class: a scheme that does nothing (``none``)."""

    name: ClassVar[str] = "none"
    # what the pages and GET /api/positional show of each scheme: the one place these are written
    label: ClassVar[str] = "none"
    summary: ClassVar[str] = "No positional information: attention alone is permutation-invariant."
    paper: ClassVar[str | None] = None
    # drawn in the similarity-vs-offset comparison: every scheme (a vector or a rotation to compare, a bias's
    # factor on the weights, or none's 1 at every offset: positions it cannot tell apart)
    in_similarity: ClassVar[bool] = True
    # the sizes describe() depends on (the pages disable the others while this scheme is chosen)
    parameters: ClassVar[tuple[str, ...]] = ()
    extrapolates: ClassVar[bool] = True  # can it be evaluated past max_positions?

    def __init__(self, d_model: int, n_heads: int, max_positions: int, head_dim: int | None = None, **_: object):
        super().__init__()
        self.d_model, self.n_heads, self.max_positions = d_model, n_heads, max_positions
        self.head_dim = head_dim or d_model // n_heads

    def embed(self, positions: Tensor) -> Tensor | None:
        """(T,) positions -> (T, d_model) added to token embeddings, or None."""
        return None

    def rotate(self, x: Tensor, positions: Tensor) -> Tensor:
        """Queries or keys (B, H, T, hd) at these positions, after the scheme's rotation."""
        return x

    def bias(self) -> RelativeBias | None:
        """An additive attention bias (a BiasFn), or None."""
        return None

    @torch.no_grad()
    def describe(self, max_len: int = 128) -> dict:
        """Data for plots: encoding matrix, similarity vs offset, biases, frequencies."""
        out: dict = {"scheme": self.name, "d_model": self.d_model, "n_heads": self.n_heads, "max_len": max_len}
        pos = torch.arange(max_len)
        enc = self.embed(pos)
        if enc is not None:
            enc = enc.float()
            out["matrix"] = enc.tolist()
            # dot-product similarity between position 0 and every offset, normalised
            sims = enc @ enc[0]
            out["similarity"] = {"offset": pos.tolist(), "value": (sims / sims[0].clamp_min(1e-9)).tolist()}
        bias = self.bias()
        if bias is not None:
            out["bias"] = bias(pos, pos).float().tolist()  # (H, T, T)
        return out


class Sinusoidal(PositionalScheme):
    """Fixed sinusoids (Vaswani et al. 2017, arXiv 1706.03762, section 3.5)."""

    name = "sinusoidal"
    label = "sinusoidal"
    summary = "Fixed sines and cosines added to the token embeddings (Vaswani et al. 2017)."
    paper = "Vaswani et al. 2017, Attention Is All You Need, arXiv 1706.03762"
    parameters = ("d_model", "max_len")

    def __init__(self, d_model: int, n_heads: int, max_positions: int, base: float = 10000.0, **kw: object):
        super().__init__(d_model, n_heads, max_positions, **kw)
        self.base = base

    def embed(self, positions: Tensor) -> Tensor:
        half = torch.arange(0, self.d_model, 2, device=positions.device, dtype=torch.float32)
        inv_freq = self.base ** (-half / self.d_model)  # (d/2,)
        angles = positions.float()[:, None] * inv_freq[None]  # (T, d/2)
        enc = torch.zeros(len(positions), self.d_model, device=positions.device)
        enc[:, 0::2] = torch.sin(angles)
        enc[:, 1::2] = torch.cos(angles[:, : self.d_model // 2])
        return enc


class Learned(PositionalScheme):
    """A learned table of absolute positions (BERT, GPT-2). Cannot extrapolate past it."""

    name = "learned"
    label = "learned (random init)"
    summary = ("A learned table added to the embeddings; shown here at its random initialisation (seed 0, the same on "
               "every Show).")
    parameters = ("d_model", "max_len")
    extrapolates = False

    def __init__(self, d_model: int, n_heads: int, max_positions: int, **kw: object):
        super().__init__(d_model, n_heads, max_positions, **kw)
        self.table = nn.Embedding(max_positions, d_model)
        nn.init.normal_(self.table.weight, std=0.02)

    def embed(self, positions: Tensor) -> Tensor:
        if int(positions.max()) >= self.max_positions:
            raise ValueError(
                f"position {int(positions.max())} is past the learned table of {self.max_positions} positions; "
                "learned embeddings cannot extrapolate (use rope, alibi or t5_relative)"
            )
        return self.table(positions)


class Rotary(PositionalScheme):
    """Rotary position embedding (Su et al., RoFormer, arXiv 2104.09864).

    Uses the "rotate half" layout of GPT-NeoX / Llama so that Hugging Face Llama
    weights import without permuting Q/K rows.
    """

    name = "rope"
    label = "RoPE"
    summary = "Queries and keys rotated by position, so q\u00b7k depends on the offset only (Su et al. 2021)."
    paper = "Su et al. 2021, RoFormer, arXiv 2104.09864"
    parameters = ("d_model", "n_heads", "max_len")  # the rotation acts on each head's d_model / n_heads

    def __init__(self, d_model: int, n_heads: int, max_positions: int, base: float = 10000.0, **kw: object):
        super().__init__(d_model, n_heads, max_positions, **kw)
        self.base = base
        inv_freq = base ** (-torch.arange(0, self.head_dim, 2, dtype=torch.float32) / self.head_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def rotate(self, x: Tensor, positions: Tensor) -> Tensor:
        angles = positions.float()[:, None] * self.inv_freq[None].to(positions.device)  # (T, hd/2)
        angles = torch.cat([angles, angles], dim=-1)  # (T, hd)
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        x1, x2 = x[..., : self.head_dim // 2], x[..., self.head_dim // 2 :]
        rotated_half = torch.cat([-x2, x1], dim=-1)
        return x * cos + rotated_half * sin

    @torch.no_grad()
    def describe(self, max_len: int = 128) -> dict:
        out = super().describe(max_len)
        out["frequencies"] = self.inv_freq.tolist()
        # q.k after rotation depends only on the offset: use a fixed all-ones vector
        v = torch.ones(1, 1, 1, self.head_dim)
        pos = torch.arange(max_len)
        rot = self.rotate(v.expand(1, 1, max_len, self.head_dim), pos)[0, 0]  # (T, hd)
        sims = rot @ rot[0]
        out["similarity"] = {"offset": pos.tolist(), "value": (sims / sims[0]).tolist()}
        out["rotations"] = (pos.float()[:, None] * self.inv_freq[None]).tolist()  # angle per (pos, pair)
        return out


class RelativeBias(nn.Module):
    """Base for biases that depend on (query position, key position) only."""

    # ALiBi and T5 depend on k - q alone: a kernel may tabulate the bias per offset (O(H * T), not O(H * T^2))
    shift_invariant = True

    def __init__(self, n_heads: int):
        super().__init__()
        self.n_heads = n_heads


class ALiBiBias(RelativeBias):
    def __init__(self, n_heads: int, causal: bool):
        super().__init__(n_heads)
        self.causal = causal
        self.register_buffer("slopes", alibi_slopes(n_heads), persistent=False)

    def forward(self, q_pos: Tensor, k_pos: Tensor) -> Tensor:
        return self.for_heads(q_pos, k_pos, None)  # (H, tq, tk)

    def for_heads(self, q_pos: Tensor, k_pos: Tensor, heads: Tensor | None) -> Tensor:
        """The bias of ``heads`` only (None: all): (h, tq, tk)."""
        distance = (q_pos[:, None] - k_pos[None, :]).float()  # (tq, tk)
        distance = distance.clamp_min_(0) if self.causal else distance.abs_()
        slopes = self.slopes.to(q_pos.device)
        slopes = slopes if heads is None else slopes[heads]
        return -slopes[:, None, None] * distance[None]


def alibi_slopes(n_heads: int) -> Tensor:
    """Head slopes of ALiBi: a geometric sequence starting at 2^(-8/n) (paper, section 3)."""

    def power_of_two(n: int) -> list[float]:
        start = 2 ** (-8 / n)
        return [start ** (i + 1) for i in range(n)]

    if math.log2(n_heads).is_integer():
        return torch.tensor(power_of_two(n_heads))
    # for other head counts the paper interleaves the slopes of the next power of two
    closest = 2 ** math.floor(math.log2(n_heads))
    extra = power_of_two(2 * closest)[0::2][: n_heads - closest]
    return torch.tensor(power_of_two(closest) + extra)


class ALiBi(PositionalScheme):
    """Attention with Linear Biases (Press et al., arXiv 2108.12409)."""

    name = "alibi"
    label = "ALiBi"
    summary = "A linear penalty on the scores, one slope per head (Press et al. 2021)."
    paper = "Press et al. 2021, Train Short, Test Long, arXiv 2108.12409"
    parameters = ("n_heads", "max_len")

    def __init__(self, d_model: int, n_heads: int, max_positions: int, causal: bool = True, **kw: object):
        super().__init__(d_model, n_heads, max_positions, **kw)
        self.alibi = ALiBiBias(n_heads, causal)

    def bias(self) -> ALiBiBias:
        return self.alibi

    @torch.no_grad()
    def describe(self, max_len: int = 128) -> dict:
        out = super().describe(max_len)
        out["slopes"] = self.alibi.slopes.tolist()
        return out


class T5Bias(RelativeBias):
    def __init__(self, n_heads: int, bidirectional: bool, num_buckets: int = 32, max_distance: int = 128):
        super().__init__(n_heads)
        self.bidirectional, self.num_buckets, self.max_distance = bidirectional, num_buckets, max_distance
        self.relative_attention_bias = nn.Embedding(num_buckets, n_heads)
        nn.init.normal_(self.relative_attention_bias.weight, std=0.02)

    def forward(self, q_pos: Tensor, k_pos: Tensor) -> Tensor:
        relative = k_pos[None, :] - q_pos[:, None]  # (tq, tk): memory - query, as in T5
        buckets = t5_bucket(relative, self.bidirectional, self.num_buckets, self.max_distance)
        return self.relative_attention_bias(buckets).permute(2, 0, 1)  # (H, tq, tk)

    def for_heads(self, q_pos: Tensor, k_pos: Tensor, heads: Tensor) -> Tensor:
        """The bias of ``heads`` only: (h, tq, tk), looked up in those heads' columns of the table."""
        relative = k_pos[None, :] - q_pos[:, None]
        buckets = t5_bucket(relative, self.bidirectional, self.num_buckets, self.max_distance)
        return torch.nn.functional.embedding(buckets, self.relative_attention_bias.weight[:, heads]).permute(2, 0, 1)


def t5_bucket(relative: Tensor, bidirectional: bool, num_buckets: int, max_distance: int) -> Tensor:
    """T5's relative position buckets (Raffel et al., arXiv 1910.10683): exact for small
    offsets, logarithmic up to max_distance, one bucket beyond."""
    buckets = torch.zeros_like(relative)
    if bidirectional:
        num_buckets //= 2
        buckets = buckets + (relative > 0).long() * num_buckets
        n = relative.abs()
    else:
        n = (-relative).clamp_min(0)
    max_exact = num_buckets // 2
    is_small = n < max_exact
    log_bucket = max_exact + (
        torch.log(n.float().clamp_min(1) / max_exact) / math.log(max_distance / max_exact) * (num_buckets - max_exact)
    ).long()
    log_bucket = log_bucket.clamp_max(num_buckets - 1)
    return buckets + torch.where(is_small, n, log_bucket)


class T5Relative(PositionalScheme):
    """Bucketed relative position bias (T5), bidirectional for encoders, causal for decoders."""

    name = "t5_relative"
    label = "T5 relative"
    summary = ("A learned bias per head and relative-offset bucket (Raffel et al. 2019); shown at its random "
               "initialisation (seed 0).")
    paper = "Raffel et al. 2019, T5, arXiv 1910.10683"
    parameters = ("n_heads", "max_len")

    def __init__(self, d_model: int, n_heads: int, max_positions: int, causal: bool = False,
                 num_buckets: int = 32, max_distance: int = 128, **kw: object):
        super().__init__(d_model, n_heads, max_positions, **kw)
        self.rel = T5Bias(n_heads, bidirectional=not causal, num_buckets=num_buckets, max_distance=max_distance)

    def bias(self) -> T5Bias:
        return self.rel

    @torch.no_grad()
    def describe(self, max_len: int = 128) -> dict:
        out = super().describe(max_len)
        offsets = torch.arange(-max_len + 1, max_len)
        out["buckets"] = {
            "offset": offsets.tolist(),
            "bucket": t5_bucket(offsets, self.rel.bidirectional, self.rel.num_buckets, self.rel.max_distance).tolist(),
        }
        return out


POSITIONAL: dict[str, type[PositionalScheme]] = {
    cls.name: cls for cls in (Sinusoidal, Learned, Rotary, ALiBi, T5Relative, PositionalScheme)  # the pages' order
}


def make_positional(name: str, **kwargs: object) -> PositionalScheme:
    cls = lookup(POSITIONAL, name, "positional scheme")
    return cls(**kwargs)
