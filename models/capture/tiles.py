"""Reading a capture as maps: pooled overviews of one head, dense maps of many heads.

- ``pooled_overview``: one head's map pooled (max, or the mean over the cells that exist)
  block by block, skipping blocks the mask empties: a causal or sparse map costs only its
  unmasked blocks, and pooling is a reshape instead of ``max_pool2d`` with ragged edges
  (several times faster on CPU). The largest tensor alive is ``block x block``.
- ``dense_heads`` / ``stack_maps``: full maps of selected heads / layers, written in place.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.nn import functional as F

from ..names import lookup

if TYPE_CHECKING:
    from .recorder import AttentionRecord, Recorder

POOL_MODES = ("max", "mean")


def _pool(w: Tensor, factor: int, mode: str) -> Tensor:
    """(r, c) -> (ceil(r/f), ceil(c/f)); ragged edge cells pool the cells that exist."""
    if factor == 1:
        return w
    r, c = w.shape
    pad_r, pad_c = -r % factor, -c % factor
    padded = F.pad(w, (0, pad_c, 0, pad_r))  # zeros: weights are >= 0, so max is unchanged
    cells = padded.view(padded.shape[0] // factor, factor, padded.shape[1] // factor, factor)
    if mode == "max":
        return cells.amax(dim=(1, 3))
    total = cells.sum(dim=(1, 3))
    rows = torch.full((total.shape[0],), float(factor))
    cols = torch.full((total.shape[1],), float(factor))
    if pad_r:
        rows[-1] = factor - pad_r
    if pad_c:
        cols[-1] = factor - pad_c
    return total / (rows[:, None] * cols[None, :])


def pooled_overview(record: AttentionRecord, head: int, size: int, mode: str, rows: tuple[int, int],
                    cols: tuple[int, int], block: int = 1024, batch: int = 0) -> tuple[Tensor, int]:
    """One head's map over rows [a, b) x cols [c, d) pooled to at most size x size.

    Returns (pooled, factor): pooled is (ceil((b-a)/factor), ceil((d-c)/factor)) float32, each
    cell the max or mean of a factor x factor block of weights. ``mode`` is "max" or "mean"
    (else ``UnknownName``); ranges are taken as given (callers check them).
    """
    lookup(dict.fromkeys(POOL_MODES), mode, "pool mode")
    (a, b), (c, d) = rows, cols
    factor = max(1, math.ceil(max(b - a, d - c) / size))
    t_q, t_k = record.shape
    gathered = getattr(record, "pooled", None)  # a record, not a view of one (ValueWeighted)
    if mode == "max" and gathered and size in gathered and (a, b, c, d) == (0, t_q, 0, t_k):
        return gathered[size][batch, head].clone(), factor  # gathered by the kernel as it ran (flash)
    step = max(factor, block // factor * factor)  # block edges fall on pooled-cell edges
    out = torch.zeros(math.ceil((b - a) / factor), math.ceil((d - c) / factor))
    spec = record.spec
    heads = torch.tensor([head])
    for r0 in range(a, b, step):
        r1 = min(r0 + step, b)
        for c0 in range(c, d, step):
            c1 = min(c0 + step, d)
            if spec.block_is_empty(r0 + spec.q_offset, r1 + spec.q_offset, c0, c1):
                continue  # all masked: its pooled cells stay 0, as the weights are
            logw = record.log_block(heads, slice(r0, r1), slice(c0, c1), batch)[0]
            if mode == "max":
                pooled = _pool_log_max(logw, factor).exp_()
            else:
                pooled = _pool(logw.exp_(), factor, mode)
            i, j = (r0 - a) // factor, (c0 - c) // factor
            out[i : i + pooled.shape[0], j : j + pooled.shape[1]] = pooled
    return out, factor


def _pool_log_max(logw: Tensor, factor: int) -> Tensor:
    if factor == 1:
        return logw
    r, c = logw.shape
    padded = F.pad(logw, (0, -c % factor, 0, -r % factor), value=float("-inf"))
    return padded.view(padded.shape[0] // factor, factor, padded.shape[1] // factor, factor).amax(dim=(1, 3))


def dense_heads(record: AttentionRecord, heads: list[int], out: Tensor, batch: int = 0) -> None:
    """Write the full maps of ``heads`` into ``out`` (h, Tq, Tk), any dtype: ``record.block``'s
    values in one batched pass per layer, exponentiated in place."""
    t_q, t_k = record.shape
    if record.weights is not None:  # kept by the backend (math): no rebuild
        out.copy_(record.weights[batch, heads])
        return
    out.copy_(record.log_block(torch.tensor(heads), slice(0, t_q), slice(0, t_k), batch).exp_())


def stack_maps(rec: Recorder, kind: str, layers: list[int], heads: list[int],
               dtype: torch.dtype = torch.float32) -> Tensor:
    """(L, H, Tq, Tk) for the selected layers and heads of ``kind``, from the capture, written in place."""
    t_q, t_k = rec.get(kind, layers[0]).shape
    out = torch.empty(len(layers), len(heads), t_q, t_k, dtype=dtype)
    for i, layer in enumerate(layers):
        dense_heads(rec.get(kind, layer), heads, out[i])
    return out
