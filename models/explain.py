"""Explaining one head from its capture: how a weight is computed, what a weight is worth, where Q and K lie.

Built on the (Q, K, LSE) capture, plus V when the run kept it (``capture(keep_values=True)``) and the
head's slice of the output projection W_O read from the model's weights (``ModelAdapter.output_projection``):

- ``query_computation``: every step from q and k_j to the head's output for one query (scaled dot
  product, bias, mask, softmax, weighted sum of values, projection through W_O); BertViz's neuron view
  (Vig 2019, arXiv 1904.02679) for every model;
- ``value_norms`` and ``ValueWeighted``: attention weighted by the norm of what each key contributes,
  ``alpha_ij * ||v_j W_O^h||`` (Kobayashi et al. 2020, "Attention is Not Only a Weight", arXiv 2004.10102),
  read as tiles and pooled overviews like the raw maps;
- ``qk_joint``: queries and keys of one head in one space where nearness reflects the dot product
  (AttentionViz, Yeh et al. 2023, arXiv 2305.03210).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .capture import AttentionRecord


def head_slice(weight: Tensor, head: int, head_dim: int) -> Tensor:
    """Head ``head``'s columns of W_O (d_model, H * hd): (d_model, hd)."""
    return weight[:, head * head_dim:(head + 1) * head_dim]


def record_values(record: AttentionRecord, head: int, batch: int = 0) -> Tensor:
    """V (Tk, hd) of the KV head that query head ``head`` reads; ValueError when the run did not keep V."""
    if record.v is None:
        raise ValueError("values: this capture did not keep V; run with values (capture(keep_values=True))")
    return record.v[batch, record.kv_head(head)].float()


def value_norms(record: AttentionRecord, head: int, w_o: Tensor, batch: int = 0) -> Tensor:
    """``||v_j W_O^h||`` for every key j: (Tk,) float32. ``w_o`` is the layer's W_O, (d_model, H * hd)."""
    v = record_values(record, head, batch)
    return (v @ head_slice(w_o, head, v.shape[-1]).float().T).norm(dim=-1)


@dataclass
class QueryComputation:
    """One query's attention in one head, step by step (float32; Tk keys, hd head dim, d_model).

    ``scores`` are -inf where ``mask`` is False; ``weights`` = softmax(scores) (0 for a row with no
    allowed key). The value fields are None when V was not captured; ``output_projected`` and
    ``value_norms`` also need W_O.
    """

    query: int
    q: Tensor  # (hd,) post-rotary, as used
    k: Tensor  # (Tk, hd) post-rotary
    products: Tensor  # (Tk, hd) q * k_j elementwise; sums to dot
    dot: Tensor  # (Tk,)
    scale: float
    bias: Tensor | None  # (Tk,) ALiBi / T5 / an HF mask as bias; None without one
    mask: Tensor  # (Tk,) bool, True = allowed
    scores: Tensor  # (Tk,) dot * scale + bias, -inf where masked
    weights: Tensor  # (Tk,)
    v: Tensor | None = None  # (Tk, hd)
    weighted_v: Tensor | None = None  # (Tk, hd) weights_j * v_j
    output: Tensor | None = None  # (hd,) sum_j weights_j v_j: the head's output
    output_projected: Tensor | None = None  # (d_model,) W_O^h output: the head's share of the block output
    value_norms: Tensor | None = None  # (Tk,) ||v_j W_O^h||


def query_computation(record: AttentionRecord, head: int, query: int, w_o: Tensor | None = None,
                      batch: int = 0) -> QueryComputation:
    """The computation of query ``query``'s weights in head ``head`` of a captured attention call.

    ``w_o``: the layer's output projection weight (d_model, H * hd), for the projected output and the
    value norms. Raises IndexError for a head or query outside the record.
    """
    t_q, t_k = record.shape
    if not 0 <= head < record.n_heads:
        raise IndexError(f"head {head} is outside 0:{record.n_heads}")
    if not 0 <= query < t_q:
        raise IndexError(f"query {query} is outside 0:{t_q}")
    spec = record.spec
    q = record.q[batch, head, query].float()  # (hd,)
    k = record.k[batch, record.kv_head(head)].float()  # (Tk, hd): GQA heads share keys
    products = q[None] * k
    dot = products.sum(-1)
    q_pos = torch.tensor([query + spec.q_offset])
    k_pos = torch.arange(t_k)
    bias_block = spec.bias_block(q_pos, k_pos, torch.float32)  # (1, H, 1, Tk) or None
    bias = None if bias_block is None else bias_block[0, head, 0]
    mask_block = spec.mask_block(q_pos, k_pos)  # (B or 1, 1, 1, Tk) or None
    mask = torch.ones(t_k, dtype=torch.bool) if mask_block is None else mask_block[min(batch, mask_block.shape[0] - 1),
                                                                                     0, 0].clone()
    scores = dot * spec.scale + (bias if bias is not None else 0.0)
    scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores.double(), -1).float() if bool(mask.any()) else torch.zeros(t_k)
    out = QueryComputation(query, q, k, products, dot, spec.scale, bias, mask, scores, weights)
    if record.v is not None:
        v = record_values(record, head, batch)
        out.v, out.weighted_v = v, weights[:, None] * v
        out.output = out.weighted_v.sum(0)
        if w_o is not None:
            w_h = head_slice(w_o, head, v.shape[-1]).float()  # (d_model, hd)
            out.output_projected = w_h @ out.output
            out.value_norms = (v @ w_h.T).norm(dim=-1)
    return out


