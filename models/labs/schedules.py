"""Lab 7: learning-rate schedules on the same model and data.

Four schedules (``attnlab.models.schedules``), the same peak LR, the same initial weights and batches:

- ``constant``: the peak LR from step 0 to the end, no warmup;
- ``warmup_linear``: linear warmup, then a straight line down to ``min_lr_ratio`` x peak
  (BERT, Devlin et al. 2019, arXiv 1810.04805);
- ``warmup_cosine``: linear warmup, then half a cosine down to ``min_lr_ratio`` x peak
  (Loshchilov & Hutter 2017, arXiv 1608.03983; GPT-3);
- ``inverse_sqrt``: linear warmup, then LR proportional to 1/sqrt(step) (Vaswani et al. 2017,
  arXiv 1706.03762, eq. 3; scaled here to the same peak, ``inverse_sqrt_normalized``).

The claim was fixed before the shipped run (``CLAIMS``): schedules that decay the LR to a small
value by the end finish lower than a constant LR, since the last steps average out the gradient
noise instead of bouncing on it; ``results.json`` says whether it held on this short run.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ..training import TrainConfig
from .common import write_results
from .variants import Variant, compare

log = logging.getLogger(__name__)

MARGIN = 0.02  # nats of validation loss

SCHEDULE_LABELS = {
    "constant": "constant (no warmup)",
    "warmup_linear": "warmup + linear decay",
    "warmup_cosine": "warmup + cosine",
    "inverse_sqrt_normalized": "inverse square root (Vaswani et al.)",
}

CLAIMS = {
    "decay_beats_constant": (f"warmup + linear decay and warmup + cosine both end at least {MARGIN} nats "
                             "(validation loss) below the constant LR"),
    "inverse_sqrt_in_between": ("inverse square root, whose LR at the end is still sqrt(warmup/steps) of the "
                                "peak, ends between the constant LR and the better of the two decaying schedules"),
}


def variants(warmup: int) -> list[Variant]:
    out = []
    for name, label in SCHEDULE_LABELS.items():
        out.append(Variant(name, label, {}, {"schedule": name, "warmup": 0 if name == "constant" else warmup}))
    return out


def judge(runs: list[dict]) -> dict:
    val = {r["name"]: r["val_loss"] for r in runs}
    if any(v is None for v in val.values()):
        missing = sorted(k for k, v in val.items() if v is None)
        return {"claims": {k: {"claim": c, "holds": False, "why": f"no validation loss for {missing}"}
                           for k, c in CLAIMS.items()}, "holds": False, "ranking": []}
    gaps = {k: round(val["constant"] - val[k], 4) for k in ("warmup_linear", "warmup_cosine")}
    best_decay = min(val["warmup_linear"], val["warmup_cosine"])
    claims = {
        "decay_beats_constant": {"claim": CLAIMS["decay_beats_constant"],
                                 "holds": all(g >= MARGIN for g in gaps.values()),
                                 "constant_minus": gaps},
        "inverse_sqrt_in_between": {"claim": CLAIMS["inverse_sqrt_in_between"],
                                    "holds": best_decay <= val["inverse_sqrt_normalized"] <= val["constant"],
                                    "val_loss": val["inverse_sqrt_normalized"], "between": [best_decay,
                                                                                           val["constant"]]},
    }
    return {"claims": claims, "holds": all(c["holds"] for c in claims.values()),
            "ranking": sorted(val, key=val.get)}


def figure(runs: list[dict]) -> dict:
    """Loss curves (solid, left axis) and LR curves (dotted, right axis) on one chart, one colour per schedule."""
    colours = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd")
    data = []
    for r, colour in zip(runs, colours):
        data.append({"type": "scatter", "mode": "lines", "name": f"{r['label']}: loss", "x": r["step"], "y": r["loss"],
                     "line": {"color": colour}, "legendgroup": r["name"]})
        data.append({"type": "scatter", "mode": "lines", "name": f"{r['label']}: LR", "x": r["step"], "y": r["lr"],
                     "yaxis": "y2", "line": {"color": colour, "dash": "dot"}, "legendgroup": r["name"]})
    layout = {"title": {"text": "loss (solid) and learning rate (dotted) per schedule"},
              "xaxis": {"title": {"text": "step"}}, "yaxis": {"title": {"text": "training loss"}},
              "yaxis2": {"title": {"text": "learning rate"}, "overlaying": "y", "side": "right"}}
    return {"data": data, "layout": layout}


def kept_defaults() -> dict:
    """The ``TrainConfig`` defaults the lab keeps (AdamW betas, weight decay, clipping), for results.json."""
    cfg = TrainConfig()
    return {"betas": cfg.betas, "weight_decay": cfg.weight_decay, "grad_clip": cfg.grad_clip}


def run(out_dir: str | Path, quick: bool = False, *, steps: int | None = None, lr: float = 1e-2,
        warmup: int | None = None, min_lr_ratio: float = 0.1, n_layers: int = 4, d_model: int = 64, n_heads: int = 4,
        vocab_size: int | None = None, corpus: str = "austen", max_chars: int = 300_000, block_size: int = 64,
        batch_size: int = 16, threads: int | None = 1, seed: int = 0) -> dict:
    started = time.perf_counter()
    steps = steps or (6 if quick else 300)
    warmup = warmup if warmup is not None else max(1, steps // 10)
    base_train = {"steps": steps, "lr": lr, "min_lr_ratio": min_lr_ratio}
    cmp = compare(out_dir, quick, variants(warmup), base_train, n_layers=n_layers, d_model=d_model, n_heads=n_heads,
                  vocab_size=vocab_size, corpus=corpus, max_chars=max_chars, block_size=block_size,
                  batch_size=batch_size, threads=threads, seed=seed)
    runs = cmp.runs
    verdict = judge(runs)
    body = {
        "setup": {"model": cmp.base_model, "train": {**kept_defaults(), **base_train, "warmup": warmup},
                  "init": "linear weights N(0, 1/fan_in), as in the stability lab",
                  **cmp.setup(corpus=corpus, max_chars=max_chars, block_size=block_size, batch_size=batch_size),
                  "margin_nats": MARGIN},
        **verdict,
        "table": {r["name"]: {k: r[k] for k in ("label", "final_loss", "val_loss", "seconds")} for r in runs},
        "runs": runs,
        "figures": {"curves": figure(runs)},
    }
    log.info("schedules: holds=%s, ranking %s", verdict["holds"], verdict["ranking"])
    return write_results(cmp.out, "schedules", quick, started, body)

