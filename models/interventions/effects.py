"""What an intervention is measured by: per-position losses, top-1 predictions, the change of hidden states.

Losses are natural-log cross-entropies (nats). For a decoder, position t holds the loss of predicting
token t + 1 (the last position has no target: NaN here, null in answers). For an encoder with an MLM
head, position t holds the loss of the token's own id at t, read without masking (the loss a
masked-token objective scores, on the unmasked input); positions of control tokens are NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


def position_losses(logits: Tensor, ids: Tensor, causal: bool, special: list[bool]) -> Tensor:
    """Per-position loss (B, T) in nats, NaN where a position has no target.

    logits (B, T, V); ids (1, T) or (B, T), the input.
    """
    B, T, V = logits.shape
    ids = ids.expand(B, -1)
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # half precision read in float32
    out = torch.full((B, T), float("nan"), dtype=logits.dtype, device=logits.device)
    if causal:
        if T > 1:
            out[:, :-1] = F.cross_entropy(logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1),
                                          reduction="none").view(B, T - 1)
        return out
    own = F.cross_entropy(logits.reshape(-1, V), ids.reshape(-1), reduction="none").view(B, T)
    keep = ~torch.tensor(special, dtype=torch.bool, device=logits.device)
    return torch.where(keep[None], own, out)


def mean_loss(losses: Tensor) -> Tensor:
    """Mean over the positions that have a target: (B,) from (B, T)."""
    return losses.nanmean(dim=-1)


@dataclass
class Prediction:
    token_id: int
    prob: float


def top1(logits: Tensor) -> tuple[Tensor, Tensor]:
    """(ids, probs) of the most likely token at each position: (T,), (T,) from logits (T, V)."""
    probs = logits.float().softmax(-1)
    p, i = probs.max(-1)
    return i, p


def hidden_change(before: Tensor, after: Tensor) -> tuple[Tensor, Tensor]:
    """(cosine, relative norm of the change) per token, (T,) each, of final hidden states (T, d)."""
    before, after = before.float(), after.float()
    cosine = F.cosine_similarity(before, after, dim=-1)
    relative = (after - before).norm(dim=-1) / before.norm(dim=-1).clamp_min(1e-12)
    return cosine, relative
