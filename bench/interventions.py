"""Interventions: what they cost next to the plain model, measured side by side in one run.

- head importance (one forward + one backward through the gates) vs a plain forward + backward (parameter
  gradients) of MiniLM at 128 tokens (issue 17: <= 2x);
- the logit lens (every layer through the final norm and the unembedding) vs one forward of SmolLM2 at 64
  tokens (issue 17: <= 8x), and with 4 selected layers;
- the batched single-head ablation grid vs a loop of one forward per head, and the lens vs a naive lens (one
  full forward per layer), on the shipped `lm` checkpoint at 128 tokens.

Each pair runs interleaved (A, B, A, B, ...) and reports medians, so a busy machine slows both alike.

    python bench/interventions.py                 # ~1-2 minutes on 2 CPU cores
    python bench/interventions.py --repeats 7 --threads 2
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from collections.abc import Callable

import torch
from tqdm import tqdm

from attnlab.models import Encoded, default_registry
from attnlab.models.interventions import (
    ablation_grid,
    anatomy,
    gradient_importance,
    logit_lens,
    naive_ablation_grid,
    naive_logit_lens,
)

log = logging.getLogger("attnlab.bench.interventions")
TEXT = ("It is a truth universally acknowledged that the quiet house by the river was the warmest place in the "
        "village, and everybody who came to the door in winter was given tea and a seat by the fire. ") * 8


def first_tokens(enc: Encoded, n: int) -> Encoded:
    tt = enc.token_type_ids[:, :n] if enc.token_type_ids is not None else None
    return Encoded(enc.ids[:, :n], enc.tokens[:n], enc.offsets[:n], enc.special[:n], None, tt, None)


def side_by_side(a: Callable[[], object], b: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median seconds of a and of b, run interleaved after one warm-up each."""
    a(), b()
    ta, tb = [], []
    for _ in range(repeats):
        for fn, times in ((a, ta), (b, tb)):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(ta), statistics.median(tb)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each side (medians reported)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads (1: steadier on a shared CPU)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    registry = default_registry()
    rows: list[dict] = []
    tasks = []

    minilm = registry.load("minilm") if registry.info("minilm").available else None
    if minilm is not None:
        enc = first_tokens(minilm.tokenize(TEXT), 128)
        anat = anatomy(minilm)

        def fwd_bwd():
            with torch.enable_grad():
                hidden = anat.run(enc.ids, enc.token_type_ids).hidden
                hidden.square().mean().backward()
            minilm.model.zero_grad(set_to_none=True)

        tasks.append(("MiniLM 128 tok: importance (1 probe) / forward+backward",
                      lambda: gradient_importance(minilm, enc, probes=1), fwd_bwd, "<= 2x"))
        tasks.append(("MiniLM 128 tok: importance (4 probes) / forward+backward",
                      lambda: gradient_importance(minilm, enc, probes=4), fwd_bwd, ""))

    smol = registry.load("smollm2") if registry.info("smollm2").available else None
    if smol is not None:
        enc_s = first_tokens(smol.tokenize(TEXT), 64)
        anat_s = anatomy(smol)

        def forward():
            with torch.no_grad():
                anat_s.run(enc_s.ids)

        tasks.append(("SmolLM2 64 tok: logit lens, all 30 layers / forward",
                      lambda: logit_lens(smol, enc_s, 5), forward, "<= 8x"))
        tasks.append(("SmolLM2 64 tok: logit lens, 4 layers / forward",
                      lambda: logit_lens(smol, enc_s, 5, [0, 10, 20, 29]), forward, ""))

    lm = registry.load("lm")
    enc_l = first_tokens(lm.tokenize(TEXT), 128)
    tasks.append(("lm 128 tok: ablation grid batched / one forward per head",
                  lambda: ablation_grid(lm, enc_l), lambda: naive_ablation_grid(lm, enc_l), "< 1x is a gain"))
    tasks.append(("lm 128 tok: logit lens / naive lens (a forward per layer)",
                  lambda: logit_lens(lm, enc_l, 5), lambda: naive_logit_lens(lm, enc_l, 5), "< 1x is a gain"))

    for name, a, b, goal in tqdm(tasks, desc="bench interventions"):
        ta, tb = side_by_side(a, b, args.repeats)
        rows.append({"what": name, "a_ms": ta * 1e3, "b_ms": tb * 1e3, "ratio": ta / tb, "goal": goal})
    width = max(len(r["what"]) for r in rows)
    sys.stdout.write(f"threads={args.threads} repeats={args.repeats} torch={torch.__version__}\n")
    sys.stdout.write(f"{'measured (A / B)':<{width}}  {'A ms':>9}  {'B ms':>9}  {'A/B':>6}  goal\n")
    for r in rows:
        sys.stdout.write(f"{r['what']:<{width}}  {r['a_ms']:9.1f}  {r['b_ms']:9.1f}  {r['ratio']:6.2f}  {r['goal']}\n")
    return rows


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    main()
