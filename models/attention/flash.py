"""The project's own tiled FlashAttention, in pure PyTorch.

FlashAttention (Dao et al. 2022, https://arxiv.org/abs/2205.14135) never builds the
Tq x Tk score matrix: it walks over (query block, key block) tiles, keeps a running
row max ``m``, running row sum ``l`` and an output accumulator, and rescales them
whenever a new tile raises the max ("online softmax"). The backward pass recomputes
each tile from Q, K, V, O and the row log-sum-exp (FlashAttention-2 ordering: key
blocks outside, query blocks inside), so memory stays O(T * d) plus one tile per
worker thread.

This is not a fused kernel: each tile is a handful of batched PyTorch ops over many
heads at once, so Python overhead is paid per tile, not per row or per head. Tiles
are therefore large, and tiles the spec proves empty (above the causal diagonal,
outside a sparse pattern) are skipped.

Parallelism on CPU: like SDPA's C++ kernel, and unlike a chain of multi-threaded
ops, independent work items (query blocks x head groups in the forward, key blocks
in the backward) run on a small pool of worker threads, each with one intra-op
thread. Every multi-threaded op is a fork/join; a tile is eight of them, and on a
busy machine each join can wait a scheduler slice for a descheduled thread (that
made the op-parallel version 7x slower than SDPA under load, measured).

Bias gradients: an additive bias (ALiBi, T5 buckets) is recomputed tile by tile in
the backward pass. If the spec's ``bias`` is an ``nn.Module`` whose parameters
require grad (T5 relative bias being trained), those parameters get their exact
gradient, summed over tiles; a bias that is a plain function gets none.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import Tensor, nn

from ..memory import map_on_torch_threads, profiled_here
from .backends import AttentionResult, kv_groups, register_backend, repeat_kv
from .spec import AttentionSpec

logger = logging.getLogger(__name__)

# Tile sizes measured on a 2-core AVX-512 CPU (T=4096 causal, B*H=12, D=64, fp32):
# 256 x 256 tiles (3 MiB of fp32 scores over all heads) were fastest; larger tiles
# spill the cache, smaller ones waste time in Python overhead per tile.
DEFAULT_BLOCK_Q = 256
DEFAULT_BLOCK_K = 256
LOG2E = 1.4426950408889634  # log2(e): exp(x) = exp2(x * LOG2E)
LN2 = 0.6931471805599453


def _auto_blocks(bh: int, t_q: int, t_k: int, block_q: int | None, block_k: int | None) -> tuple[int, int]:
    """Tile sizes: explicit arguments win; otherwise the defaults, grown for few heads.

    With few heads (one head at T=32768) a default tile is little work for its
    Python overhead, so tiles grow, keys first, until they hold about as many
    scores as a default tile over 12 heads.
    """
    bq, bk = DEFAULT_BLOCK_Q, DEFAULT_BLOCK_K
    target = 12 * DEFAULT_BLOCK_Q * DEFAULT_BLOCK_K
    while True:
        if bk <= bq and bh * bq * 2 * bk <= target and 2 * bk <= t_k:
            bk *= 2
        elif bh * 2 * bq * bk <= target and 2 * bq <= t_q:
            bq *= 2
        elif bh * bq * 2 * bk <= target and 2 * bk <= t_k:
            bk *= 2
        else:
            break
    return block_q if block_q is not None else bq, block_k if block_k is not None else bk


ALL = slice(None)


def _only_causal(spec: AttentionSpec) -> bool:
    """True when the mask is at most causal and there is no bias: the fast path."""
    return spec.bias is None and spec.key_padding is None and spec.pattern is None


class _Tiles:
    """Scores of one (query block, key block) tile, shared by forward and backward.

    Inputs are float32 views of shape (B*H, T, D). ``scores`` returns a fresh tensor
    (B*H, tq, tk) that the caller may modify in place, in base-2 units: the natural
    scores times log2(e), so that the kernels can use ``exp2`` (about 4x cheaper
    than ``exp`` on CPU, measured) as fused FlashAttention kernels do.
    """

    def __init__(self, q: Tensor, k: Tensor, spec: AttentionSpec, batch: int, heads: int):
        self.q, self.k, self.spec = q, k, spec
        self.batch, self.heads = batch, heads
        self.fast = _only_causal(spec)
        # On the fast path fold scale and log2(e) into Q once (O(T*d)) instead of
        # scaling every tile (O(tq*tk)).
        self.q_scaled = q * (spec.scale * LOG2E) if self.fast else None
        # K^T laid out once so every tile's first GEMM reads contiguous rows (~7% faster).
        self.k_t = k.transpose(1, 2).contiguous() if self.fast else None  # (BH, D, Tk)
        self.q_pos, self.k_pos = spec.positions(q.shape[1], k.shape[1], q.device)

    def empty(self, q0: int, q1: int, k0: int, k1: int) -> bool:
        off = self.spec.q_offset
        return self.spec.block_is_empty(q0 + off, q1 + off, k0, k1)

    def scores(self, q0: int, q1: int, k0: int, k1: int, heads: slice = ALL) -> Tensor:
        """Scores for rows [q0, q1) and keys [k0, k1); ``heads`` (a range of B*H) only on the fast path."""
        q_pos, k_pos = self.q_pos[q0:q1], self.k_pos[k0:k1]
        if self.fast:
            s = torch.bmm(self.q_scaled[heads, q0:q1], self.k_t[heads, :, k0:k1])  # (bh, tq, tk)
            # Only tiles crossing the diagonal need a mask; tiles fully below it are all allowed.
            if self.spec.causal and k1 - 1 > q0 + self.spec.q_offset:
                s.masked_fill_(k_pos[None, :] > q_pos[:, None], float("-inf"))
            return s
        bh, d = self.q.shape[0], self.q.shape[2]
        q4 = self.q[:, q0:q1].view(self.batch, self.heads, q1 - q0, d)  # (B, H, tq, D)
        k4 = self.k[:, k0:k1].view(self.batch, self.heads, k1 - k0, d)  # (B, H, tk, D)
        s = self.spec.scores_block(q4, k4, q_pos, k_pos, slice(k0, k1))  # (B, H, tq, tk)
        s = s.expand(self.batch, self.heads, q1 - q0, k1 - k0).reshape(bh, q1 - q0, k1 - k0)  # (BH, tq, tk)
        return s.mul_(LOG2E)


# Below this many scores per call (B*H*Tq*Tk) the pool's hand-off costs more than it
# saves; such calls (a small model's layers) run on the calling thread.
MIN_PARALLEL_SCORES = 1 << 20
_POOLS: dict[int, ThreadPoolExecutor | None] = {}
_POOLS_LOCK = threading.Lock()


def _forget_pools() -> None:
    # A forked child inherits the pool objects but not their threads: start afresh.
    global _POOLS_LOCK
    _POOLS.clear()
    _POOLS_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_forget_pools)


def _one_thread_worker(barrier: threading.Barrier) -> None:
    # torch initialises a thread's OpenMP thread count lazily on its first parallel
    # op; trigger that first, or it would later overwrite the 1 set here.
    torch.get_num_threads()
    torch.set_num_threads(1)
    barrier.wait()


def _worker_pool(n: int) -> ThreadPoolExecutor | None:
    """A pool of n threads whose torch ops are single-threaded; None where unsupported.

    OpenMP keeps the thread count per thread, so setting 1 in the workers leaves the
    callers' count alone; torch also records the last value set process-wide (for
    threads it starts later), which is put back right after the workers start.
    Checked, and disabled on a parallel backend where that does not hold.
    """
    with _POOLS_LOCK:
        if n in _POOLS:
            return _POOLS[n]
        pool = None
        if "OpenMP" in torch.__config__.parallel_info():
            caller = torch.get_num_threads()
            barrier = threading.Barrier(n)
            pool = ThreadPoolExecutor(n, thread_name_prefix="flash", initializer=_one_thread_worker,
                                      initargs=(barrier,))
            # n tasks make n threads start: each waits in the barrier until all exist
            counts = list(pool.map(lambda _: torch.get_num_threads(), range(n)))
            torch.set_num_threads(caller)
            if counts != [1] * n or torch.get_num_threads() != caller:
                logger.warning("flash: per-thread torch thread counts unsupported here; running tiles serially")
                pool.shutdown()
                pool = None
        _POOLS[n] = pool
        return pool


def _head_groups(tiles: _Tiles, t: int, block: int) -> list[slice]:
    """Split B*H into groups so that there are a few work items per worker thread.

    Only the fast path can split heads (a bias or padding needs whole (B, H) blocks).
    """
    workers, n_blocks, bh = torch.get_num_threads(), max(1, math.ceil(t / block)), tiles.q.shape[0]
    if not tiles.fast or workers <= 1:
        return [ALL]
    groups = min(bh, math.ceil(4 * workers / n_blocks))
    size = math.ceil(bh / groups)
    return [slice(h0, min(h0 + size, bh)) for h0 in range(0, bh, size)]


def _run(fn, items: list, tiles: _Tiles, serial: bool = False) -> None:
    """Run fn over independent work items: on the worker pool (CPU, large calls) or here."""
    workers = torch.get_num_threads()
    scores = tiles.q.shape[0] * tiles.q.shape[1] * tiles.k.shape[1]
    pool = None
    if not serial and tiles.q.device.type == "cpu" and workers > 1 and len(items) > 1 and scores >= MIN_PARALLEL_SCORES:
        pool = _worker_pool(workers)
    if pool is None:
        for item in items:
            fn(item)
        return

    def call(item) -> None:
        with torch.no_grad():  # grad mode is per thread; the caller's no_grad does not reach here
            fn(item)

    if profiled_here():
        # The profiler (attnlab's memory measurement) sees only threads that carry its state:
        # torch's own threads do, this pool's do not. Same tiles, same number at once.
        map_on_torch_threads(call, items, workers)
        return
    for _ in pool.map(call, items):
        pass


def _flatten(x: Tensor) -> Tensor:
    """(B, H, T, D) any float dtype -> contiguous float32 (B*H, T, D)."""
    b, h, t, d = x.shape
    return x.float().reshape(b * h, t, d)  # (B*H, T, D)


class _Pooler:
    """A whole map's max-pooled overview of every head, gathered from the forward's own tiles.

    Each cell is the largest weight in a ``factor`` x ``factor`` block, ``factor = ceil(max(Tq, Tk) / size)``
    (the rule of ``attnlab.models.capture.tiles.pooled_overview``, which gives the same cells from a capture).
    A work item keeps, per query row, the largest score in each key cell (scores are final before the row's
    LSE is); once its rows are done, ``exp2(max score - lse)`` is the largest weight, and the rows are pooled
    into their cells. One extra reduction per tile instead of a second pass over every score after the run.
    """

    def __init__(self, bh: int, t_q: int, t_k: int, size: int, device: torch.device):
        self.size = size
        self.factor = f = max(1, math.ceil(max(t_q, t_k) / size))
        self.out = torch.zeros(bh, math.ceil(t_q / f), math.ceil(t_k / f), dtype=torch.float32, device=device)
        self.lock = threading.Lock()  # items of different threads may share a cell row

    def start(self, bh: int, rows: int) -> Tensor:
        """Per-row maxima of an item's scores by key cell: (cells, bh, rows), -inf (nothing seen yet); cell-major,
        so that the cell a tile piece updates is one contiguous block."""
        return torch.full((self.out.shape[2], bh, rows), float("-inf"), dtype=torch.float32, device=self.out.device)

    def add_tile(self, row_max: Tensor, s: Tensor, k0: int, k1: int) -> Tensor:
        """Fold a tile's scores s (bh, tq, k1 - k0) into ``row_max``; returns the tile's own row maxima
        (bh, tq), taken from the pieces, so the online softmax needs no pass of its own over the tile."""
        f, j = self.factor, k0
        tile_max = None
        while j < k1:
            end = min(k1, (j // f + 1) * f)  # the rest of the cell j is in, or the tile's end
            whole = (k1 - j) // f if j % f == 0 else 0
            if whole > 1:  # several whole cells at once: (bh, tq, whole) -> (whole, bh, tq)
                end = j + whole * f
                block = s[..., j - k0 : end - k0].unflatten(-1, (whole, f)).amax(-1)
                cells = row_max[j // f : j // f + whole]
                torch.maximum(cells, block.permute(2, 0, 1), out=cells)
                piece = block.amax(-1)
            else:
                piece = s[..., j - k0 : end - k0].amax(-1)  # (bh, tq)
                torch.maximum(row_max[j // f], piece, out=row_max[j // f])
            tile_max = piece if tile_max is None else torch.maximum(tile_max, piece, out=tile_max)
            j = end
        return tile_max

    def finish(self, row_max: Tensor, lse2: Tensor, heads: slice, q0: int, q1: int) -> None:
        """Rows [q0, q1) done: their largest weights per key cell, pooled into the row cells."""
        w = torch.exp2(row_max - lse2).nan_to_num_(nan=0.0)  # (cells, bh, rows); a row with no key: -inf - -inf
        f = self.factor
        with self.lock:
            r = q0
            while r < q1:
                end = min(q1, (r // f + 1) * f)
                cell = self.out[heads, r // f]  # (bh, cells)
                torch.maximum(cell, w[:, :, r - q0 : end - q0].amax(-1).t(), out=cell)
                r = end


def _forward(q: Tensor, k: Tensor, v: Tensor, spec: AttentionSpec, block_q: int, block_k: int,
             pool_sizes: tuple[int, ...] = ()) -> tuple[Tensor, Tensor, dict[int, Tensor] | None]:
    """Tiled online-softmax forward. Returns out (B, H, Tq, D) in q.dtype, lse float32 (B, H, Tq) and, for
    ``pool_sizes``, each size's max-pooled overview of every head (B, H, ceil(Tq/f), ceil(Tk/f)), else None."""
    b, h, t_q, d = q.shape
    qf, kf, vf = _flatten(q), _flatten(k), _flatten(v)
    tiles = _Tiles(qf, kf, spec, b, h)
    bh = b * h
    out = torch.empty(bh, t_q, d, dtype=torch.float32, device=q.device)
    lse = torch.empty(bh, t_q, dtype=torch.float32, device=q.device)
    poolers = [_Pooler(bh, t_q, kf.shape[1], size, q.device) for size in pool_sizes]
    items = [(heads, q0) for q0 in range(0, t_q, block_q) for heads in _head_groups(tiles, t_q, block_q)]
    # Longest rows first: under a causal mask the last query blocks have the most tiles.
    items.reverse()
    _run(lambda item: _forward_rows(tiles, vf, out, lse, item[0], item[1], block_q, block_k, poolers), items, tiles)
    out = out.view(b, h, t_q, d).to(q.dtype)  # (B, H, Tq, D)
    pooled = {p.size: p.out.view(b, h, *p.out.shape[1:]) for p in poolers} if poolers else None
    return out, lse.view(b, h, t_q), pooled  # (B, H, Tq)


