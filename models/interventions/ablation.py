"""Head ablation: remove heads (or replace them with their mean) and measure what changes.

``ablate(adapter, enc, heads, mode)`` runs the model twice, as is and with the heads gated
(``attnlab.models.gates``), and compares per-position losses and top-1 predictions, or, for an
encoder without an LM head, the final hidden states.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..adapter import Encoded, ModelAdapter
from ..gates import HeadGates, gate_heads
from .anatomy import Anatomy, anatomy
from .effects import hidden_change, mean_loss, position_losses, top1

Head = tuple[int, int]


@dataclass
class ChangedPrediction:
    position: int
    before_id: int
    before_prob: float
    after_id: int
    after_prob: float


@dataclass
class AblationResult:
    """What ablating ``heads`` changed. Losses per position in nats (None: no target there)."""

    heads: list[Head]
    mode: str
    loss_before: list[float | None] | None
    loss_after: list[float | None] | None
    loss_change: float | None  # mean loss after - mean loss before
    changed_predictions: list[ChangedPrediction]
    hidden_cosine: list[float] | None = None  # encoders without a head: per token
    hidden_relative_norm: list[float] | None = None


def check_heads(anat: Anatomy, heads: list[Head], field: str = "heads") -> None:
    """Raises ValueError naming ``field`` for a layer or head the model does not have."""
    for layer, head in heads:
        if not 0 <= layer < anat.n_layers:
            raise ValueError(f"{field}: layer {layer} is outside 0..{anat.n_layers - 1} "
                             f"(the model has {anat.n_layers} layers)")
        if not 0 <= head < anat.n_heads:
            raise ValueError(f"{field}: head {head} is outside 0..{anat.n_heads - 1} "
                             f"(the model has {anat.n_heads} heads per layer)")


def gates_for(anat: Anatomy, heads: list[Head], mode: str, batch: int = 1) -> HeadGates:
    """Gates of 1 except 0 at ``heads`` (every row of a batch alike)."""
    gates = HeadGates.ones(anat.n_layers, anat.n_heads, batch, replacement=mode)
    for layer, head in heads:
        gates.scale[:, layer, head] = 0.0
    return gates


def _nullable(values: Tensor) -> list[float | None]:
    return [None if math.isnan(v) else v for v in values.tolist()]


@torch.no_grad()
def ablate(adapter: ModelAdapter, enc: Encoded, heads: list[Head], mode: str = "zero",
           backend: str = "math") -> AblationResult:
    """Ablate ``heads`` ([layer, head] pairs, query heads under GQA) by ``mode`` ("zero" or "mean").

    ``mean`` replaces a head's output at position i by its mean over positions <= i in a causal model
    and over the whole sequence in an encoder (``attnlab.models.gates``). Ablating no head gives a loss
    change of exactly 0. Raises ValueError for a head the model lacks, ``Unsupported`` for an
    encoder-decoder.
    """
    anat = anatomy(adapter)
    check_heads(anat, heads)
    tt = enc.token_type_ids
    before = anat.run(enc.ids, tt, backend)
    with gate_heads(gates_for(anat, heads, mode)):
        after = anat.run(enc.ids, tt, backend)
    if not anat.has_head:
        cosine, relative = hidden_change(before.hidden[0], after.hidden[0])
        return AblationResult(heads, mode, None, None, None, [], cosine.tolist(), relative.tolist())
    lb = position_losses(before.logits, enc.ids, anat.causal, enc.special)
    la = position_losses(after.logits, enc.ids, anat.causal, enc.special)
    change = float(mean_loss(la) - mean_loss(lb)) if not torch.isnan(lb).all() else None
    ib, pb = top1(before.logits[0])
    ia, pa = top1(after.logits[0])
    changed = [ChangedPrediction(t, int(ib[t]), float(pb[t]), int(ia[t]), float(pa[t]))
               for t in torch.nonzero(ib != ia).flatten().tolist()]
    return AblationResult(heads, mode, _nullable(lb[0]), _nullable(la[0]), change, changed)
