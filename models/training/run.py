"""``train_main``: corpus -> tokenizer -> model -> trained checkpoint; the library behind ``attnlab train``."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Literal

import torch
import torch.distributed as dist

from ..architectures import build_model
from ..config import TransformerConfig, preset
from ..names import lookup
from ..tokenization import load_tokenizer
from .batches import lm_batches
from .config import OBJECTIVE_FAMILY, Objective, Precision, TrainConfig, lr_curve
from .memory_report import checkpointing_memory_report
from .snapshots import Probe
from .trainer import Trainer, evaluate_loss

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- train_main


def build_tokenizer(corpus_text: str, kind: str, vocab_size: int, objective: Objective):
    """A char or byte-level BPE tokenizer for a corpus; sentinels for the span objective."""
    from ..tokenization import CharTokenizer, train_bpe

    n_sentinels = 100 if objective == "span" else 0
    builders = {
        "char": lambda: CharTokenizer.from_corpus(corpus_text, n_sentinels=n_sentinels),
        "bpe": lambda: train_bpe(corpus_text, vocab_size, n_sentinels=n_sentinels),
    }
    return lookup(builders, kind, "tokenizer")()


def train_main(
    out_dir: str | Path = "runs/train",
    corpus: str = "austen",
    objective: Objective = "clm",
    preset_name: str = "tiny",
    tokenizer: Literal["bpe", "char"] = "bpe",
    vocab_size: int = 2048,
    block_size: int = 128,
    batch_size: int = 16,
    steps: int = 500,
    lr: float = 1e-3,
    schedule: str = "warmup_cosine",
    warmup: int = 50,
    weight_decay: float = 0.1,
    grad_clip: float = 1.0,
    precision: Precision = "fp32",
    gradient_checkpointing: bool = False,
    memory_report: bool = False,
    backend: str = "sdpa",
    snapshot_every: int = 0,
    probe_text: str | None = None,
    resume: str | Path | None = None,
    save_dtype: str = "float32",
    seed: int = 0,
    device: str | None = None,
    threads: int | None = None,
    plot_lr: bool = False,
    progress: bool = True,
    **model_overrides: object,
) -> dict:
    """Train a model on a corpus; the library behind ``attnlab train``.

    ``preset_name`` picks a ``attnlab.models.config.PRESETS`` entry, ``model_overrides`` replace
    its fields (``d_model=128, n_layers=4, positional="rope"``); the family follows the
    objective (clm: decoder, mlm: encoder, span: encoder-decoder) and the vocabulary
    size follows the tokenizer. ``plot_lr`` returns only the LR curve, training nothing.
    ``memory_report`` adds the peak memory with and without gradient checkpointing on one
    batch. Under ``torchrun`` the global ``batch_size`` is split across ranks.
    Returns a summary dict (also written to ``<out_dir>/train_summary.json``).
    """
    if threads:
        torch.set_num_threads(threads)
    if plot_lr:
        cfg = preset(preset_name)
        return lr_curve(schedule, steps, lr, warmup, d_model=int(model_overrides.get("d_model", cfg.d_model)))
    # a bad schedule name, or a warmup the step count cannot hold, fails now, not after seconds of corpus and tokenizer
    lr_curve(schedule, steps, lr, warmup, d_model=int(model_overrides.get("d_model", preset(preset_name).d_model)))
    torch.manual_seed(seed)
    out_dir = Path(out_dir)
    from ..data import load_corpus, train_val_split

    text = load_corpus(corpus)
    tok = load_tokenizer(resume) if resume else build_tokenizer(text, tokenizer, vocab_size, objective)
    ids = torch.tensor(tok.encode(text), dtype=torch.long)
    train_ids, val_ids = train_val_split(ids, 0.05)
    if resume:
        config = TransformerConfig.load(Path(resume) / "config.json")
    else:
        config = preset(preset_name, family=OBJECTIVE_FAMILY[objective], vocab_size=tok.vocab_size,
                        pad_token_id=tok.pad_id or 0, **model_overrides)
        if config.positional == "learned" and config.max_positions < block_size:
            config = config.replace(max_positions=block_size)
    model = build_model(config)
    train_cfg = TrainConfig(steps=steps, lr=lr, schedule=schedule, warmup=warmup, weight_decay=weight_decay,
                            grad_clip=grad_clip, precision=precision, gradient_checkpointing=gradient_checkpointing,
                            backend=backend, snapshot_every=snapshot_every, seed=seed, progress=progress,
                            log_every=10)
    batches = lm_batches(train_ids, block_size, batch_size, objective, tokenizer=tok, seed=seed)
    val = lm_batches(val_ids, block_size, batch_size, objective, tokenizer=tok, seed=seed + 1)
    probes = []
    if snapshot_every:
        text_probe = probe_text or text[len(text) // 2 : len(text) // 2 + 200]
        if objective == "span":
            probes = [Probe.from_text("probe", text_probe[:100], tok, target=text_probe[100:140])]
        else:
            probes = [Probe.from_text("probe", text_probe, tok, max_tokens=64)]
    trainer = Trainer(model, train_cfg, batches, out_dir=out_dir, tokenizer=tok, probes=probes,
                      eval_fn=lambda m: evaluate_loss(m, val, 8), device=device,
                      extra_state={"corpus": str(corpus), "objective": objective, "block_size": block_size})
    if resume:
        trainer.load_state(resume)
    summary: dict = {"out_dir": str(out_dir), "config": config.to_dict(), "n_params": model.num_parameters()}
    if memory_report and trainer.dist.main:
        summary["memory"] = checkpointing_memory_report(config, batches(0), trainer.dist.device.type,
                                                        torch.get_num_threads())
    result = trainer.train()
    summary.update(result.to_dict())
    if result.eval_loss is not None:
        summary["val_perplexity"] = math.exp(min(result.eval_loss, 50))
    if trainer.dist.main:
        if save_dtype != "float32":  # a small, non-resumable export next to nothing else
            trainer.save(out_dir, dtype=getattr(torch, save_dtype), resumable=False)
        (out_dir / "train_summary.json").write_text(json.dumps(summary, indent=2))
    if trainer.dist.enabled:
        dist.destroy_process_group()
    return summary


