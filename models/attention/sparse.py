"""Static sparse attention patterns as lazy mask specifications.

A pattern answers two questions from absolute positions, never from a stored T x T
mask: which (query, key) pairs are allowed (``allowed``) and whether a whole tile is
empty (``block_is_empty``, which lets the flash backend skip it). Both patterns
always allow the diagonal, so no row is left without a key. Causality is not part
of a pattern: ``AttentionSpec(causal=True, pattern=...)`` intersects the two.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch
from torch import Tensor

from ..names import lookup


def _cell_edges(seq_len: int, max_cells: int) -> tuple[Tensor, int]:
    """Edges [0, c, 2c, ..., T] of the plot cells, and the cell size c."""
    cell = max(1, -(-seq_len // max(1, max_cells)))  # ceil division
    edges = torch.arange(0, seq_len, cell)
    return torch.cat([edges, torch.tensor([seq_len])]), cell


def _jsonable(value):
    return list(value) if isinstance(value, tuple) else value


class _PatternBase:
    """Shared describe(): concrete patterns supply ``name``, ``_cells`` and ``density``."""

    name: str

    def _cells(self, row_edges: Tensor, col_edges: Tensor) -> Tensor:
        """Bool (len(row_edges)-1, len(col_edges)-1): True where a cell has an allowed pair."""
        raise NotImplementedError

    def density(self, seq_len: int) -> float:
        raise NotImplementedError

    def describe(self, seq_len: int, max_cells: int = 256) -> dict:
        """JSON-friendly summary for plots: parameters, density, and a pooled mask.

        ``mask`` is a nested list of 0/1 of at most ``max_cells`` x ``max_cells`` cells;
        a cell is 1 when at least one (query, key) pair inside it is allowed (max
        pooling), so thin structure such as the diagonal stays visible.
        """
        edges, cell = _cell_edges(seq_len, max_cells)
        cells = self._cells(edges, edges)
        return {
            "name": self.name,
            "params": {f.name: _jsonable(getattr(self, f.name)) for f in fields(self) if f.init},
            "seq_len": seq_len,
            "density": self.density(seq_len),
            "cell_size": cell,
            "mask": cells.to(torch.uint8).tolist(),
        }


@dataclass(frozen=True)
class LongformerPattern(_PatternBase):
    """Longformer sliding window plus global tokens (Beltagy et al. 2020, arXiv 2004.05150).

    Convention: ``window`` is the total span, so query i attends key j when
    ``|i - j| <= window // 2`` (window//2 keys on each side, as in the paper's
    "w/2 on each side"). A position in ``global_tokens`` attends every key and is
    attended by every query.
    """

    window: int
    global_tokens: tuple[int, ...] = ()
    name = "longformer"

    def __post_init__(self):
        if self.window < 0:
            raise ValueError(f"window must be >= 0, got {self.window}")
        tokens = tuple(sorted({int(t) for t in self.global_tokens}))
        if any(t < 0 for t in tokens):
            raise ValueError(f"global_tokens must be non-negative positions, got {self.global_tokens}")
        object.__setattr__(self, "global_tokens", tokens)

    @property
    def half(self) -> int:
        return self.window // 2

    def _globals(self, device=None) -> Tensor:
        return torch.tensor(self.global_tokens, dtype=torch.long, device=device)

    def allowed(self, q_pos: Tensor, k_pos: Tensor) -> Tensor:
        ok = (q_pos[:, None] - k_pos[None, :]).abs() <= self.half  # (tq, tk)
        if self.global_tokens:
            g = self._globals(q_pos.device)
            ok |= torch.isin(q_pos, g)[:, None] | torch.isin(k_pos, g)[None, :]
        return ok

    def _any_global_in(self, lo: int, hi: int) -> bool:
        return any(lo <= t < hi for t in self.global_tokens)

    def block_is_empty(self, q0: int, q1: int, k0: int, k1: int) -> bool:
        if q1 <= q0 or k1 <= k0:
            return True
        # Smallest |i - j| between the two ranges; 0 when they overlap. Exact.
        gap = max(0, k0 - (q1 - 1), q0 - (k1 - 1))
        if gap <= self.half:
            return False
        return not (self._any_global_in(q0, q1) or self._any_global_in(k0, k1))

    def _cells(self, row_edges: Tensor, col_edges: Tensor) -> Tensor:
        r0, r1 = row_edges[:-1, None], row_edges[1:, None]
        c0, c1 = col_edges[None, :-1], col_edges[None, 1:]
        gap = torch.clamp(torch.maximum(c0 - (r1 - 1), r0 - (c1 - 1)), min=0)
        ok = gap <= self.half
        if self.global_tokens:
            g = self._globals()
            # Globals inside [lo, hi) counted by two binary searches per edge.
            def has_global(lo: Tensor, hi: Tensor) -> Tensor:
                return torch.searchsorted(g, hi) > torch.searchsorted(g, lo)

            ok |= has_global(r0, r1) | has_global(c0, c1)
        return ok

    def density(self, seq_len: int) -> float:
        """Fraction of the seq_len x seq_len pairs allowed (exact, O(T log G))."""
        if seq_len <= 0:
            return 0.0
        i = torch.arange(seq_len)
        lo = torch.clamp(i - self.half, min=0)
        hi = torch.clamp(i + self.half, max=seq_len - 1)
        band = hi - lo + 1  # keys in row i's window
        g = self._globals()
        g = g[g < seq_len]
        if g.numel() == 0:
            return band.sum().item() / seq_len**2
        in_band = torch.searchsorted(g, hi, right=True) - torch.searchsorted(g, lo)
        is_global = torch.isin(i, g)
        # A global row sees all keys; another row sees its window plus the global keys outside it.
        per_row = torch.where(is_global, torch.full_like(band, seq_len), band + g.numel() - in_band)
        return per_row.sum().item() / seq_len**2


@dataclass(frozen=True)
class BigBirdPattern(_PatternBase):
    """BigBird block-sparse attention (Zaheer et al. 2020, arXiv 2007.14062).

    Positions are grouped in blocks of ``block`` tokens; query block a attends key
    block c when any of:

    - window: ``|a - c| <= window_blocks // 2`` (``window_blocks=3`` is the paper's
      block itself plus one neighbour on each side);
    - global: ``a < global_blocks`` or ``c < global_blocks``;
    - random: c is one of ``random_blocks`` key blocks drawn for a.

    Random blocks are drawn, without replacement, from the blocks strictly between
    the global blocks and a's window on the *past* side, with a generator seeded by
    (seed, a). That keeps the pattern independent of the sequence length (a prefix
    of a longer sequence sees the same mask, so KV-cache decoding agrees with a full
    pass) and compatible with a causal mask; early query blocks with fewer
    candidates get fewer random blocks.
    """

    block: int
    window_blocks: int = 3
    global_blocks: int = 1
    random_blocks: int = 1
    seed: int = 0
    name = "bigbird"
    _random_cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        for fname in ("block", "window_blocks"):
            if getattr(self, fname) < 1:
                raise ValueError(f"{fname} must be >= 1, got {getattr(self, fname)}")
        for fname in ("global_blocks", "random_blocks"):
            if getattr(self, fname) < 0:
                raise ValueError(f"{fname} must be >= 0, got {getattr(self, fname)}")

    @property
    def half(self) -> int:
        return self.window_blocks // 2

    def random_key_blocks(self, query_block: int) -> Tensor:
        """The random key blocks of one query block (sorted long tensor), cached."""
        hit = self._random_cache.get(query_block)
        if hit is not None:
            return hit
        lo, hi = self.global_blocks, query_block - self.half  # candidates: [lo, hi)
        n = max(0, hi - lo)
        if n == 0 or self.random_blocks == 0:
            blocks = torch.empty(0, dtype=torch.long)
        else:
            gen = torch.Generator().manual_seed((self.seed * 1_000_003 + query_block) % (2**63))
            blocks = torch.randperm(n, generator=gen)[: self.random_blocks].sort().values + lo
        self._random_cache[query_block] = blocks
        return blocks

    def block_mask(self, qb0: int, qb1: int, kb0: int, kb1: int) -> Tensor:
        """Bool (qb1-qb0, kb1-kb0): allowed block pairs for query blocks [qb0, qb1), key blocks [kb0, kb1)."""
        a = torch.arange(qb0, qb1)[:, None]
        c = torch.arange(kb0, kb1)[None, :]
        ok = ((a - c).abs() <= self.half) | (a < self.global_blocks) | (c < self.global_blocks)
        if self.random_blocks:
            # Only query blocks whose past candidates can reach [kb0, kb1) can add anything.
            for row, qb in enumerate(range(qb0, qb1)):
                r = self.random_key_blocks(qb)
                r = r[(r >= kb0) & (r < kb1)]
                ok[row, r - kb0] = True
        return ok

    def allowed(self, q_pos: Tensor, k_pos: Tensor) -> Tensor:
        if q_pos.numel() == 0 or k_pos.numel() == 0:
            return torch.zeros(q_pos.numel(), k_pos.numel(), dtype=torch.bool, device=q_pos.device)
        qb, kb = q_pos // self.block, k_pos // self.block
        qb0, kb0 = int(qb.min()), int(kb.min())
        bm = self.block_mask(qb0, int(qb.max()) + 1, kb0, int(kb.max()) + 1).to(q_pos.device)
        return bm[(qb - qb0)[:, None], (kb - kb0)[None, :]]  # (tq, tk)

    def block_is_empty(self, q0: int, q1: int, k0: int, k1: int) -> bool:
        if q1 <= q0 or k1 <= k0:
            return True
        b = self.block
        # Every block pair touched by the tile has at least one position pair inside
        # the tile, and all pairs of a block pair share one status: exact.
        return not bool(self.block_mask(q0 // b, (q1 - 1) // b + 1, k0 // b, (k1 - 1) // b + 1).any())

    def _block_sizes(self, seq_len: int) -> Tensor:
        n = -(-seq_len // self.block)
        sizes = torch.full((n,), self.block, dtype=torch.float64)
        sizes[-1] = seq_len - (n - 1) * self.block
        return sizes

    def density(self, seq_len: int) -> float:
        """Fraction of the seq_len x seq_len pairs allowed (exact, at block level)."""
        if seq_len <= 0:
            return 0.0
        sizes = self._block_sizes(seq_len)
        n = sizes.numel()
        bm = self.block_mask(0, n, 0, n).to(torch.float64)
        return (sizes @ bm @ sizes).item() / seq_len**2

    def _cells(self, row_edges: Tensor, col_edges: Tensor) -> Tensor:
        # 2-D prefix sums over the block mask count allowed block pairs in each cell's
        # block rectangle: exact whatever the cell and block sizes.
        seq_len = int(max(row_edges[-1], col_edges[-1]))
        n = -(-seq_len // self.block)
        bm = self.block_mask(0, n, 0, n).to(torch.int32)
        pre = torch.zeros(n + 1, n + 1, dtype=torch.int32)
        pre[1:, 1:] = bm.cumsum(0).cumsum(1)
        r0 = (row_edges[:-1] // self.block)[:, None]
        r1 = ((row_edges[1:] - 1) // self.block + 1)[:, None]
        c0 = (col_edges[:-1] // self.block)[None, :]
        c1 = ((col_edges[1:] - 1) // self.block + 1)[None, :]
        count = pre[r1, c1] - pre[r0, c1] - pre[r1, c0] + pre[r0, c0]
        return count > 0


PATTERNS: dict[str, type] = {"longformer": LongformerPattern, "bigbird": BigBirdPattern}


def make_pattern(name: str, **params) -> LongformerPattern | BigBirdPattern:
    """Build a registered pattern by name, e.g. ``make_pattern("longformer", window=64)``."""
    cls = lookup(PATTERNS, name, "sparse pattern")
    return cls(**params)
