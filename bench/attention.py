"""Thin script for `attnlab bench attention`: python bench/attention.py [--quick] [--json] [--seq-len T] [--heads H].

math vs sdpa vs our flash (time, GFLOP/s, peak memory, error vs math); the last line
is `flash_speed_vs_sdpa T=4096 causal fwd: <sdpa time / flash time>`.
"""

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from attnlab.models.benchmark import run_attention_bench  # noqa: E402

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only T=4096 causal forward (under a minute)")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON list")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--budget", type=float, default=None, help="time budget in seconds for the sweep")
    parser.add_argument("--seq-len", type=int, default=4096, help="T of --quick and of the summary line")
    parser.add_argument("--heads", type=int, default=12, help="attention heads (head dim 64)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    run_attention_bench(quick=args.quick, as_json=args.json, device=args.device, time_budget_s=args.budget,
                        summary_seq_len=args.seq_len, n_heads=args.heads)
