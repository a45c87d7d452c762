"""What heads do: head-type scores, attention rollout and flow.

Scores are computed from a capture in row bands (``band x T`` at a time), so a long
input never materialises a T x T map. Every score is a mean over query rows of some
attention mass, so it lies in [0, 1] (``entropy`` in nats and ``mean_offset`` in
positions excepted).

Detectors follow the definitions used in interpretability work:
previous-token and induction heads (Olsson et al. 2022, "In-context Learning and
Induction Heads"), duplicate-token heads (Wang et al. 2022, arXiv 2211.00593),
attention sinks on the first token / [CLS] / [SEP] (Clark et al. 2019, arXiv 1906.04341;
Xiao et al. 2023, arXiv 2309.17453).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .capture import Recorder

SCORES = (
    "previous_token", "induction", "duplicate_token", "first_token_sink", "special_sink",
    "mean_offset", "diagonality", "entropy",
)
# cross-attention compares two sequences: the scores that compare a token with its own sequence do not apply
TOKEN_SCORES = ("previous_token", "induction", "duplicate_token")
CROSS_SCORES = tuple(name for name in SCORES if name not in TOKEN_SCORES)


def _token_masks(ids: Tensor, rows: slice, q_offset: int, t_k: int) -> tuple[Tensor, Tensor]:
    """For query rows: keys holding an earlier copy of the query's token (duplicate) and
    keys right after such a copy (the induction target)."""
    q_pos = torch.arange(rows.start, rows.stop) + q_offset  # absolute positions of the rows
    k_pos = torch.arange(t_k)
    earlier = k_pos[None, :] < q_pos[:, None]
    same = ids[q_pos][:, None] == ids[None, :t_k]
    duplicate = same & earlier  # (r, Tk)
    # the token after an earlier copy, excluding the query itself
    induction = torch.zeros_like(duplicate)
    induction[:, 1:] = duplicate[:, :-1]
    induction &= k_pos[None, :] < q_pos[:, None]
    return duplicate, induction


@torch.no_grad()
def head_scores(recorder: Recorder, kind: str, ids: Sequence[int] | Tensor,
                special: Sequence[bool] | None = None, band: int = 128) -> dict[str, list[list[float]]]:
    """Head-type scores, each an (L, H) table as nested lists.

    ``ids`` are the token ids of the keys (and queries, for self-attention); for
    cross-attention (``kind="cross"``) only ``CROSS_SCORES`` are returned: the token-based ones
    compare a query with earlier keys of its own sequence. ``mean_offset`` and ``diagonality`` of
    cross-attention compare a decoder position with the same encoder position (a copy task's diagonal).
    """
    ids = torch.as_tensor(list(ids) if not isinstance(ids, Tensor) else ids).flatten()
    special_mask = torch.as_tensor(list(special), dtype=torch.bool) if special is not None else None
    n_layers = recorder.layers(kind)
    out = {name: [] for name in SCORES}
    for layer in range(n_layers):
        rec = recorder.get(kind, layer)
        t_q, t_k = rec.shape
        sums = {name: torch.zeros(rec.n_heads, dtype=torch.float64) for name in SCORES}
        counts = {name: 0 for name in SCORES}
        self_attention = kind != "cross" and len(ids) >= t_k and len(ids) >= rec.spec.q_offset + t_q
        for r0 in range(0, t_q, band):
            rows = slice(r0, min(r0 + band, t_q))
            w = rec.block(slice(0, rec.n_heads), rows, slice(0, t_k))  # (H, r, Tk)
            q_pos = torch.arange(rows.start, rows.stop) + rec.spec.q_offset
            k_pos = torch.arange(t_k)
            logw = torch.where(w > 0, w.log(), torch.zeros_like(w))
            _add(sums, counts, "entropy", -(w * logw).sum(-1))
            _add(sums, counts, "first_token_sink", w[..., 0])
            offset = (q_pos[:, None] - k_pos[None, :]).float()
            _add(sums, counts, "mean_offset", (w * offset).sum(-1))
            near = (offset.abs() <= 1).float()
            _add(sums, counts, "diagonality", (w * near).sum(-1))
            if special_mask is not None and len(special_mask) >= t_k:
                _add(sums, counts, "special_sink", w[..., special_mask[:t_k]].sum(-1))
            if self_attention:
                has_prev = q_pos >= 1
                prev = w[:, torch.arange(len(q_pos)), (q_pos - 1).clamp_min(0)]  # (H, r)
                _add(sums, counts, "previous_token", prev[:, has_prev])
                duplicate, induction = _token_masks(ids, rows, rec.spec.q_offset, t_k)
                dup_rows = duplicate.any(-1)
                _add(sums, counts, "duplicate_token", (w * duplicate).sum(-1)[:, dup_rows])
                ind_rows = induction.any(-1)
                _add(sums, counts, "induction", (w * induction).sum(-1)[:, ind_rows])
        for name in SCORES:
            mean = sums[name] / counts[name] if counts[name] else sums[name]
            out[name].append(mean.tolist())
    if kind == "cross":
        return {name: out[name] for name in CROSS_SCORES}
    return out


def _add(sums: dict, counts: dict, name: str, values: Tensor) -> None:
    """Accumulate per-head row values (H, r) into a running sum and row count."""
    if values.numel() == 0:
        return
    sums[name] += values.double().sum(-1)
    counts[name] += values.shape[-1]


def _layer_maps(recorder: Recorder, kind: str) -> Tensor:
    """Head-averaged map per layer (L, T, T); only for self-attention of moderate length."""
    maps = []
    for layer in range(recorder.layers(kind)):
        maps.append(recorder.dense(kind, layer).mean(0))  # (T, T)
    return torch.stack(maps)


@torch.no_grad()
def rollout(recorder: Recorder, kind: str, add_residual: bool = True) -> Tensor:
    """Attention rollout (Abnar & Zuidema 2020, arXiv 2005.00928), cumulative per layer.

    Each layer's head-averaged map is mixed with the identity for the residual stream
    (0.5 A + 0.5 I, rows renormalised) and multiplied through the layers:
    ``rollout[l] = A_l @ rollout[l-1]``. Row i of ``rollout[l]`` says how much each
    input token contributes to position i after layer l; rows sum to 1.
    """
    maps = _layer_maps(recorder, kind)
    if add_residual:
        eye = torch.eye(maps.shape[-1])
        maps = 0.5 * maps + 0.5 * eye
        maps = maps / maps.sum(-1, keepdim=True)
    out = []
    joint = torch.eye(maps.shape[-1])
    for a in maps:
        joint = a @ joint
        out.append(joint)
    return torch.stack(out)


@torch.no_grad()
def flow(recorder: Recorder, kind: str, add_residual: bool = True, chunk: int = 64) -> Tensor:
    """Flow-style aggregation: the widest path through the layer graph.

    Abnar & Zuidema's attention flow solves a max-flow problem per input, which is
    cubic per layer and slow for a web request. We use the bottleneck (widest path)
    form, where a path's capacity is its smallest edge and a token's score is the best
    path's capacity: ``F_l[i, j] = max_k min(A_l[i, k], F_{l-1}[k, j])``. It keeps
    flow's key property (a path is only as strong as its weakest layer) and is exact
    max-min algebra; rows are normalised to sum to 1 for display.
    """
    maps = _layer_maps(recorder, kind)
    t = maps.shape[-1]
    if add_residual:
        maps = 0.5 * maps + 0.5 * torch.eye(t)
    out = []
    joint = torch.eye(t)
    for a in maps:
        nxt = torch.empty(t, t)
        for i0 in range(0, t, chunk):  # (chunk, T, T) at a time instead of (T, T, T)
            i1 = min(i0 + chunk, t)
            nxt[i0:i1] = torch.minimum(a[i0:i1, :, None], joint[None]).amax(1)
        joint = nxt
        out.append(joint / joint.sum(-1, keepdim=True).clamp_min(1e-12))
    return torch.stack(out)


def induction_score(recorder: Recorder, kind: str, ids: Sequence[int] | Tensor) -> Tensor:
    """(L, H) induction scores; a convenience for the induction lab."""
    return torch.tensor(head_scores(recorder, kind, ids)["induction"])


def normalised_entropy(entropy: float, n_keys: int) -> float:
    """Entropy as a fraction of the uniform distribution's (log n)."""
    return entropy / math.log(n_keys) if n_keys > 1 else 0.0
