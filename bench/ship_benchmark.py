"""Measure the Backends page's default sweep and ship it: python bench/ship_benchmark.py [--out PATH].

The Backends page opens on GET /api/benchmark/latest, which answers the last benchmark the server ran or,
before any, this file (app/services/benchmark_shipped.json), so opening the page measures nothing. The
sweep is the page's defaults (T = 64, 128, 256, 512; 4 heads of 64; forward; causal; math, sdpa, flash),
measured side by side in one run on this machine; the file records the machine and the time.
"""

import argparse
import json
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from attnlab.models.benchmark import benchmark_backends  # noqa: E402
from attnlab.services.benchmark import machine  # noqa: E402

REQUEST = {"seq_lens": [64, 128, 256, 512], "backends": ["math", "sdpa", "flash"], "causal": True, "n_heads": 4,
           "head_dim": 64, "passes": "fwd"}
OUT = Path(__file__).resolve().parent.parent / "app" / "services" / "benchmark_shipped.json"

log = logging.getLogger("ship_benchmark")

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"where to write (default {OUT})")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1: steady on a "
                        "shared machine, and what a laptop's one request gets)")
    parser.add_argument("--budget", type=float, default=30.0, help="time budget of the sweep in seconds")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import torch

    torch.set_num_threads(args.threads)
    r = REQUEST
    log.info("measuring %s", r)
    rows = benchmark_backends(r["seq_lens"], r["backends"], r["causal"], r["n_heads"], r["head_dim"], r["passes"],
                              time_budget_s=args.budget)
    answer = {"form": "synthetic", "request": REQUEST, "results": rows, "budget_s": args.budget,
              "machine": machine(), "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    args.out.write_text(json.dumps(answer, indent=1) + "\n", encoding="utf-8")
    for row in rows:
        log.info("%-6s T=%-4d %8.3f ms", row["backend"], row["seq_len"], row["median_ms"])
    log.info("wrote %s", args.out)
