"""Lab 3: a T5-style encoder-decoder on string reversal and copy.

One model learns both tasks, told apart by a prefix: ``rev:hello`` -> ``olleh`` and
``copy:hello`` -> ``hello``. Reading the output in order means reading the source
backwards (reversal) or forwards (copy), so the cross-attention of a trained model
shows an anti-diagonal or a diagonal. Reported: greedy exact-match accuracy on held-out
strings and, per cross-attention head, the mean weight on the expected source token.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from ..architectures import build_model
from ..capture import capture
from ..config import TransformerConfig
from ..data import LOWERCASE, copy_pairs, reversal_pairs
from ..tokenization import CharTokenizer
from ..training import Batch, Probe, TrainConfig, Trainer, pad_seq2seq
from .common import checkpoint_bytes, finite, heatmap, lines, loss_curve, prepare_dir, set_threads, write_results

log = logging.getLogger(__name__)

TASKS = {"reverse": "rev:", "copy": "copy:"}


def tokenizer() -> CharTokenizer:
    return CharTokenizer.from_corpus(LOWERCASE + "".join(TASKS.values()))


def encode_pairs(tok: CharTokenizer, pairs: list[tuple[str, str]], prefix: str) -> tuple[list, list]:
    sources = [torch.tensor(tok.encode(prefix + s)) for s, _ in pairs]
    targets = [torch.tensor(tok.encode(t) + [tok.eos_id]) for _, t in pairs]
    return sources, targets


def pair_batches(tok: CharTokenizer, batch_size: int, min_len: int, max_len: int, seed: int = 0):
    """Half reversal, half copy; fresh random strings every step (seeded by the step)."""

    def batch(step: int) -> Batch:
        half = batch_size // 2
        s1, t1 = encode_pairs(tok, reversal_pairs(half, min_len, max_len, seed=seed * 1_000_003 + 2 * step),
                              TASKS["reverse"])
        s2, t2 = encode_pairs(tok,
                              copy_pairs(batch_size - half, min_len, max_len, seed=seed * 1_000_003 + 2 * step + 1),
                              TASKS["copy"])
        return pad_seq2seq(s1 + s2, t1 + t2, tok.pad_id, tok.bos_id)

    return batch


@torch.no_grad()
def exact_match(model, tok: CharTokenizer, pairs: list[tuple[str, str]], prefix: str, batch: int = 100) -> float:
    correct = 0
    for i in range(0, len(pairs), batch):
        chunk = pairs[i : i + batch]
        sources, _ = encode_pairs(tok, chunk, prefix)
        src = pad_seq2seq(sources, sources, tok.pad_id, tok.bos_id)
        out = model.generate(src["src"], tok.bos_id, tok.eos_id, max_new_tokens=src["src"].shape[1] + 2,
                             src_mask=src["src_mask"])
        for row, (_, target) in zip(out[:, 1:].tolist(), chunk):
            if tok.eos_id in row:
                row = row[: row.index(tok.eos_id)]
            correct += tok.decode(row) == target
    return correct / len(pairs)


@torch.no_grad()
def diagonal_scores(model, tok: CharTokenizer, pairs: list[tuple[str, str]], prefix: str,
                    reverse: bool) -> torch.Tensor:
    """(L, H): mean cross-attention weight, over target tokens, on the source character
    the output reads (teacher-forced). Reverse: the anti-diagonal; copy: the diagonal."""
    p = len(prefix)
    total = None
    for source, target in pairs:
        src = torch.tensor([tok.encode(prefix + source)])
        tgt = torch.tensor([[tok.bos_id] + tok.encode(target)])
        with capture(model) as rec:
            model(src, tgt)
        n = len(source)
        rows = torch.arange(n)  # decoder input t (bos, y0, ...) predicts target token t
        cols = p + (n - 1 - rows if reverse else rows)
        maps = rec.all_dense("cross")  # (L, H, Tq, Tk)
        score = maps[:, :, rows, cols].mean(-1)
        total = score if total is None else total + score
    return total / len(pairs)


def run(out_dir: str | Path, quick: bool = False, *, steps: int | None = None, d_model: int = 128, n_layers: int = 2,
        n_heads: int = 4, positional: str = "t5_relative", min_len: int = 3, max_len: int = 12, batch_size: int = 64,
        lr: float = 2e-3, n_eval: int = 500, threads: int | None = 2, seed: int = 0) -> dict:
    started = time.perf_counter()
    set_threads(threads)
    torch.manual_seed(seed)
    out = prepare_dir(out_dir)
    tok = tokenizer()
    config = TransformerConfig(family="encoder-decoder", vocab_size=tok.vocab_size, d_model=d_model, n_layers=n_layers,
                               n_heads=n_heads, positional=positional, max_positions=64, norm="rmsnorm",
                               activation="relu", bias=False, pad_token_id=tok.pad_id)
    model = build_model(config)
    steps = steps or (20 if quick else 1500)
    n_eval = 20 if quick else n_eval
    train_cfg = TrainConfig(steps=steps, lr=lr, warmup=min(100, steps // 10), weight_decay=0.01, log_every=10,
                            snapshot_every=max(steps // 15, 1), seed=seed, progress=not quick)
    probes = [Probe.from_text("reverse", "rev:attention", tok, target="noitnetta"),
              Probe.from_text("copy", "copy:attention", tok, target="attention")]
    trainer = Trainer(model, train_cfg, pair_batches(tok, batch_size, min_len, max_len, seed), out_dir=out,
                      tokenizer=tok, probes=probes, save_dtype=torch.float16, resumable=False,
                      extra_state={"lab": "seq2seq"})
    result = trainer.train()
    model.eval()
    model.set_backend("sdpa")
    # held-out strings: a seed the training stream never uses (it uses seed * 1_000_003 + k)
    rev_eval = reversal_pairs(n_eval, min_len, max_len, seed=999_999_937)
    copy_eval = copy_pairs(n_eval, min_len, max_len, seed=999_999_929)
    acc = {"reverse": exact_match(model, tok, rev_eval, TASKS["reverse"]),
           "copy": exact_match(model, tok, copy_eval, TASKS["copy"])}
    model.set_backend("math")
    anti = diagonal_scores(model, tok, rev_eval[:50], TASKS["reverse"], reverse=True)
    diag = diagonal_scores(model, tok, copy_eval[:50], TASKS["copy"], reverse=False)
    # a uniform head would score 1 / (source length): the chance level to compare with
    chance = sum(1 / (len(TASKS["reverse"]) + len(s)) for s, _ in rev_eval[:50]) / len(rev_eval[:50])
    examples = []
    for prefix in TASKS.values():
        for source in ("attention", "transformer", "heads"):
            ids = torch.tensor([tok.encode(prefix + source)])
            row = model.generate(ids, tok.bos_id, tok.eos_id, max_new_tokens=ids.shape[1] + 2)[0, 1:].tolist()
            row = row[: row.index(tok.eos_id)] if tok.eos_id in row else row
            examples.append({"input": prefix + source, "output": tok.decode(row)})
    # cross-attention map of the reversal probe at the last snapshot, best layer/head
    last = trainer.snapshots.steps[-1]
    maps = trainer.snapshots.tensors[f"step{last}/reverse/cross"].float()
    best_l, best_h = divmod(int(anti.flatten().argmax()), anti.shape[1])
    heads = [f"H{h}" for h in range(anti.shape[1])]
    layers = [f"L{i}" for i in range(anti.shape[0])]
    probe = probes[0]
    body = {
        "train_seconds": round(result.seconds, 1),
        "steps": result.steps,
        "final_loss": finite(result.final_loss),
        "config": config.to_dict(),
        "train_config": train_cfg.to_dict(),
        "n_params": model.num_parameters(),
        "task_prefixes": TASKS,
        "lengths": [min_len, max_len],
        "n_eval": n_eval,
        "exact_match": acc,
        "anti_diagonal_scores": anti.tolist(),
        "diagonal_scores": diag.tolist(),
        "anti_diagonal_best": {"layer": best_l, "head": best_h, "score": float(anti[best_l, best_h])},
        "diagonal_best": float(diag.max()),
        "chance_score": chance,
        "examples": examples,
        "figures": {
            "anti_diagonal_scores": heatmap(anti.tolist(), heads, layers,
                                            "reversal: weight on the mirrored source token",
                                            "head", "cross-attention layer"),
            "diagonal_scores": heatmap(diag.tolist(), heads, layers, "copy: weight on the same-position source token",
                                       "head", "cross-attention layer"),
            "reverse_probe_cross_attention": heatmap(maps[best_l, best_h].tolist(), probe.tokens, probe.target_tokens,
                                                     f"cross-attention L{best_l}H{best_h}: rev:attention",
                                                     "source token", "decoder input"),
            "accuracy": lines({t: ([0, result.steps], [0, a]) for t, a in acc.items()}, "exact match", "step",
                              "accuracy"),
            "train_loss": loss_curve(result.history),
        },
    }
    body["checkpoint_bytes"] = checkpoint_bytes(out)
    log.info("seq2seq: exact match %s; anti-diagonal best %.3f (chance %.3f), diagonal best %.3f", acc,
             float(anti.max()), chance, float(diag.max()))
    return write_results(out, "seq2seq", quick, started, body)
