"""Lab 1: induction heads in a 2-layer attention-only decoder (Olsson et al. 2022).

Sequences hold a random segment that appears twice, at a random place and with a
random length, so copying by a fixed offset does not work: the next token in the
second copy is predictable only by finding the previous occurrence of the current
token and attending to what followed it. A previous-token head in layer 0 and an
induction head in layer 1 do exactly that.

Reported: per-head induction and previous-token scores on repeated random tokens,
the loss on the first (random) versus the repeated half, and the loss per position.
"""

from __future__ import annotations

import logging
import string
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ..architectures import build_model
from ..capture import Recorder, capture
from ..config import TransformerConfig
from ..data import repeated_segments
from ..names import unknown
from ..tokenization import CharTokenizer
from ..training import Batch, Probe, TrainConfig, Trainer, step_generator
from .common import checkpoint_bytes, finite, heatmap, lines, loss_curve, prepare_dir, set_threads, write_results

log = logging.getLogger(__name__)

ALPHABET = string.ascii_letters + string.digits  # 62 symbols, one token each


def tokenizer() -> CharTokenizer:
    return CharTokenizer.from_corpus(ALPHABET)


def segment_batches(batch_size: int, seq_len: int, low: int, vocab_size: int, min_seg: int, max_seg: int,
                    seed: int = 0):
    """Random tokens with one segment repeated: random length, random start."""

    def batch(step: int) -> Batch:
        g = step_generator(seed, step)
        ids = torch.randint(low, vocab_size, (batch_size, seq_len), generator=g)
        seg = torch.randint(min_seg, max_seg + 1, (batch_size,), generator=g).tolist()
        starts = [int(torch.randint(0, seq_len - 2 * s + 1, (1,), generator=g)) for s in seg]
        for row, (s, p) in enumerate(zip(seg, starts)):
            ids[row, p + s : p + 2 * s] = ids[row, p : p + s]
        return {"ids": ids, "labels": ids}

    return batch


def periodic_batches(batch_size: int, seq_len: int, low: int, vocab_size: int, min_period: int, max_period: int,
                     seed: int = 0):
    """A random segment repeated to fill the sequence, its length (the period) random per row.

    After the first period every token is predictable by induction, so the training
    signal is dense; the period varies, so attending to a fixed offset does not work.
    """

    def batch(step: int) -> Batch:
        g = step_generator(seed, step)
        ids = torch.randint(low, vocab_size, (batch_size, seq_len), generator=g)
        period = torch.randint(min_period, max_period + 1, (batch_size,), generator=g)
        ids = ids.gather(1, torch.arange(seq_len)[None] % period[:, None])
        return {"ids": ids, "labels": ids}

    return batch


def induction_scores(rec: Recorder, seg_len: int, n_seqs: int) -> dict[str, Tensor]:
    """Per-head (L, H) scores on ``[segment, segment]`` sequences of length 2 * seg_len.

    induction: mean attention from position i of the second copy to i - seg_len + 1 (the
    token after the earlier occurrence of the current token); previous_token: mean
    attention from i to i - 1.
    """
    n_layers = rec.layers("decoder")
    rows = torch.arange(seg_len, 2 * seg_len)
    all_rows = torch.arange(1, 2 * seg_len)
    induction, previous = [], []
    for layer in range(n_layers):
        ind, prev = 0.0, 0.0
        for b in range(n_seqs):
            w = rec.dense("decoder", layer, None, batch=b)  # (H, T, T)
            ind = ind + w[:, rows, rows - seg_len + 1].mean(-1)
            prev = prev + w[:, all_rows, all_rows - 1].mean(-1)
        induction.append(ind / n_seqs)
        previous.append(prev / n_seqs)
    return {"induction": torch.stack(induction), "previous_token": torch.stack(previous)}


@torch.no_grad()
def evaluate(model, vocab_size: int, low: int, seg_len: int, n_seqs: int = 32, seed: int = 1234) -> dict:
    ids = repeated_segments(n_seqs, seg_len, vocab_size, seed=seed, low=low)
    model.eval()
    with capture(model) as rec:
        logits = model(ids).logits
    # loss of predicting token t+1 at position t, per target position 1 .. 2S-1
    per_token = F.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten(), reduction="none")
    per_position = per_token.view(n_seqs, -1).mean(0)  # index k = target position k + 1
    first = per_position[: seg_len - 1].mean()  # targets 1 .. S-1: random, unpredictable
    # targets S+1 .. 2S-1: copies (target S, the start of the copy, is unpredictable)
    repeated = per_position[seg_len:].mean()
    scores = induction_scores(rec, seg_len, min(n_seqs, 8))
    return {"first_half_loss": float(first), "repeated_half_loss": float(repeated),
            "per_position_loss": per_position.tolist(), "scores": scores}


