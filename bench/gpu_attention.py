"""The GPU attention benchmark: triton vs SDPA's flash kernel vs our PyTorch flash vs math, side by side.

    python bench/gpu_attention.py [--seq-lens 1024 ... 16384] [--dtype bfloat16] [--budget 300] [--json FILE]

Causal attention, forward and forward+backward, B = tokens / T sequences of H heads x D (FlashAttention-2's
setting: 16k tokens per batch, head dim 128). TFLOP/s counts 4*T^2*D per head forward, halved for causal,
backward 2.5x the forward (FlashAttention's papers); memory is max_memory_allocated above what was allocated
before the call; errors are vs math where math fits. Needs a CUDA device. Prints the table, one ratio line per
(T, pass) and, last, exactly ``triton_speed_vs_sdpa_flash T=4096 causal fwd bf16: <SDPA-flash time / triton time>``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from attnlab.models.attention import BACKENDS  # noqa: E402
from attnlab.models.benchmark import benchmark_backends, format_ratio_line, render_table  # noqa: E402

WANTED = ("triton", "sdpa_flash", "sdpa_efficient", "sdpa_cudnn", "flash", "math")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq-lens", type=int, nargs="+", default=[1024, 2048, 4096, 8192, 16384])
    parser.add_argument("--tokens", type=int, default=16384, help="B * T per call (B at least 1)")
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--head-dim", type=int, default=128)
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--torch-flash-max", type=int, default=8192, help="our PyTorch flash only up to this T")
    parser.add_argument("--budget", type=float, default=300.0, help="seconds; rows past it are skipped")
    parser.add_argument("--summary-seq-len", type=int, default=4096)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if not torch.cuda.is_available():
        print("gpu_attention: no CUDA device here", file=sys.stderr)
        return 2
    backends = [b for b in WANTED if b in BACKENDS]
    missing = [b for b in WANTED if b not in BACKENDS]
    print(f"GPU {torch.cuda.get_device_name()}, torch {torch.__version__}; backends {backends}"
          + (f"; not registered here: {missing}" if missing else ""))
    dtype = getattr(torch, args.dtype)
    start = time.perf_counter()
    rows: list[dict] = []
    for t in args.seq_lens:
        left = args.budget - (time.perf_counter() - start)
        names = [b for b in backends if b != "flash" or t <= args.torch_flash_max]
        rows += benchmark_backends([t], names, True, args.heads, args.head_dim, ("fwd", "fwd_bwd"), max(0.0, left),
                                   batch=max(1, args.tokens // t), dtype=dtype, device="cuda", progress=True,
                                   math_max_bytes=8 * 2**30, min_runs=5, max_runs=20, target_s_per_row=1.0)
    for r in rows:  # TFLOP/s, the unit GPU papers use
        r["tflops"] = None if r["gflops"] is None else r["gflops"] / 1e3
    print(render_table(rows))
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1))
    for t in args.seq_lens:
        for pass_ in ("fwd", "fwd_bwd"):
            for reference in ("sdpa_flash", "flash"):
                print(format_ratio_line(rows, "triton", reference, t, pass_))
            print(format_ratio_line(rows, "triton", "sdpa_flash", t, pass_, metric="memory"))
    print(format_ratio_line(rows, "triton", "sdpa_flash", args.summary_seq_len, "fwd"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
