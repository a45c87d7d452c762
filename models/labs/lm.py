"""Lab 4: a small GPT on Jane Austen with a byte-level BPE tokenizer.

The default is a few CPU-minutes: a 4-layer, 128-wide decoder. A GPU user runs the same
lab at full size with ``preset="gpt2-small", corpus="wikitext-2", device="cuda"``.
Reported: validation perplexity, sampled text, and snapshots of the attention on a
fixed sentence as training goes.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from ..architectures import build_model
from ..config import preset as make_preset
from ..training import Probe, TrainConfig, Trainer, evaluate_loss, lm_batches
from .common import bpe_corpus, checkpoint_bytes, prepare_dir, set_threads, training_summary, write_results

log = logging.getLogger(__name__)

PROBE = ("It is a truth universally acknowledged, that a single man in possession of a good fortune, "
         "must be in want of a wife.")
PROMPTS = ("It is a truth universally acknowledged", "Mr. Darcy", "\"My dear", "Emma was")


def run(out_dir: str | Path, quick: bool = False, *, steps: int | None = None, preset: str = "tiny",
        corpus: str = "austen", vocab_size: int | None = None, d_model: int | None = 128, n_layers: int | None = 4,
        n_heads: int | None = 4, positional: str = "rope", block_size: int = 128, batch_size: int = 16,
        lr: float = 2e-3, precision: str = "fp32", gradient_checkpointing: bool = False, device: str | None = None,
        sample_tokens: int = 60, threads: int | None = 2, seed: int = 0) -> dict:
    started = time.perf_counter()
    set_threads(threads)
    torch.manual_seed(seed)
    out = prepare_dir(out_dir)
    full_size = preset != "tiny"
    if full_size:  # a named preset keeps its own shape (gpt2-small: 768 x 12 x 12)
        d_model = n_layers = n_heads = None
    data = bpe_corpus(corpus, vocab_size or (512 if quick else (2048 if not full_size else 16384)), quick)
    tok, train_ids, val_ids = data.tokenizer, data.train_ids, data.val_ids
    shape = {k: v for k, v in {"d_model": d_model, "n_layers": n_layers, "n_heads": n_heads}.items() if v is not None}
    config = make_preset(preset, family="decoder", vocab_size=tok.vocab_size, positional=positional,
                         max_positions=max(2 * block_size, 256), pad_token_id=tok.pad_id, **shape)
    model = build_model(config)
    steps = steps or (10 if quick else 500)
    train_cfg = TrainConfig(steps=steps, lr=lr, warmup=min(50, steps // 10), precision=precision,
                            gradient_checkpointing=gradient_checkpointing, log_every=10,
                            snapshot_every=max(steps // 10, 1), seed=seed, progress=not quick)
    val = lm_batches(val_ids, block_size, batch_size, "clm", seed=seed + 1)
    n_val = 2 if quick else 16
    trainer = Trainer(model, train_cfg, lm_batches(train_ids, block_size, batch_size, "clm", seed=seed),
                      out_dir=out, tokenizer=tok, probes=[Probe.from_text("austen", PROBE, tok)],
                      eval_fn=lambda m: evaluate_loss(m, val, n_val), device=device,
                      save_dtype=torch.float16, resumable=False, extra_state={"lab": "lm", "corpus": corpus})
    result = trainer.train()
    model.eval()
    samples = []
    dev = trainer.dist.device
    for i, prompt in enumerate(PROMPTS):
        prompt_ids = torch.tensor([tok.encode(prompt)], device=dev)
        out_ids = model.generate(prompt_ids, sample_tokens, temperature=0.8, top_k=40, seed=seed + i)
        samples.append({"prompt": prompt, "text": tok.decode(out_ids[0].tolist())})
    body = {
        **training_summary(result, data),
        "config": config.to_dict(),
        "train_config": train_cfg.to_dict(),
        "n_params": model.num_parameters(),
        "samples": samples,
    }
    body["checkpoint_bytes"] = checkpoint_bytes(out)
    log.info("lm: val perplexity %.1f after %d steps (%.0f s)", body["val_perplexity"] or float("nan"), result.steps,
             result.seconds)
    return write_results(out, "lm", quick, started, body)