def _forward_rows(tiles: _Tiles, vf: Tensor, out: Tensor, lse: Tensor, heads: slice, q0: int, block_q: int,
                  block_k: int, poolers: list[_Pooler] = ()) -> None:
    """One work item: query rows [q0, q0 + block_q) of some heads against every key."""
    t_q, t_k, d = out.shape[1], vf.shape[1], out.shape[2]
    q1 = min(q0 + block_q, t_q)
    bh = len(range(out.shape[0])[heads])
    m = torch.full((bh, q1 - q0), float("-inf"), dtype=torch.float32, device=out.device)
    l = torch.zeros(bh, q1 - q0, dtype=torch.float32, device=out.device)  # noqa: E741  (the paper's m, l)
    row_max = [p.start(bh, q1 - q0) for p in poolers]
    # A contiguous accumulator: baddbmm_ into a strided view of `out` would fall
    # back to one addmm per head.
    acc = torch.zeros(bh, q1 - q0, d, dtype=torch.float32, device=out.device)
    for k0 in range(0, t_k, block_k):
        k1 = min(k0 + block_k, t_k)
        if tiles.empty(q0, q1, k0, k1):
            continue
        s = tiles.scores(q0, q1, k0, k1, heads)  # (bh, tq, tk), base 2
        # the tile's row max: from the first pooler's cell maxima when pooling (one pass over s, not two)
        tile_max = [pooler.add_tile(maxima, s, k0, k1) for pooler, maxima in zip(poolers, row_max)]
        m_new = torch.maximum(m, tile_max[0] if tile_max else s.amax(dim=-1))
        # A row with every key so far masked keeps m = -inf; subtracting 0 instead
        # keeps exp(-inf - m) = 0 rather than exp(nan).
        m_safe = m_new.masked_fill(m_new == float("-inf"), 0.0)
        alpha = torch.exp2(m - m_safe)  # rescales the old sum and accumulator
        s.sub_(m_safe.unsqueeze(-1)).exp2_()  # s is now p, unnormalised
        l.mul_(alpha).add_(s.sum(dim=-1))
        acc.mul_(alpha.unsqueeze(-1)).baddbmm_(s, vf[heads, k0:k1])
        m = m_new
    # Rows with no allowed key have l = 0: output 0, lse = -inf + log 0 = -inf.
    torch.div(acc, l.masked_fill(l == 0, 1.0).unsqueeze(-1), out=out[heads, q0:q1])
    lse2 = m + torch.log2(l)
    lse[heads, q0:q1] = lse2 * LN2  # back to natural log
    for pooler, maxima in zip(poolers, row_max):
        pooler.finish(maxima, lse2, heads, q0, q1)


