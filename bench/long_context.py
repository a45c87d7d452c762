"""Long context, measured side by side in one run (issue 15).

    python bench/long_context.py [--smollm2-tokens 8192] [--scratch-tokens 32768] [--tolerance-tokens 1789]
                                 [--threads N]

0. The tolerance of the long-run capture on SmolLM2: the largest difference of any weight of any head between
   a capture in int16 (what the server keeps past ``capture_float32_max_tokens``), or float16, and the float32
   capture of the same text, and how far rows are from summing to 1.
1. SmolLM2 at its full 8,192 positions, as the server runs it with default settings (capture in int16 with a
   scale per vector past ``capture_float32_max_tokens``): the captured forward on ``flash`` and on ``sdpa``
   against the bare
   ``transformers`` forward (its own SDPA, no capture) on the same input, the capture's size, and the time to
   the first pooled overview (512 x 512) and to each further head.
2. The extrapolation lab's ALiBi decoder (trained at 64 tokens) at 32,768 tokens on ``flash``: run time
   without and with the overviews pooled as it runs (as the server does), the allocator's peak (torch's own
   allocations, attnlab.models.memory.measure_peak), the process RSS, the capture's size, and the first
   pooled overview of one head (then ready), against pooling it from the capture after the run.

Times are wall seconds of one run each; ratios are of runs made here, one after the other.
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from attnlab.core.settings import Settings  # noqa: E402
from attnlab.models import load  # noqa: E402
from attnlab.models.capture import capture_dtype, capture_pools, pooled_overview  # noqa: E402
from attnlab.models.memory import measure_peak  # noqa: E402
from attnlab.models.paths import ZOO  # noqa: E402
from attnlab.models.registry import scratch_entry  # noqa: E402
from attnlab.services.runs import RunService  # noqa: E402

log = logging.getLogger("bench.long_context")
MIB = 2**20


def long_text(n_chars: int) -> str:
    """The bundled long demo text (Austen's opening, repeated) cut to ``n_chars`` characters."""
    base = ("It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in "
            "want of a wife. However little known the feelings or views of such a man may be on his first entering "
            "a neighbourhood, this truth is so well fixed in the minds of the surrounding families, that he is "
            "considered as the rightful property of some one or other of their daughters. ")
    return (base * (n_chars // len(base) + 1))[:n_chars]


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def overview_times(recorder, kind: str, heads: int = 3) -> list[float]:
    rec = recorder.get(kind, recorder.layers(kind) - 1)
    t_q, t_k = rec.shape
    return [timed(lambda h=h: pooled_overview(rec, h, 512, "max", (0, t_q), (0, t_k)))[1] for h in range(heads)]


def smollm2_input(adapter, n_tokens: int):
    ids = adapter.tokenize(long_text(n_tokens * 6), None).ids[0, :n_tokens]
    return adapter.tokenize(adapter.tokenizer.decode(ids.tolist()), None)


def tolerance(n_tokens: int) -> None:
    adapter = load("smollm2")
    enc = smollm2_input(adapter, n_tokens)
    n, layers = len(enc), adapter.info.n_layers
    ref = adapter.forward_encoded(enc, "flash").recorder
    print(f"SmolLM2-135M, {n} tokens: capture against the float32 capture, all {layers} layers x "
          f"{adapter.info.n_heads} heads")
    for dtype in (torch.int16, torch.float16):
        with capture_dtype(dtype):
            low = adapter.forward_encoded(enc, "flash").recorder
        worst = row = 0.0
        for layer in range(layers):
            a, b = ref.get("decoder", layer), low.get("decoder", layer)
            heads, span = slice(0, a.n_heads), slice(0, n)
            wb = b.block(heads, span, span)
            worst = max(worst, (a.block(heads, span, span) - wb).abs().max().item())
            row = max(row, (wb.sum(-1) - 1).abs().max().item())
        print(f"  {str(dtype).removeprefix('torch.'):8s} max |w - w_float32| {worst:.1e}   max |row sum - 1| "
              f"{row:.1e}   {low.nbytes() / n / layers:.0f} bytes per token per layer")


def smollm2(n_tokens: int, settings: Settings) -> None:
    adapter = load("smollm2")
    enc = smollm2_input(adapter, n_tokens)
    n = len(enc)
    dtype = torch.int16 if n > settings.capture_float32_max_tokens else torch.float32
    print(f"SmolLM2-135M, {n} tokens, capture Q/K in {str(dtype).removeprefix('torch.')}")
    model = adapter.model
    model.set_attn_implementation("sdpa")
    try:
        with torch.no_grad():
            _, bare = timed(lambda: model(enc.ids, attention_mask=enc.attention_mask))
    finally:
        model.set_attn_implementation("attnlab")
    print(f"  bare transformers forward (sdpa)        {bare:8.1f} s   1.00x")
    service = RunService(None, settings)  # type: ignore[arg-type]
    for backend, pooling in (("flash", False), ("flash", True), ("sdpa", True)):
        # as the server runs it (pooling), and flash without the overviews it pools as it runs
        pools = service.pools_while_running(adapter.info, n, backend) if pooling else ()
        with capture_dtype(dtype), capture_pools(pools):
            result, secs = timed(lambda b=backend: adapter.forward_encoded(enc, b))
        print(f"  attnlab captured forward ({backend:5s})       {secs:8.1f} s   {secs / bare:.2f}x   "
              f"capture {result.recorder.nbytes() / MIB:.0f} MiB "
              f"({result.recorder.nbytes() / n / adapter.info.n_layers:.0f} bytes per token per layer"
              + (f", with the {' and '.join(map(str, pools))}-cell overviews it pooled as it ran" if pools else "")
              + ")")
    first, *rest = overview_times(result.recorder, "decoder")
    print(f"  first pooled overview 512x512           {first:8.2f} s; further heads "
          + ", ".join(f"{t:.2f}" for t in rest) + " s")


def scratch(n_tokens: int, settings: Settings) -> None:
    adapter = scratch_entry("extrapolation-alibi", ZOO / "extrapolation" / "alibi").load()
    enc = adapter.tokenize(long_text(n_tokens), None)
    n = len(enc)
    dtype = torch.int16 if n > settings.capture_float32_max_tokens else torch.float32

    pools = RunService(None, settings).pools_while_running(adapter.info, n, "flash")  # type: ignore[arg-type]

    def run(sizes=pools):
        with capture_dtype(dtype), capture_pools(sizes):
            return adapter.forward_encoded(enc, "flash")

    _, plain = timed(lambda: run(()))
    result, secs = timed(run)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    _, peak = measure_peak(run)  # a second run under the profiler's memory events (slower: not timed)
    print(f"extrapolation-alibi (trained at 64 tokens), {n} tokens on flash")
    print(f"  run {plain:.1f} s; {secs:.1f} s pooling the {' and '.join(map(str, pools))}-cell overviews of every "
          f"head as it runs ({secs / plain:.2f}x)")
    print(f"  allocator peak {peak.bytes / MIB:.0f} MiB, process max RSS {rss:.0f} MiB (before the profiled run), "
          f"capture {result.recorder.nbytes() / MIB:.0f} MiB")
    first, *rest = overview_times(result.recorder, "decoder")
    print(f"  first pooled overview 512x512 {first:.3f} s; further heads " + ", ".join(f"{t:.3f}" for t in rest)
          + " s")
    rec = result.recorder.get("decoder", 1)
    saved, rec.pooled = rec.pooled, None
    _, again = timed(lambda: pooled_overview(rec, 0, 512, "max", (0, n), (0, n)))
    rec.pooled = saved
    print(f"  (the same overview pooled from the capture after the run: {again:.2f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smollm2-tokens", type=int, default=8192, help="0 skips SmolLM2")
    parser.add_argument("--scratch-tokens", type=int, default=32768, help="0 skips the from-scratch run")
    parser.add_argument("--tolerance-tokens", type=int, default=1789, help="0 skips the tolerance measurement")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = Settings(_env_file=None)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if args.tolerance_tokens:
        tolerance(args.tolerance_tokens)
    if args.scratch_tokens:
        scratch(args.scratch_tokens, settings)
    if args.smollm2_tokens:
        smollm2(args.smollm2_tokens, settings)


if __name__ == "__main__":
    main()
