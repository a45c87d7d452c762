"""Lab 5: a small BERT-style encoder on Jane Austen (masked LM, 15% with 80/10/10).

Reported: validation masked-LM loss and fill-mask examples (the top guesses for each
``<mask>`` in a few sentences).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import torch

from ..architectures import build_model
from ..config import TransformerConfig
from ..data import load_corpus, train_val_split
from ..tokenization import train_bpe
from ..training import Probe, Trainer, TrainConfig, evaluate_loss, lm_batches
from .common import checkpoint_bytes, finite, loss_curve, prepare_dir, set_threads, write_results

log = logging.getLogger(__name__)

FILL_MASK = (
    "It is a truth universally <mask>, that a single man in possession of a good fortune, must be in want of a wife.",
    "\"My dear Mr. Bennet,\" said his <mask> to him one day.",
    "She was <mask> to see him.",
    "I do not <mask> what you mean.",
)


@torch.no_grad()
def fill_mask(model, tok, text: str, top_k: int = 5) -> dict:
    ids = tok.encode(text)
    logits = model(torch.tensor([ids])).logits[0].float()
    guesses = []
    for pos in [i for i, t in enumerate(ids) if t == tok.mask_id]:
        probs = logits[pos].softmax(-1)
        top = torch.topk(probs, top_k)
        guesses.append([{"token": tok.decode([int(i)]), "p": round(float(p), 4)} for p, i in zip(top.values, top.indices)])
    return {"text": text, "guesses": guesses}


def run(out_dir: str | Path, quick: bool = False, *, steps: int | None = None, corpus: str = "austen",
        vocab_size: int | None = None, d_model: int = 128, n_layers: int = 4, n_heads: int = 4, block_size: int = 128,
        batch_size: int = 16, lr: float = 1e-3, threads: int | None = 2, seed: int = 0) -> dict:
    started = time.perf_counter()
    set_threads(threads)
    torch.manual_seed(seed)
    out = prepare_dir(out_dir)
    text = load_corpus(corpus)
    if quick:
        text = text[:100_000]
    tok = train_bpe(text, vocab_size or (512 if quick else 2048))
    ids = torch.tensor(tok.encode(text), dtype=torch.long)
    train_ids, val_ids = train_val_split(ids, 0.05)
    config = TransformerConfig(family="encoder", vocab_size=tok.vocab_size, d_model=d_model, n_layers=n_layers,
                               n_heads=n_heads, positional="learned", max_positions=max(block_size, 128), mlm_transform=True,
                               pad_token_id=tok.pad_id)
    model = build_model(config)
    steps = steps or (10 if quick else 500)
    train_cfg = TrainConfig(steps=steps, lr=lr, warmup=min(50, steps // 10), log_every=10,
                            snapshot_every=max(steps // 10, 1), seed=seed, progress=not quick)
    val = lm_batches(val_ids, block_size, batch_size, "mlm", tokenizer=tok, seed=seed + 1)
    n_val = 2 if quick else 16
    trainer = Trainer(model, train_cfg, lm_batches(train_ids, block_size, batch_size, "mlm", tokenizer=tok, seed=seed),
                      out_dir=out, tokenizer=tok, probes=[Probe.from_text("austen", FILL_MASK[0], tok)],
                      eval_fn=lambda m: evaluate_loss(m, val, n_val), save_dtype=torch.float16, resumable=False,
                      extra_state={"lab": "mlm", "corpus": corpus})
    result = trainer.train()
    model.eval()
    examples = [fill_mask(model, tok, t) for t in FILL_MASK]
    val_loss = result.eval_loss if result.eval_loss is not None else float("nan")
    body = {
        "train_seconds": round(result.seconds, 1),
        "steps": result.steps,
        "final_loss": finite(result.final_loss),
        "val_loss": finite(val_loss),
        "val_perplexity": finite(math.exp(min(val_loss, 50))),
        "corpus": corpus,
        "tokenizer": f"byte-level BPE, {tok.vocab_size} tokens",
        "masking": "15% of tokens; 80% <mask>, 10% random, 10% unchanged",
        "config": config.to_dict(),
        "train_config": train_cfg.to_dict(),
        "n_params": model.num_parameters(),
        "fill_mask": examples,
        "figures": {"train_loss": loss_curve(result.history)},
    }
    body["checkpoint_bytes"] = checkpoint_bytes(out)
    log.info("mlm: val loss %.3f; %s", val_loss, [e["guesses"][0][0]["token"] for e in examples])
    return write_results(out, "mlm", quick, started, body)