def _bias_params(spec: AttentionSpec) -> list[Tensor]:
    """Trainable tensors behind the spec's bias, if it is a module (T5 relative bias)."""
    if isinstance(spec.bias, nn.Module):
        return [p for p in spec.bias.parameters() if p.requires_grad]
    return []


def _backward(ctx, d_out: Tensor, d_lse: Tensor | None):
    q, k, v, out, lse = ctx.saved_tensors
    spec: AttentionSpec = ctx.spec
    block_q, block_k = ctx.blocks
    params = list(ctx.params)
    b, h, t_q, d = q.shape
    t_k = k.shape[2]
    bh = b * h
    qf, kf, vf = _flatten(q), _flatten(k), _flatten(v)
    d_of = _flatten(d_out)
    tiles = _Tiles(qf, kf, spec, b, h)
    lse_f = lse.reshape(bh, t_q) * LOG2E  # (BH, Tq), base-2 like the tiles
    # Fully masked rows have lse = -inf; +inf there makes every p = exp(s - lse) = 0.
    lse_f = lse_f.masked_fill(lse_f == float("-inf"), float("inf"))
    # D_i = rowsum(dO * O) is the softmax-Jacobian term; a gradient on the lse output
    # adds p_ij * dlse_i to dS, folded in here as D_i - dlse_i.
    delta = (d_of * _flatten(out)).sum(dim=-1)  # (BH, Tq)
    if d_lse is not None:
        delta = delta - d_lse.float().reshape(bh, t_q)
    dk = torch.empty_like(kf)
    dv = torch.empty_like(vf)
    d_params = [torch.zeros_like(p) for p in params]
    state = (tiles, qf, kf, vf, d_of, lse_f, delta, dk, dv, params, d_params, block_q)
    # dQ sums over key blocks, so each worker thread accumulates its own copy
    # (contiguous per query block, for baddbmm_) and the copies are added at the end.
    per_thread, copies, lock = threading.local(), [], threading.Lock()

    def dq_copy() -> list[Tensor]:
        if not hasattr(per_thread, "dq"):
            per_thread.dq = [torch.zeros(bh, min(block_q, t_q - q0), d, device=q.device)
                             for q0 in range(0, t_q, block_q)]
            with lock:
                copies.append(per_thread.dq)
        return per_thread.dq

    items = [(heads, k0) for k0 in range(0, t_k, block_k) for heads in _head_groups(tiles, t_k, block_k)]
    # Bias parameters take autograd calls inside the loop: keep those on this thread.
    _run(lambda item: _backward_cols(state, item[0], item[1], block_k, dq_copy()), items, tiles, serial=bool(params))
    dq_blocks = [sum(blocks) for blocks in zip(*copies)]
    dq = torch.cat(dq_blocks, dim=1) if dq_blocks else torch.zeros_like(qf)  # (BH, Tq, D)
    grads = [g.view(b, h, -1, d).to(x.dtype) for g, x in ((dq, q), (dk, k), (dv, v))]
    return (*grads, None, None, None, *d_params)


