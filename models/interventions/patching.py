"""Activation patching of heads: Meng et al. 2022 (causal tracing, arXiv 2202.05262); Wang et al. 2022,
"Interpretability in the Wild" (arXiv 2211.00593).

Run a clean and a corrupted text of the same token length; for each head, put its clean output into the
corrupted run and measure how much of the clean - corrupted difference of the target token's logit at
the read-out position it restores:

    restored_h = (logit_patched_h[target] - logit_corrupted[target]) / (logit_clean[target] - logit_corrupted[target])

1 means the head alone carries the difference, 0 nothing. Whole layers are patched first (one batched
forward, a row per layer); then the heads, layer by layer in order of how much their layer restored, in
batched forwards of at most ``chunk_tokens`` tokens, until ``budget_s`` is spent: cells not reached stay None
(the chunk running when the budget ends finishes).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from ..adapter import Encoded, ModelAdapter
from ..gates import HeadGates, gate_heads, record_heads
from .anatomy import anatomy


@dataclass
class PatchResult:
    target_id: int
    position: int  # the read-out position (the last one that is not a control token)
    clean_logit: float
    corrupted_logit: float
    layers: list[float | None]  # (L,) restored fraction, every head of the layer patched; None: budget spent
    heads: list[list[float | None]]  # (L, H) restored fraction; None: not reached within the budget
    complete: bool


def readout_position(enc: Encoded) -> int:
    positions = [t for t, s in enumerate(enc.special) if not s]
    return positions[-1] if positions else len(enc) - 1


@torch.no_grad()
def patch_heads(adapter: ModelAdapter, clean: Encoded, corrupted: Encoded, target: int | None = None,
                backend: str = "math", budget_s: float = 10.0, chunk_tokens: int = 1024) -> PatchResult:
    """The restored fraction per layer and per head (see the module). ``target`` defaults to the clean
    run's top-1 token at the read-out position.

    Raises ValueError when the texts differ in token length, the model has no LM head, or the two runs
    give the target the same logit (nothing to restore); ``Unsupported`` for an encoder-decoder.
    """
    anat = anatomy(adapter)
    if not anat.has_head:
        raise ValueError(f"model: {adapter.info.id!r} has no LM head, so no logit to restore; patching needs a "
                         "decoder or an encoder with an MLM head")
    T = clean.ids.shape[1]
    if corrupted.ids.shape[1] != T:
        raise ValueError(f"corrupted: {corrupted.ids.shape[1]} tokens, but clean has {T}; patching needs texts of "
                         "the same token length")
    pos = readout_position(clean)
    with record_heads() as rec:
        clean_logits = anat.run(clean.ids, clean.token_type_ids, backend).logits[0, pos]
    if target is None:
        target = int(clean_logits.argmax())
    elif not 0 <= target < clean_logits.shape[-1]:
        raise ValueError(f"target: token id {target} is outside 0..{clean_logits.shape[-1] - 1}")
    corrupted_logits = anat.run(corrupted.ids, corrupted.token_type_ids, backend).logits[0, pos]
    lc, lx = float(clean_logits[target]), float(corrupted_logits[target])
    denominator = lc - lx
    if abs(denominator) < 1e-6:
        raise ValueError("corrupted: the clean and corrupted runs give the target the same logit; nothing to "
                         "restore (choose texts that differ where it matters, or another target)")
    source = {layer: out for layer, out in rec.outputs.items()}
    L, H = anat.n_layers, anat.n_heads
    rows = max(1, chunk_tokens // T)  # batch rows per forward: one patched head (or layer) each

    def restored(gates: HeadGates) -> list[float]:
        with gate_heads(gates):
            out = anat.run(corrupted.ids.expand(gates.scale.shape[0], -1), corrupted.token_type_ids, backend)
        return ((out.logits[:, pos, target].float() - lx) / denominator).tolist()

    deadline = time.perf_counter() + budget_s
    complete = True

    def run_rows(cells: list[tuple[int, ...]]) -> list[float | None]:
        """The restored fraction of each cell (a layer, or a layer and head), in batched chunks; None for the
        cells of chunks the budget did not reach."""
        nonlocal complete
        values: list[float | None] = []
        for start in range(0, len(cells), rows):
            chunk = cells[start:start + rows]
            if time.perf_counter() > deadline:
                complete = False
                values += [None] * len(chunk)
                continue
            gates = HeadGates.ones(L, H, len(chunk), replacement="patch", source=source)
            for r, cell in enumerate(chunk):
                if len(cell) == 1:
                    gates.scale[r, cell[0]] = 0.0
                else:
                    gates.scale[r, cell[0], cell[1]] = 0.0
            values += restored(gates)
        return values

    layers = run_rows([(layer,) for layer in range(L)])
    heads: list[list[float | None]] = [[None] * H for _ in range(L)]
    # the layers that restore most first; layers the budget did not reach, last
    order = sorted(range(L), key=lambda layer: -abs(layers[layer]) if layers[layer] is not None else 1.0)
    for layer in order:
        heads[layer] = run_rows([(layer, h) for h in range(H)])
    return PatchResult(target, pos, lc, lx, layers, heads, complete)
