"""Train variants of one small model on the same data and keep every step: the comparison labs' engine.

The ``stability`` and ``schedules`` labs each train a handful of variants that differ in one or two
settings (norm position, warmup, learning rate, schedule). Everything else is shared: the data
(one byte-level BPE corpus, the same batches in the same order: a batch is a pure function of
(seed, step)), the initial weights (one seed), the validation batches. So a difference in the
curves is the setting's, not the draw's.

Every optimizer step is logged (``log_every=1``): loss, learning rate, the global gradient norm
before clipping and, per layer, the norm of that layer's gradients (``RecordingTrainer``), with
the trainer's guards' events: a loss spike (> ``spike_factor`` x its running mean) and a skipped
step (non-finite loss or gradient). After ``max_bad_steps`` non-finite steps in a row the trainer
raises ``TrainingDiverged``; the variant is then recorded as diverged at that step.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from ..architectures import build_model
from ..config import TransformerConfig
from ..training import TrainConfig, Trainer, TrainingDiverged, evaluate_loss, lm_batches
from .common import BPECorpus, bpe_corpus, finite, prepare_dir, set_threads
from .mlm import reinit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Variant:
    """One run of a comparison: a name (its id in ``results.json``), a label for people, and the
    ``TransformerConfig`` / ``TrainConfig`` fields it changes from the lab's base."""

    name: str
    label: str
    model: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)


class RecordingTrainer(Trainer):
    """A ``Trainer`` that also records, every step, each layer's gradient norm before clipping.

    The norm of layer ``l`` is the 2-norm of all of block ``l``'s parameter gradients together
    (every stack's blocks, in order): the quantity Xiong et al. 2020 (arXiv 2002.04745, fig. 3)
    compare between pre- and post-norm.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.layer_norms: list[float | None] = []

    def forward_backward(self, batch: dict[str, Tensor]) -> Tensor:
        loss = super().forward_backward(batch)
        norms = []
        for stack in self.model.stacks():
            for block in stack.blocks:
                grads = [p.grad.detach().float().pow(2).sum() for p in block.parameters() if p.grad is not None]
                norms.append(finite(float(torch.stack(grads).sum().sqrt())) if grads else None)
        self.layer_norms = norms
        return loss

    def train_step(self) -> dict:
        record = super().train_step()
        record["layer_grad_norms"] = self.layer_norms
        return record


def _round(x: float | None, digits: int = 5) -> float | None:
    """JSON-sized floats: 5 significant digits; non-finite as null."""
    x = finite(x)
    return None if x is None else float(f"{x:.{digits}g}")


def tail_mean(values: Sequence[float | None], fraction: float = 0.1) -> float | None:
    """Mean of the last ``fraction`` of a loss curve (at least one point); None if any of them is missing."""
    n = max(1, int(len(values) * fraction))
    tail = list(values[-n:])
    if not tail or any(v is None for v in tail):
        return None
    return sum(tail) / len(tail)


def run_variant(variant: Variant, data: BPECorpus, base_model: dict, base_train: dict, *, block_size: int,
                batch_size: int, n_val: int, seed: int, init: Callable[[nn.Module], None] | None = None) -> dict:
    """Train one variant; return its per-step series (columns) and outcome.

    ``init`` re-draws the new model's weights (same seed for every variant) before training.
    Returns ``{name, label, model, train, step, loss, lr, grad_norm, layer_grad_norms (layers x steps),
    spikes, skipped, diverged_at, final_loss (mean of the last 10% of steps), val_loss, seconds}``.
    """
    torch.manual_seed(seed)  # the same initial weights for every variant of the same shape
    config = TransformerConfig(**{**base_model, **variant.model})
    model = build_model(config)
    if init is not None:
        init(model)
    cfg = TrainConfig(**{**base_train, **variant.train, "log_every": 1, "seed": seed, "progress": False})
    batches = lm_batches(data.train_ids, block_size, batch_size, "clm", seed=seed)
    trainer = RecordingTrainer(model, cfg, batches)
    t0 = time.perf_counter()
    diverged_at = None
    try:
        trainer.train()
    except TrainingDiverged as err:
        diverged_at = trainer.step
        log.warning("%s: %s", variant.name, err)
    history = [h for h in trainer.history if "loss" in h]
    val_loss = None
    if diverged_at is None:
        val = lm_batches(data.val_ids, block_size, batch_size, "clm", seed=seed + 1)
        val_loss = finite(evaluate_loss(model, val, n_val))
    losses = [_round(h["loss"]) for h in history]
    n_layers = len(history[0]["layer_grad_norms"]) if history else 0
    run = {
        "name": variant.name, "label": variant.label, "model": variant.model, "train": variant.train,
        "step": [h["step"] for h in history],
        "loss": losses,
        "lr": [_round(h["lr"]) for h in history],
        "grad_norm": [_round(h["grad_norm"]) for h in history],
        "layer_grad_norms": [[_round(h["layer_grad_norms"][layer]) for h in history] for layer in range(n_layers)],
        "spikes": [h["step"] for h in history if h.get("spike")],
        "skipped": [h["step"] for h in history if h.get("skipped")],
        "diverged_at": diverged_at,
        "final_loss": _round(tail_mean(losses)),
        "val_loss": _round(val_loss),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    log.info("%s: final loss %s, val loss %s%s (%.0f s)", variant.name, run["final_loss"], run["val_loss"],
             f", diverged at step {diverged_at}" if diverged_at else "", run["seconds"])
    return run


def run_variants(variants: Sequence[Variant], data: BPECorpus, base_model: dict, base_train: dict, *,
                 block_size: int, batch_size: int, n_val: int, seed: int,
                 init: Callable[[nn.Module], None] | None = None) -> list[dict]:
    """``run_variant`` for each variant, in order, with a progress bar over variants."""
    from tqdm.auto import tqdm

    runs = []
    for variant in tqdm(variants, desc="variants", unit="run", leave=False):
        runs.append(run_variant(variant, data, base_model, base_train, block_size=block_size,
                                batch_size=batch_size, n_val=n_val, seed=seed, init=init))
    return runs


def uniform_loss(vocab_size: int) -> float:
    """The loss of guessing uniformly over the vocabulary, ln V: a run ending near it learned nothing."""
    return math.log(vocab_size)


def curves_figure(runs: Sequence[dict], key: str, title: str, yaxis: str, log_y: bool = False) -> dict:
    """A Plotly figure (as its JSON dict): one line per run of ``key`` against the step."""
    data = [{"type": "scatter", "mode": "lines", "name": r["label"], "x": r["step"], "y": r[key]} for r in runs]
    layout = {"title": {"text": title}, "xaxis": {"title": {"text": "step"}},
              "yaxis": {"title": {"text": yaxis}, **({"type": "log"} if log_y else {})}}
    return {"data": data, "layout": layout}


@dataclass
class Comparison:
    """What ``compare`` ran: the output folder, the corpus, the shared model fields and every variant's run."""

    out: Path
    data: BPECorpus
    base_model: dict
    runs: list[dict]

    def setup(self, *, corpus: str, max_chars: int, block_size: int, batch_size: int) -> dict:
        """The ``setup`` fields of results.json every comparison lab shares, after its model, train and init."""
        return {"block_size": block_size, "batch_size": batch_size, "corpus": corpus,
                "corpus_chars": max_chars, "corpus_tokens": len(self.data.ids),
                "tokenizer": f"byte-level BPE, {self.data.tokenizer.vocab_size} tokens"}