def _backward_cols(state, heads: slice, k0: int, block_k: int, dq_blocks: list[Tensor]) -> None:
    """One work item: key columns [k0, k0 + block_k) of some heads against every query."""
    tiles, qf, kf, vf, d_of, lse_f, delta, dk, dv, params, d_params, block_q = state
    t_q, t_k, d = qf.shape[1], kf.shape[1], qf.shape[2]
    k1 = min(k0 + block_k, t_k)
    k_blk, v_blk = kf[heads, k0:k1], vf[heads, k0:k1]
    bh = k_blk.shape[0]
    # Contiguous accumulators: baddbmm_ into a strided slice of a (BH, T, D) tensor
    # falls back to one small matmul per head.
    dk_blk = torch.zeros(bh, k1 - k0, d, device=kf.device)
    dv_blk = torch.zeros(bh, k1 - k0, d, device=kf.device)
    for q0, dq_all in zip(range(0, t_q, block_q), dq_blocks):
        q1 = min(q0 + block_q, t_q)
        if tiles.empty(q0, q1, k0, k1):
            continue
        p = tiles.scores(q0, q1, k0, k1, heads)  # (bh, tq, tk), base 2
        p.sub_(lse_f[heads, q0:q1].unsqueeze(-1)).exp2_()  # softmax probabilities
        do_blk = d_of[heads, q0:q1]  # (bh, tq, D)
        dv_blk.baddbmm_(p.transpose(1, 2), do_blk)
        dp = torch.bmm(do_blk, v_blk.transpose(1, 2))  # (bh, tq, tk)
        ds = dp.sub_(delta[heads, q0:q1].unsqueeze(-1)).mul_(p)  # dS = P * (dP - D)
        if params:
            _accumulate_bias_grad(tiles.spec, tiles, ds, q0, q1, k0, k1, params, d_params, tiles.batch, tiles.heads)
        dq_all[heads].baddbmm_(ds, k_blk, alpha=tiles.spec.scale)
        dk_blk.baddbmm_(ds.transpose(1, 2), qf[heads, q0:q1], alpha=tiles.spec.scale)
    dk[heads, k0:k1] = dk_blk
    dv[heads, k0:k1] = dv_blk


