"""Lab 2: positional extrapolation (Press et al., ALiBi, arXiv 2108.12409, Fig. 1).

The same small character-level decoder is trained on Jane Austen once per positional
scheme, at a context of ``train_len`` tokens, then evaluated on held-out text at 1x, 2x,
4x and 8x that length. A learned position table has no rows past ``train_len``: it is
reported as not applicable, with the reason, rather than as a number.

The top-level checkpoint is the ALiBi model (the one that extrapolates); every scheme's
model is kept in a subdirectory ``<out_dir>/<scheme>/``.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ..architectures import build_model
from ..config import TransformerConfig
from ..data import load_corpus, train_val_split
from ..names import UnknownName
from ..positional import POSITIONAL
from ..tokenization import CharTokenizer
from ..training import TrainConfig, Trainer, lm_batches
from .common import checkpoint_bytes, finite, lines, prepare_dir, set_threads, write_results

log = logging.getLogger(__name__)

SCHEMES = ("none", "sinusoidal", "learned", "t5_relative", "rope", "alibi")
FACTORS = (1, 2, 4, 8)
SHIPPED = "alibi"


# schemes without a position table may be run to this length (the Explorer's 32,768-token demo; issue 15)
MAX_RUN_POSITIONS = 32768


@torch.no_grad()
def perplexity_at(model, val_ids: torch.Tensor, length: int, n_tokens: int) -> tuple[float, list[float]]:
    """Perplexity over non-overlapping windows of ``length`` (about ``n_tokens`` in all),
    and the mean loss per position in the window (where extrapolation breaks)."""
    n_windows = max(1, n_tokens // length)
    usable = min(n_windows, (len(val_ids) - 1) // length)
    windows = val_ids[: usable * length].view(usable, length)
    per_pos = torch.zeros(length - 1)
    for i in range(0, usable, 8):
        ids = windows[i : i + 8]
        logits = model(ids).logits
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), ids[:, 1:].flatten(), reduction="none")
        per_pos += loss.view(len(ids), -1).sum(0)
    per_pos /= usable
    return math.exp(float(per_pos.mean())), per_pos.tolist()


def run(out_dir: str | Path, quick: bool = False, *, steps: int | None = None, train_len: int = 64,
        schemes: tuple[str, ...] | str = SCHEMES, d_model: int = 64, n_layers: int = 2, n_heads: int = 4,
        batch_size: int = 32, lr: float = 2e-3, eval_tokens: int | None = None, corpus: str = "austen",
        threads: int | None = 2, seed: int = 0) -> dict:
    started = time.perf_counter()
    set_threads(threads)
    out = prepare_dir(out_dir)
    if isinstance(schemes, str):
        schemes = tuple(s for s in schemes.split(",") if s)
    unknown = [s for s in schemes if s not in POSITIONAL]
    if unknown:
        raise UnknownName(f"unknown positional schemes {unknown}; known: {sorted(POSITIONAL)}")
    steps = steps or (5 if quick else 600)
    eval_tokens = eval_tokens or (train_len * 8 * (1 if quick else 16))
    text = load_corpus(corpus)
    if quick:
        text = text[:50_000]
    tok = CharTokenizer.from_corpus(text)
    ids = torch.tensor(tok.encode(text), dtype=torch.long)
    train_ids, val_ids = train_val_split(ids, 0.05)
    lengths = [train_len * f for f in FACTORS]
    table: dict[str, dict] = {}
    per_position: dict[str, list[float]] = {}
    curves: dict[str, list[dict]] = {}
    for scheme in schemes:
        torch.manual_seed(seed)
        config = TransformerConfig(family="decoder", vocab_size=tok.vocab_size, d_model=d_model, n_layers=n_layers,
                                   n_heads=n_heads, positional=scheme, max_positions=train_len,
                                   max_run_positions=None if scheme == "learned" else MAX_RUN_POSITIONS,
                                   pad_token_id=tok.pad_id)
        model = build_model(config)
        train_cfg = TrainConfig(steps=steps, lr=lr, warmup=min(50, steps // 10), log_every=20, seed=seed,
                                progress=not quick)
        batches = lm_batches(train_ids, train_len, batch_size, "clm", seed=seed)
        sub = out / scheme
        trainer = Trainer(model, train_cfg, batches, out_dir=sub, tokenizer=tok, save_dtype=torch.float16,
                          resumable=False, extra_state={"lab": "extrapolation", "train_len": train_len})
        result = trainer.train()
        curves[scheme] = [h for h in result.history if "loss" in h]
        row: dict = {"train_seconds": round(result.seconds, 1), "final_loss": finite(result.final_loss),
                     "perplexity": {}, "not_applicable": {}}
        model.eval()
        model.set_backend("sdpa")
        for length in lengths:
            try:
                ppl, pos_loss = perplexity_at(model, val_ids, length, eval_tokens)
            except ValueError as e:  # the learned table has no row for this position
                row["perplexity"][str(length)] = None
                row["not_applicable"][str(length)] = str(e)
                continue
            row["perplexity"][str(length)] = finite(ppl)
            if length == lengths[-1]:
                per_position[scheme] = pos_loss
        table[scheme] = row
        log.info("extrapolation %s: %s", scheme,
                 {k: (round(v, 2) if v is not None else "n/a") for k, v in row["perplexity"].items()})
    # the shipped top-level checkpoint: ALiBi when trained, else the first scheme
    shipped = SHIPPED if SHIPPED in schemes else schemes[0]
    for f in (out / shipped).iterdir():
        if f.is_file():
            (out / f.name).write_bytes(f.read_bytes())
    ppl_series = {s: (lengths, [table[s]["perplexity"][str(n)] for n in lengths]) for s in schemes}
    body = {
        "train_len": train_len,
        "eval_lengths": lengths,
        "factors": list(FACTORS),
        "steps": steps,
        "corpus": corpus,
        "tokenizer": f"char ({tok.vocab_size} symbols)",
        "eval_tokens_per_length": eval_tokens,
        "model": {"d_model": d_model, "n_layers": n_layers, "n_heads": n_heads, "batch_size": batch_size},
        "schemes": list(schemes),
        "table": table,
        "shipped_scheme": shipped,
        "train_seconds": round(sum(r["train_seconds"] for r in table.values()), 1),
        "checkpoint_bytes": checkpoint_bytes(out),
        "figures": {
            "perplexity_vs_length": lines(ppl_series,
                                          f"validation perplexity vs evaluation length (trained at {train_len})",
                                          "evaluation length (tokens)", "perplexity", log_y=True, log_x=True),
            "loss_by_position": lines({s: (list(range(1, lengths[-1])), v) for s, v in per_position.items()},
                                      f"loss per position at {lengths[-1]} tokens (trained at {train_len})",
                                      "position", "cross-entropy (nats)"),
            "train_loss": lines({s: ([h["step"] for h in c], [finite(h["loss"]) for h in c])
                                 for s, c in curves.items()},
                                "training loss", "step", "loss"),
        },
    }
    return write_results(out, "extrapolation", quick, started, body)
