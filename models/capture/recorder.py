"""Attention capture as (Q, K, LSE), never as T x T.

``with capture() as rec: model(ids)`` records, for every attention call made inside the
block, the post-rotary queries and keys, the lazy mask/bias spec and the row
log-sum-exp. Any block of the attention matrix is then exact and cheap:

    w[i, j] = exp(q_i . k_j * scale + bias[i, j] - lse_i)      (0 where masked)

The recorder is found through a context variable, not parked on modules, so two
threads (two server requests) capture independently.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ..attention import AttentionSpec, row_lse
from .packed import Int16Vectors, nbytes
from .progress import notify

Kind = Literal["encoder", "decoder", "cross"]

_current: contextvars.ContextVar[Recorder | None] = contextvars.ContextVar("attnlab_recorder", default=None)
_store_dtype: contextvars.ContextVar[torch.dtype] = contextvars.ContextVar("attnlab_capture_dtype",
                                                                          default=torch.float32)
_pool_sizes: contextvars.ContextVar[tuple[int, ...]] = contextvars.ContextVar("attnlab_capture_pools", default=())


def _as_slice(r: slice | tuple[int, int] | None, n: int, what: str) -> slice:
    if r is None:
        return slice(0, n)
    start, stop = (r.start, r.stop) if isinstance(r, slice) else r
    start = 0 if start is None else start
    stop = n if stop is None else stop
    if not 0 <= start < stop <= n:
        raise IndexError(f"{what} range {start}:{stop} is outside 0:{n}")
    return slice(start, stop)


@dataclass
class AttentionRecord:
    """One attention call: enough to rebuild any block of its weights."""

    kind: str
    layer: int
    q: Tensor | Int16Vectors  # (B, H, Tq, hd), after rotary
    k: Tensor | Int16Vectors  # (B, Hkv, Tk, hd), after rotary; heads shared by groups under GQA
    spec: AttentionSpec
    lse: Tensor  # (B, H, Tq), float32
    weights: Tensor | None = None  # (B, H, Tq, Tk), only under capture(keep_weights=True)
    v: Tensor | None = None  # (B, Hkv, Tk, hd), only under capture(keep_values=True)
    # size -> (B, H, n_q, n_k): every head's whole map max-pooled as the kernel ran (capture_pools + flash)
    pooled: dict[int, Tensor] | None = None

    @property
    def n_heads(self) -> int:
        return self.q.shape[1]

    @property
    def shape(self) -> tuple[int, int]:
        return self.q.shape[-2], self.k.shape[-2]

    def kv_head(self, head: int) -> int:
        return head // (self.q.shape[1] // self.k.shape[1])

    def nbytes(self) -> int:
        kept = [self.q, self.k, self.lse] + [t for t in (self.weights, self.v) if t is not None]
        kept += list((self.pooled or {}).values())
        return sum(nbytes(t) for t in kept)

    @torch.no_grad()  # a learned bias (T5 buckets) is a parameter: the maps are data, never part of a graph
    def log_block(self, heads: slice | Tensor, rows: slice, cols: slice, batch: int = 0) -> Tensor:
        """``q.k * scale + bias - lse`` for (heads, rows, cols): (h, r, c) float32, -inf where masked.

        ``exp`` of it is the block of weights; keeping the log lets max pooling
        exponentiate only the pooled cells (exp is monotonic).
        """
        head_idx = torch.arange(self.q.shape[1])[heads] if isinstance(heads, slice) else heads
        if self.weights is not None:  # kept by a capture(keep_weights=True) under `math`
            return self.weights[batch, head_idx, rows, cols].float().log()
        spec = self.spec
        group = self.q.shape[1] // self.k.shape[1]
        q = self.q[batch, head_idx, rows].float()  # (h, r, hd)
        k = self.k[batch, head_idx // group, cols].float()  # (h, c, hd): GQA heads share keys
        lse = self.lse[batch, head_idx, rows].float()  # (h, r)
        scores = torch.baddbmm(-lse[..., None], q, k.transpose(1, 2), alpha=spec.scale)
        q_pos = torch.arange(rows.start, rows.stop, device=q.device) + spec.q_offset
        k_pos = torch.arange(cols.start, cols.stop, device=q.device)
        bias = spec.bias_for_heads(q_pos, k_pos, head_idx, torch.float32)  # (h, r, c) or None
        if bias is not None:
            scores += bias
        # a causal block wholly at or below the diagonal has nothing to mask (the pooled overview of a long
        # run is mostly such blocks)
        crosses = spec.causal and cols.stop - 1 > rows.start + spec.q_offset
        if crosses or spec.pattern is not None or spec.key_padding is not None:
            mask = spec.mask_block(q_pos, k_pos, cols)  # (B or 1, 1, r, c) or None
            if mask is not None:
                scores.masked_fill_(~mask[min(batch, mask.shape[0] - 1), 0], float("-inf"))
        # a row with every key masked has lse = -inf: its weights are 0, not exp(nan)
        if not torch.isfinite(lse).all():
            scores.nan_to_num_(nan=float("-inf"), posinf=float("inf"))
        return scores

    def block(self, heads: slice | Tensor, rows: slice, cols: slice, batch: int = 0) -> Tensor:
        """Exact weights for (heads, rows, cols): shape (h, r, c), float32."""
        return self.log_block(heads, rows, cols, batch).exp_()


class Recorder:
    """Collects AttentionRecords; serves tiles, dense maps and pooled overviews."""

    def __init__(self, detach: bool = True, keep_weights: bool = False, keep_values: bool = False,
                 store_dtype: torch.dtype | None = None, pool_sizes: tuple[int, ...] | None = None):
        self.records: list[AttentionRecord] = []
        self.detach = detach
        # how Q and K are kept: float32, or for long runs int16 with a scale per vector (attnlab.models.capture.
        # packed; about half the memory) or float16. The attention call rounds Q and K to it *before* its
        # backend runs (attnlab.models.dispatch.attend), so the LSE the backend returns is the LSE of the
        # stored values: every rebuilt row still sums to 1
        self.store_dtype = store_dtype or _store_dtype.get()
        # for dense answers of small inputs: a backend that computes the weights anyway
        # (`math`) hands them over instead of the tiles rebuilding them from (Q, K, LSE)
        self.keep_weights = keep_weights
        # opt-in: V per KV head (as much again as K), for the computation view and value weighting
        self.keep_values = keep_values
        # whole-map max-pooled overviews a backend that pools as it runs (flash) gathers from its own tiles
        self.pool_sizes = tuple(pool_sizes if pool_sizes is not None else _pool_sizes.get())

    # -- recording (called by attention modules) ---------------------------------
    def keep(self, x: Tensor) -> tuple[Tensor | Int16Vectors, Tensor]:
        """(kept, used): Q or K as this capture keeps it, and the values attention should run on so that
        its LSE is the LSE of what is kept. A float32 capture, or a model not in float32, keeps ``x``."""
        if self.store_dtype == x.dtype or x.dtype != torch.float32:
            return (x.detach() if self.detach else x), x
        if self.store_dtype == torch.int16:
            return Int16Vectors.quantize(x)
        kept = x.detach().to(self.store_dtype)
        return kept, x.to(self.store_dtype).to(x.dtype)

    def add(self, kind: str, layer: int, q: Tensor | Int16Vectors, k: Tensor | Int16Vectors, spec: AttentionSpec,
            lse: Tensor | None, weights: Tensor | None = None, v: Tensor | None = None,
            pooled: dict[int, Tensor] | None = None) -> None:
        """Record one attention call; ``q`` and ``k`` as ``keep`` gave them (a plain tensor is kept as the
        capture's store dtype says). ``pooled``: the backend's whole-map overviews (AttentionResult.pooled)."""
        if isinstance(q, Tensor):
            q = self.keep(q)[0]
        if isinstance(k, Tensor):
            k = self.keep(k)[0]
        kept_v = v.detach() if v is not None and self.keep_values else None
        # the capture keeps a float32 LSE: a kernel that has none (sdpa), or one in a 16-bit dtype (math on a
        # bfloat16 model: its scores, and so its LSE, carry 8 bits), gets it recomputed in float32 from Q and K
        if lse is None or lse.dtype.itemsize < 4:
            group = q.shape[1] // k.shape[1]
            lse = row_lse(q.float(), k.float().repeat_interleave(group, dim=1), spec)
        kept = weights.detach() if weights is not None and self.keep_weights else None
        self.records.append(AttentionRecord(kind, layer, q, k, spec, lse.detach().float(), kept, kept_v, pooled))
        notify(kind, layer)  # progress of a long run; a cancelled one stops here, between layers

    # -- lookup -------------------------------------------------------------------
    @property
    def kinds(self) -> list[str]:
        return list(dict.fromkeys(r.kind for r in self.records))

    def layers(self, kind: str) -> int:
        return len({r.layer for r in self.records if r.kind == kind})

    def get(self, kind: str, layer: int) -> AttentionRecord:
        """The latest record of this kind and layer."""
        for rec in reversed(self.records):
            if rec.kind == kind and rec.layer == layer:
                return rec
        raise KeyError(f"no {kind!r} attention recorded for layer {layer}; recorded kinds: {self.kinds}, layers: "
                       f"{ {k: self.layers(k) for k in self.kinds} }")

    def nbytes(self) -> int:
        return sum(r.nbytes() for r in self.records)

    # -- reading weights ------------------------------------------------------------
    def tile(self, kind: str, layer: int, head: int, rows=None, cols=None, batch: int = 0) -> Tensor:
        """An exact block (r, c) of one head's attention matrix."""
        rec = self.get(kind, layer)
        if not 0 <= head < rec.n_heads:
            raise IndexError(f"head {head} is outside 0:{rec.n_heads}")
        t_q, t_k = rec.shape
        return rec.block(slice(head, head + 1), _as_slice(rows, t_q, "rows"), _as_slice(cols, t_k, "cols"), batch)[0]

    def dense(self, kind: str, layer: int, head: int | None = None, batch: int = 0) -> Tensor:
        """The whole map of one head (Tq, Tk), or of all heads (H, Tq, Tk). For small inputs."""
        rec = self.get(kind, layer)
        t_q, t_k = rec.shape
        heads = slice(0, rec.n_heads) if head is None else slice(head, head + 1)
        out = rec.block(heads, slice(0, t_q), slice(0, t_k), batch)
        return out if head is None else out[0]

    def all_dense(self, kind: str, batch: int = 0) -> Tensor:
        """(L, H, Tq, Tk) for every layer of a kind."""
        return torch.stack([self.dense(kind, layer, None, batch) for layer in range(self.layers(kind))])

    def pooled(self, kind: str, layer: int, head: int, size: int, mode: str = "max",
               rows=None, cols=None, batch: int = 0, block_rows: int = 256) -> tuple[Tensor, int]:
        """Downsample one head's map (or a region of it) to at most size x size: (pooled, factor).

        ``attnlab.models.capture.tiles.pooled_overview`` on the latest record of (kind, layer); ``block_rows``
        bounds the largest block computed at once. Raises ValueError for a size <= 0 or an unknown
        mode, IndexError for a range outside the map.
        """
        from .tiles import pooled_overview

        if size <= 0:
            raise ValueError(f"pool size must be positive, got {size}")
        rec = self.get(kind, layer)
        t_q, t_k = rec.shape
        r, c = _as_slice(rows, t_q, "rows"), _as_slice(cols, t_k, "cols")
        return pooled_overview(rec, head, size, mode, (r.start, r.stop), (c.start, c.stop), block_rows, batch)


def current_recorder() -> Recorder | None:
    return _current.get()


@contextlib.contextmanager
def capture_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Captures started in this block keep Q and K in ``dtype``: ``torch.int16`` (2 bytes per value plus a
    float32 scale per vector, ``attnlab.models.capture.packed``; what the server uses for long runs),
    ``torch.float16`` or ``torch.float32``; the LSE stays float32. Attention inside such a capture runs on Q and
    K rounded as they are kept, so the captured weights are exactly those the model used; the model's output
    then differs from a float32 forward by that rounding (int16 on SmolLM2: weights within 8.7e-4)."""
    if dtype not in (torch.float32, torch.float16, torch.bfloat16, torch.int16):
        raise ValueError(f"capture dtype must be float32, float16, bfloat16 or int16, not {dtype}")
    token = _store_dtype.set(dtype)
    try:
        yield
    finally:
        _store_dtype.reset(token)


@contextlib.contextmanager
def capture_pools(sizes: tuple[int, ...] | list[int]) -> Iterator[None]:
    """Captures started in this block ask the attention backend for each head's whole-map max-pooled overview
    at these sizes (at most size x size cells), gathered from its tiles while it runs: ``flash`` does, at the
    cost of one reduction per tile; other backends ignore it and overviews are pooled from the capture later
    (``pooled_overview`` returns the gathered ones when they are what it is asked for)."""
    if any(int(size) < 1 for size in sizes):
        raise ValueError(f"pool sizes must be positive, got {list(sizes)}")
    token = _pool_sizes.set(tuple(int(size) for size in sizes))
    try:
        yield
    finally:
        _pool_sizes.reset(token)


@contextlib.contextmanager
def capture(model: object | None = None, detach: bool = True, keep_weights: bool = False,
            keep_values: bool = False) -> Iterator[Recorder]:
    """Record every attention call made in this block (by any model, in this context).

    ``keep_values`` also keeps V (B, Hkv, Tk, hd) per call, for ``attnlab.models.explain``.

    ``model`` is accepted for readability (``with capture(model) as rec``); the
    recorder is bound to the current context, so concurrent requests do not mix.
    """
    rec = Recorder(detach=detach, keep_weights=keep_weights, keep_values=keep_values)
    token = _current.set(rec)
    try:
        yield rec
    finally:
        _current.reset(token)