def _accumulate_bias_grad(spec, tiles, ds, q0, q1, k0, k1, params, d_params, b, h) -> None:
    """Add this tile's contribution to the bias parameters' gradient.

    The bias is shared across the batch, so its gradient is dS summed over B.
    """
    with torch.enable_grad():
        bias = spec.bias(tiles.q_pos[q0:q1], tiles.k_pos[k0:k1]).float()  # (H, tq, tk)
        g_bias = ds.view(b, h, q1 - q0, k1 - k0).sum(dim=0)  # (H, tq, tk)
        grads = torch.autograd.grad(bias, params, g_bias, allow_unused=True)
    for acc, g in zip(d_params, grads):
        if g is not None:
            acc.add_(g)


class _FlashFunction(torch.autograd.Function):
    """Autograd wrapper: saves Q, K, V, O and LSE only; backward recomputes tiles."""

    @staticmethod
    def forward(ctx, q, k, v, spec, block_q, block_k, *params):
        out, lse, _ = _forward(q, k, v, spec, block_q, block_k)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.spec, ctx.blocks, ctx.params = spec, (block_q, block_k), params
        return out, lse

    @staticmethod
    def backward(ctx, d_out, d_lse):
        return _backward(ctx, d_out, d_lse)


@register_backend(
    "flash",
    returns_weights=False,
    returns_lse=True,
    description="tiled online-softmax FlashAttention in PyTorch: O(T*d) memory, returns row LSE",
    pools=True,
)
def flash_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    spec: AttentionSpec,
    need_weights: bool = False,
    *,
    block_q: int | None = None,
    block_k: int | None = None,
    pool_sizes: tuple[int, ...] = (),
) -> AttentionResult:
    """FlashAttention over q (B, H, Tq, D), k and v (B, Hkv, Tk, D), Hkv dividing H.

    Returns ``AttentionResult(out, None, lse)``: out (B, H, Tq, D) in q's dtype and the
    row log-sum-exp (B, H, Tq) in float32 (-inf for rows with no allowed key, whose
    output is 0). Any float dtype is accepted; tiles accumulate in float32.
    ``block_q``/``block_k`` override the tile sizes (see ``DEFAULT_BLOCK_Q``).
    ``pool_sizes``: also return, in ``AttentionResult.pooled``, each size's max-pooled overview of every head's
    whole map (B, H, n_q, n_k), gathered from the tiles as they are computed (``_Pooler``); not under autograd.
    Grouped-query K/V (Hkv < H) are repeated per query head here, outside the autograd
    function, so their gradients come back summed over each group; that costs one
    (B, H, Tk, D) copy, the size of Q, and keeps memory O(T * d).
    """
    if need_weights:
        raise ValueError("flash attention never builds the weight matrix; use 'math' or the capture's tiles")
    group = kv_groups(q, k, v)
    k, v = repeat_kv(k, group), repeat_kv(v, group)  # (B, H, Tk, D)
    b, h, t_q, _ = q.shape
    bq, bk = _auto_blocks(b * h, t_q, k.shape[2], block_q, block_k)
    if bq < 1 or bk < 1:
        raise ValueError(f"block sizes must be positive, got block_q={bq}, block_k={bk}")
    params = _bias_params(spec)
    needs_graph = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v, *params))
    if needs_graph:
        out, lse = _FlashFunction.apply(q, k, v, spec, bq, bk, *params)
        pooled = None
    else:
        out, lse, pooled = _forward(q, k, v, spec, bq, bk, tuple(pool_sizes))
    return AttentionResult(out, None, lse, pooled)

