"""Lab `heads`: why multiple heads help, measured by removing them (Michel, Levy & Neubig 2019, arXiv 1905.10650).

On the shipped checkpoints (no training): the ``induction`` decoder on repeated random segments (the
induction lab's own evaluation set) and the ``lm`` decoder on held-out Jane Austen text. For each:
gradient head importance, the loss after ablating each head alone, and the pruning curve (heads removed
in order of increasing importance, loss vs the fraction kept; Michel et al. Fig. 3). On ``induction``,
ablating layer 1 (where the induction head sits) destroys the copy: the repeated-half loss jumps from
~0.09 nats to several nats. On ``lm`` most single heads can go at a small cost. The bundled MiniLM and
SmolLM2, when installed, get importance only.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from ..data import repeated_segments
from ..gates import HeadGates, gate_heads
from ..interventions import anatomy, gradient_importance
from ..interventions.anatomy import Anatomy
from ..registry import default_registry
from .common import heatmap, lines, prepare_dir, set_threads, write_results

log = logging.getLogger(__name__)

SEG_LEN, N_SEQS, EVAL_SEED = 32, 32, 1234  # the induction lab's evaluation set (models.labs.induction.evaluate)
SMALL_CHANGE = 0.05  # nats: a head whose removal costs less than this "can go"
LM_BLOCK, LM_BLOCKS = 128, 8  # held-out text for `lm`: 8 blocks of 128 tokens from the end of the corpus


def _losses(anat: Anatomy, ids: Tensor, gates: HeadGates | None) -> Tensor:
    """Next-token loss (B, T - 1) of ids (B, T) under gates."""
    with gate_heads(gates):
        logits = anat.run(ids).logits
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), ids[:, 1:].flatten(), reduction="none").view(
        ids.shape[0], -1)


def _zeroed(anat: Anatomy, heads: list[tuple[int, int]]) -> HeadGates:
    gates = HeadGates.ones(anat.n_layers, anat.n_heads)
    for layer, head in heads:
        gates.scale[0, layer, head] = 0.0
    return gates


def _importance(anat: Anatomy, ids: Tensor, metric) -> Tensor:
    """|dL/ds| (L, H) of ``metric(losses)`` on a batch of sequences."""
    scale = torch.ones(1, anat.n_layers, anat.n_heads, requires_grad=True)
    with torch.enable_grad():
        loss = metric(_losses(anat, ids, HeadGates(scale)))
        (grad,) = torch.autograd.grad(loss, scale)
    return grad[0].abs()


@torch.no_grad()
def _single_and_pruning(anat: Anatomy, ids: Tensor, metric, importance: Tensor) -> dict:
    L, H = anat.n_layers, anat.n_heads
    base = float(metric(_losses(anat, ids, None)))
    single = torch.zeros(L, H)
    for layer in range(L):
        for head in range(H):
            single[layer, head] = float(metric(_losses(anat, ids, _zeroed(anat, [(layer, head)])))) - base
    order = [divmod(int(i), H) for i in importance.flatten().argsort()]  # least important first
    kept, losses = [1.0], [base]
    for n in range(1, L * H + 1):
        kept.append(1 - n / (L * H))
        losses.append(float(metric(_losses(anat, ids, _zeroed(anat, order[:n])))))
    return {"loss": base, "single_head_loss_change": single.tolist(),
            "pruning": {"order": [list(x) for x in order], "fraction_kept": kept, "loss": losses}}


def induction_ablation() -> dict:
    """The induction checkpoint's checkable numbers: repeated-half loss as is, with layer 1 ablated, with the best
    single head ablated (deterministic; tests/unit/test_interventions.py reproduces them)."""
    adapter = default_registry().load("induction")
    anat = anatomy(adapter)
    low = len(adapter.tokenizer.special_ids)
    ids = repeated_segments(N_SEQS, SEG_LEN, adapter.info.vocab_size, seed=EVAL_SEED, low=low)

    def repeated(losses: Tensor) -> Tensor:  # targets S+1 .. 2S-1, as the induction lab reports
        return losses[:, SEG_LEN:].mean()

    def first(losses: Tensor) -> Tensor:
        return losses[:, : SEG_LEN - 1].mean()

    with torch.no_grad():
        plain = _losses(anat, ids, None)
        layer1 = _losses(anat, ids, _zeroed(anat, [(1, h) for h in range(anat.n_heads)]))
        layer0 = _losses(anat, ids, _zeroed(anat, [(0, h) for h in range(anat.n_heads)]))
    importance = _importance(anat, ids, repeated)
    detail = _single_and_pruning(anat, ids, repeated, importance)
    single = torch.tensor(detail["single_head_loss_change"])
    best = divmod(int(single.flatten().argmax()), anat.n_heads)
    return {
        "eval": f"repeated_segments({N_SEQS}, {SEG_LEN}, seed={EVAL_SEED}): loss on the repeated half "
                f"(targets {SEG_LEN + 1}..{2 * SEG_LEN - 1}), nats",
        "first_half_loss": float(first(plain)),
        "repeated_half_loss": float(repeated(plain)),
        "layer1_ablated_loss": float(repeated(layer1)),
        "layer0_ablated_loss": float(repeated(layer0)),
        "best_head": {"layer": best[0], "head": best[1]},
        "best_head_ablated_loss": float(repeated(plain)) + float(single[best]),
        "importance": importance.tolist(),
        **detail,
    }


def lm_ablation(text_chars: int = 40_000) -> dict:
    """Single-head ablation and the pruning curve of the ``lm`` checkpoint on held-out Austen text."""
    from ..data import load_corpus

    adapter = default_registry().load("lm")
    anat = anatomy(adapter)
    text = load_corpus("austen")[-text_chars:]
    ids = torch.tensor(adapter.tokenizer.encode(text)[: LM_BLOCK * LM_BLOCKS]).view(LM_BLOCKS, LM_BLOCK)

    def mean(losses: Tensor) -> Tensor:
        return losses.mean()

    importance = _importance(anat, ids, mean)
    detail = _single_and_pruning(anat, ids, mean, importance)
    changes = torch.tensor(detail["single_head_loss_change"]).flatten()
    return {
        "eval": f"the last {text_chars} characters of the Austen corpus: {LM_BLOCKS} blocks of {LM_BLOCK} tokens",
        "n_heads": int(changes.numel()),
        "small_change_nats": SMALL_CHANGE,
        "n_small": int((changes.abs() < SMALL_CHANGE).sum()),
        "max_change": float(changes.max()),
        "importance": importance.tolist(),
        **detail,
    }


def pretrained_importance(text: str = "The cat sat on the mat because it was warm and quiet there.") -> dict:
    """Gradient importance of the bundled MiniLM and SmolLM2, where installed (skipped otherwise)."""
    registry = default_registry()
    out = {}
    for model_id in ("minilm", "smollm2"):
        try:
            info = registry.info(model_id)
        except Exception:  # noqa: BLE001 - an unknown id in a trimmed registry is a skip, not a failure
            continue
        if not info.available:
            out[model_id] = {"skipped": info.reason}
            continue
        adapter = registry.load(model_id)
        t0 = time.perf_counter()
        result = gradient_importance(adapter, adapter.tokenize(text))
        out[model_id] = {"text": text, "objective": result.objective, "importance": result.importance,
                         "seconds": round(time.perf_counter() - t0, 2)}
    return out


def run(out_dir: str | Path, quick: bool = False, *, threads: int | None = 2, pretrained: bool = True) -> dict:
    """Measure on the shipped checkpoints and write results.json (no checkpoint of its own)."""
    started = time.perf_counter()
    set_threads(threads)
    out = prepare_dir(out_dir)
    parts = ["induction", "lm"] + (["pretrained"] if pretrained and not quick else [])
    body: dict = {}
    for part in tqdm(parts, desc="lab heads", disable=quick):
        if part == "induction":
            body["induction"] = induction_ablation()
        elif part == "lm":
            body["lm"] = lm_ablation(8_000 if quick else 40_000)
        else:
            body["pretrained"] = pretrained_importance()
    ind, lm = body["induction"], body["lm"]
    log.info("heads: induction repeated-half loss %.3f -> %.2f with layer 1 ablated; lm: %d of %d heads change the "
             "loss by < %.2f nats", ind["repeated_half_loss"], ind["layer1_ablated_loss"], lm["n_small"],
             lm["n_heads"], SMALL_CHANGE)
    labels = {name: ([f"H{h}" for h in range(len(body[name]["importance"][0]))],
                     [f"L{layer}" for layer in range(len(body[name]["importance"]))]) for name in ("induction", "lm")}
    body["figures"] = {
        **{f"{name}_single_head": heatmap(body[name]["single_head_loss_change"], *labels[name],
                                          f"{name}: loss change (nats) of ablating each head alone", "head", "layer")
           for name in ("induction", "lm")},
        "pruning": lines({name: (body[name]["pruning"]["fraction_kept"], body[name]["pruning"]["loss"])
                          for name in ("induction", "lm")},
                         "loss as heads are removed, least important first", "fraction of heads kept",
                         "loss (nats)"),
    }
    return write_results(out, "heads", quick, started, body)