def run(out_dir: str | Path, quick: bool = False, *, steps: int | None = None, positional: str = "rope",
        d_model: int = 64, n_heads: int = 4, seq_len: int = 64, batch_size: int = 32, lr: float = 3e-3,
        data: str = "periodic", min_seg: int = 4, max_seg: int | None = None, threads: int | None = 2,
        seed: int = 0) -> dict:
    """Train and evaluate.

    ``data="periodic"`` (default): a random segment of random length ``min_seg..max_seg``
    repeated to fill the sequence. ``data="halves"``: ``[segment, segment]`` with a segment
    of ``seq_len // 2`` (the layout of ``attnlab.models.data.repeated_segments``): it trains fast but
    lets layer 1 solve the task by attending a fixed offset back, without any induction.
    Whether heads match content rather than an offset is checked by also scoring them on
    segments of another length (``generalization``).
    """
    started = time.perf_counter()
    set_threads(threads)
    torch.manual_seed(seed)
    out = prepare_dir(out_dir)
    tok = tokenizer()
    low, vocab = len(tok.special_ids), tok.vocab_size
    config = TransformerConfig(family="decoder", vocab_size=vocab, d_model=d_model, n_layers=2, n_heads=n_heads,
                               attention_only=True, positional=positional, max_positions=256,
                               pad_token_id=tok.pad_id)
    model = build_model(config)
    steps = steps or (30 if quick else 2000)
    max_seg = max_seg or seq_len // 2
    train_cfg = TrainConfig(steps=steps, lr=lr, warmup=min(100, steps // 10), weight_decay=0.01,
                            snapshot_every=max(steps // 20, 1), log_every=10, seed=seed, progress=not quick)
    if data == "periodic":
        batches = periodic_batches(batch_size, seq_len, low, vocab, min_seg, max_seg, seed)
        described = f"a random segment of {min_seg}..{max_seg} tokens repeated to fill {seq_len} tokens"
    elif data == "halves":
        half = seq_len // 2
        batches = segment_batches(batch_size, seq_len, low, vocab, half, half, seed)
        described = f"[segment, segment], segment of {half} tokens"
    else:
        raise unknown("data", data, ["periodic", "halves"])
    probe_ids = repeated_segments(1, 16, vocab, seed=7, low=low)[0].tolist()
    probe = Probe("repeated", {"ids": torch.tensor([probe_ids])}, [tok.id_to_token(i) for i in probe_ids])
    trainer = Trainer(model, train_cfg, batches, out_dir=out, tokenizer=tok, probes=[probe],
                      save_dtype=torch.float16, resumable=False, extra_state={"lab": "induction"})
    result = trainer.train()
    train_seconds = result.seconds

    seg_len = seq_len // 2
    ev = evaluate(model, vocab, low, seg_len)
    other = max(4, seg_len * 5 // 8)  # 20 for the default 32: a fixed-offset head would miss it
    ev_other = evaluate(model, vocab, low, other)
    generalization = {"seg_len": other, "first_half_loss": ev_other["first_half_loss"],
                      "repeated_half_loss": ev_other["repeated_half_loss"],
                      "best_induction_score": float(ev_other["scores"]["induction"].max())}
    ind, prev = ev["scores"]["induction"], ev["scores"]["previous_token"]
    flat = ind.flatten()
    best = int(flat.argmax())
    best_layer, best_head = divmod(best, ind.shape[1])
    median = float(flat.median())
    # induction score over training, from the saved probe snapshots (segment length 16)
    over_training = []
    for step in trainer.snapshots.steps:
        maps = trainer.snapshots.tensors[f"step{step}/repeated/decoder"].float()  # (L, H, T, T)
        rows = torch.arange(16, 32)
        over_training.append(maps[:, :, rows, rows - 15].mean(-1).max().item())
    shared = ("attnlab.models.labs.induction.induction_scores: mean attention from each token of a repeat to the "
              "token after its earlier copy, over a batch (the definition models.analysis.head_scores uses)")
    heads = [f"H{h}" for h in range(ind.shape[1])]
    layers = [f"L{layer}" for layer in range(ind.shape[0])]
    positions = list(range(1, 2 * seg_len))
    body = {
        "train_seconds": round(train_seconds, 1),
        "steps": result.steps,
        "final_loss": finite(result.final_loss),
        "config": config.to_dict(),
        "train_config": train_cfg.to_dict(),
        "n_params": model.num_parameters(),
        "eval": {"seg_len": seg_len, "n_seqs": 32, "data": "repeated_segments(32, 32, seed=1234)"},
        "train_data": described,
        "first_half_loss": ev["first_half_loss"],
        "repeated_half_loss": ev["repeated_half_loss"],
        "induction_scores": ind.tolist(),
        "previous_token_scores": prev.tolist(),
        "best_head": {"layer": best_layer, "head": best_head, "score": float(flat[best])},
        "median_induction_score": median,
        "score_source": shared,
        "generalization": generalization,
        "induction_over_training": {"step": trainer.snapshots.steps, "max_score": over_training},
        "checkpoint_bytes": 0,
        "figures": {
            "induction_scores": heatmap(ind.tolist(), heads, layers, "induction score per head", "head", "layer"),
            "previous_token_scores": heatmap(prev.tolist(), heads, layers, "previous-token score per head",
                                             "head", "layer"),
            "loss_by_position": lines({"loss": (positions, ev["per_position_loss"])},
                                      f"loss per position: random half, then its repeat (S={seg_len})",
                                      "target position", "cross-entropy (nats)"),
            "induction_over_training": lines({"best head": (trainer.snapshots.steps, over_training)},
                                             "induction score of the best head during training", "step", "score"),
            "train_loss": loss_curve(result.history),
        },
    }
    log.info("induction: first half loss %.3f, repeated half %.3f; best head L%dH%d score %.3f (median %.3f)",
             ev["first_half_loss"], ev["repeated_half_loss"], best_layer, best_head, float(flat[best]), median)
    body["checkpoint_bytes"] = checkpoint_bytes(out)
    return write_results(out, "induction", quick, started, body)