class ValueWeighted:
    """One head of a record read as value-weighted attention, normalised per row:

        w_ij = alpha_ij ||v_j W_O^h|| / sum_j' alpha_ij' ||v_j' W_O^h||

    (Kobayashi et al. 2020, arXiv 2004.10102). It has a record's ``spec``, ``shape`` and ``log_block``, so
    ``attnlab.models.capture.tiles.pooled_overview`` pools it like a raw map. The row normalisers are
    computed once, in row bands of ``band`` rows over all keys.
    """

    def __init__(self, record: AttentionRecord, head: int, norms: Tensor, batch: int = 0, band: int = 256,
                 log_z: Tensor | None = None):
        self.record, self.head, self.batch, self.band = record, head, batch, band
        self.spec = record.spec
        self.shape = record.shape
        self.norms = norms
        self.log_norms = norms.float().log()  # (Tk,): a zero norm is -inf, a weight of 0
        self._log_z = log_z  # given: computed before for the same record and head

    @property
    def n_heads(self) -> int:
        return self.record.n_heads

    def log_z(self) -> Tensor:
        """(Tq,) log sum_j alpha_ij ||v_j W_O^h||; 0 for a row with no allowed key (its weights stay 0)."""
        if self._log_z is None:
            t_q, t_k = self.shape
            heads = torch.tensor([self.head])
            parts = []
            for r0 in range(0, t_q, self.band):
                logw = self.record.log_block(heads, slice(r0, min(r0 + self.band, t_q)), slice(0, t_k), self.batch)[0]
                parts.append(torch.logsumexp(logw + self.log_norms[None], dim=-1))
            z = torch.cat(parts)
            # masked weights are -inf or float32's lowest (log_block's nan_to_num): a row of only those has no key
            self._log_z = z.masked_fill(z < torch.finfo(z.dtype).min / 2, 0.0)
        return self._log_z

    def log_block(self, heads: slice | Tensor, rows: slice, cols: slice, batch: int = 0) -> Tensor:
        """log of the value-weighted block (1, r, c); only this object's head."""
        idx = torch.arange(self.record.n_heads)[heads] if isinstance(heads, slice) else heads
        if idx.tolist() != [self.head]:
            raise ValueError(f"this value-weighted view holds head {self.head} only, not {idx.tolist()}")
        logw = self.record.log_block(idx, rows, cols, self.batch)
        return logw + self.log_norms[cols][None, None] - self.log_z()[rows][None, :, None]

    def block(self, rows: slice, cols: slice) -> Tensor:
        """Exact value-weighted weights for (rows, cols): (r, c) float32; rows sum to 1 over all keys."""
        return self.log_block(torch.tensor([self.head]), rows, cols)[0].exp_()


def qk_joint(q: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
    """Queries (Tq, d) and keys (Tk, d) moved into one space where nearness reflects the dot product.

    AttentionViz's normalisation (Yeh et al. 2023, arXiv 2305.03210): queries are scaled by ``c`` and keys by
    ``1/c`` so that their mean norms match (no dot product changes), then the keys are translated so that
    their centroid sits on the queries' (adding one vector to every key changes each query's scores by a
    constant, so no softmax changes). Returns (q', k') in float64.
    """
    q, k = q.double(), k.double()
    c = (k.norm(dim=-1).mean() / q.norm(dim=-1).mean().clamp_min(1e-12)).sqrt()
    q, k = q * c, k / c
    return q, k - k.mean(0) + q.mean(0)


@dataclass
class PatternApplied:
    """A sparse pattern (Longformer, BigBird) applied to one captured head (float32, (Tq, Tk) each)."""

    dense: Tensor  # the head's own weights
    allowed: Tensor  # bool: the pattern and the head's own mask both allow (query, key)
    sparse: Tensor  # softmax of the same scores over the allowed keys only (rows with none: 0)
    kept: Tensor  # (Tq,) share of each dense row's weight that falls inside the pattern
    density: float  # allowed pairs / pairs the head's own mask allows

    @property
    def max_abs_diff(self) -> float:
        return float((self.sparse - self.dense).abs().max()) if self.dense.numel() else 0.0


def apply_pattern(record: AttentionRecord, head: int, pattern, batch: int = 0) -> PatternApplied:
    """What a sparse pattern keeps of one captured head: the same scores (q.k * scale + bias, the head's own
    mask) restricted to the pattern's pairs and renormalised, as Longformer (Beltagy et al. 2020, arXiv
    2004.05150) or BigBird (Zaheer et al. 2020, arXiv 2007.14062) attention would compute them on these Q, K.
    ``pattern``: an ``attnlab.models.attention.sparse`` pattern over absolute positions."""
    t_q, t_k = record.shape
    logw = record.log_block(torch.tensor([head]), slice(0, t_q), slice(0, t_k), batch)[0]  # (Tq, Tk), -inf masked
    dense = logw.exp()
    q_pos = torch.arange(t_q) + record.spec.q_offset
    # masked pairs hold -inf, or float32's lowest (an HF mask as bias; log_block's nan_to_num): either is no weight
    own = logw > torch.finfo(logw.dtype).min / 2
    allowed = own & pattern.allowed(q_pos, torch.arange(t_k))
    restricted = logw.masked_fill(~allowed, float("-inf"))
    lse = torch.logsumexp(restricted, dim=-1, keepdim=True)
    sparse = (restricted - lse).exp().nan_to_num_(nan=0.0)  # a row with no key left: 0, not NaN
    kept = (dense * allowed).sum(-1)
    density = float(allowed.sum()) / max(1, int(own.sum()))
    return PatternApplied(dense, allowed, sparse, kept, density)