def compare(out_dir: str | Path, quick: bool, variants: Sequence[Variant], base_train: dict, *,
            n_layers: int, d_model: int, n_heads: int, vocab_size: int | None, corpus: str, max_chars: int,
            block_size: int, batch_size: int, threads: int | None, seed: int) -> Comparison:
    """A comparison lab's shared run: threads and seed set, ``out_dir`` prepared, ``corpus`` tokenised with a
    byte-level BPE (``vocab_size``, default 300 quick / 512), then every variant of one rotary decoder
    (``n_layers`` x ``d_model``, ``n_heads`` heads, block ``block_size``) trained from the same linear init
    (N(0, 1/fan_in), ``mlm.reinit``) on the same batches (``run_variants``; 2 validation batches quick, else 16).
    """
    set_threads(threads)
    torch.manual_seed(seed)
    out = prepare_dir(out_dir)
    data = bpe_corpus(corpus, vocab_size or (300 if quick else 512), quick, max_chars=max_chars)
    tok = data.tokenizer
    base_model = {"family": "decoder", "vocab_size": tok.vocab_size, "d_model": d_model, "n_layers": n_layers,
                  "n_heads": n_heads, "positional": "rope", "max_positions": max(block_size, 64),
                  "pad_token_id": tok.pad_id}
    runs = run_variants(variants, data, base_model, base_train, block_size=block_size, batch_size=batch_size,
                        n_val=2 if quick else 16, seed=seed, init=lambda m: reinit(m, None))
    return Comparison(out, data, base_model, runs)
