"""Head importance: Michel, Levy & Neubig 2019, "Are Sixteen Heads Really Better than One?" (arXiv 1905.10650).

The importance of head h is |dL/ds_h| for a gate s_h = 1 on its output, all heads from one backward
pass. For an encoder without an LM head there is no loss, and any distance of the gated hidden states
from the clean ones is smallest at s = 1 (its gradient is 0); the importance there is the first-order
size of the change, ||dH/ds_h||_F / ||H||_F for the final hidden states H (T, d), estimated with
``probes`` random projections in one batched backward (Hutchinson: E[(v.dH/ds_h)^2] = ||dH/ds_h||^2 for
v ~ N(0, I)).

``ablation_grid`` is the exact counterpart: the loss change (or relative hidden change) of ablating
each head alone, every head a row of one batched forward (in chunks of ``chunk_tokens`` tokens).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..adapter import Encoded, ModelAdapter
from ..gates import HeadGates, gate_heads
from .anatomy import Anatomy, anatomy
from .effects import mean_loss, position_losses

NO_TARGET = ("text: no position has a target (a decoder needs at least 2 tokens, an encoder a token that is not a "
             "control token), so there is no loss to take the gradient of")


@dataclass
class ImportanceResult:
    importance: list[list[float]]  # (L, H)
    objective: str  # "loss" (nats) or "hidden" (relative change of the final hidden states)
    loss: float | None  # the unablated mean loss (nats); None without a head
    ablation_loss_change: list[list[float]] | None = None  # (L, H): exact single-head ablation, if computed


def _objective(anat: Anatomy, enc: Encoded, out) -> Tensor:
    """Mean loss per batch row (B,)."""
    return mean_loss(position_losses(out.logits, enc.ids, anat.causal, enc.special))


def gradient_importance(adapter: ModelAdapter, enc: Encoded, backend: str = "math", probes: int = 4,
                        seed: int = 0) -> ImportanceResult:
    """|dL/ds| per head (L, H) from one backward (with ``probes`` batch rows for an encoder without a head)."""
    anat = anatomy(adapter)
    with torch.enable_grad():
        if anat.has_head:
            scale = torch.ones(1, anat.n_layers, anat.n_heads, requires_grad=True)
            with gate_heads(HeadGates(scale)):
                loss = _objective(anat, enc, anat.run(enc.ids, enc.token_type_ids, backend))[0]
            if torch.isnan(loss):
                raise ValueError(NO_TARGET)
            (grad,) = torch.autograd.grad(loss, scale)
            return ImportanceResult(grad[0].abs().tolist(), "loss", float(loss.detach()))
        scale = torch.ones(probes, anat.n_layers, anat.n_heads, requires_grad=True)
        with gate_heads(HeadGates(scale)):
            hidden = anat.run(enc.ids.expand(probes, -1), enc.token_type_ids, backend).hidden  # (P, T, d)
        g = torch.Generator().manual_seed(seed)
        v = torch.randn(hidden.shape, generator=g).to(hidden.dtype)
        (grad,) = torch.autograd.grad((hidden * v).sum(), scale)  # (P, L, H): v_p . dH/ds
        norm = hidden[0].detach().float().norm().clamp_min(1e-12)
        return ImportanceResult((grad.float().pow(2).mean(0).sqrt() / norm).tolist(), "hidden", None)


@torch.no_grad()
def ablation_grid(adapter: ModelAdapter, enc: Encoded, mode: str = "zero", backend: str = "math",
                  chunk_tokens: int = 4096) -> list[list[float]]:
    """(L, H): loss change (nats) of ablating each head alone; without a head, the relative change
    ||H' - H||_F / ||H||_F of the final hidden states. Batched: one row per head."""
    anat = anatomy(adapter)
    L, H = anat.n_layers, anat.n_heads
    base = anat.run(enc.ids, enc.token_type_ids, backend)
    base_value = _objective(anat, enc, base)[0] if anat.has_head else None
    n = L * H
    rows = max(1, chunk_tokens // enc.ids.shape[1])
    values = []
    for start in range(0, n, rows):
        count = min(rows, n - start)
        gates = HeadGates.ones(L, H, count, replacement=mode)
        for r in range(count):
            gates.scale[r].view(-1)[start + r] = 0.0
        with gate_heads(gates):
            out = anat.run(enc.ids.expand(count, -1), enc.token_type_ids, backend)
        if anat.has_head:
            values.append(_objective(anat, enc, out) - base_value)
        else:
            diff = (out.hidden.float() - base.hidden.float()).flatten(1).norm(dim=1)
            values.append(diff / base.hidden.float().norm().clamp_min(1e-12))
    return torch.cat(values).view(L, H).tolist()


def importance(adapter: ModelAdapter, enc: Encoded, backend: str = "math", probes: int = 4,
               grid_max_heads: int = 64, mode: str = "zero", chunk_tokens: int = 4096) -> ImportanceResult:
    """Gradient importance, plus the exact single-head ablation grid when the model has at most
    ``grid_max_heads`` heads in all. Raises ``Unsupported`` for an encoder-decoder."""
    result = gradient_importance(adapter, enc, backend, probes)
    anat = anatomy(adapter)
    if anat.n_layers * anat.n_heads <= grid_max_heads:
        result.ablation_loss_change = ablation_grid(adapter, enc, mode, backend, chunk_tokens)
    return result


def naive_ablation_grid(adapter: ModelAdapter, enc: Encoded, mode: str = "zero",
                        backend: str = "math") -> list[list[float]]:
    """``ablation_grid`` one head at a time (a forward per head): the reference the benchmark compares with."""
    return ablation_grid(adapter, enc, mode, backend, chunk_tokens=1)


__all__ = ["ImportanceResult", "ablation_grid", "gradient_importance", "importance", "naive_ablation_grid"]
