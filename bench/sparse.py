"""Sparse patterns vs dense at growing lengths: our flash backend's forward, measured side by side.

The same function GET /api/sparse/cost runs (attnlab.services.explain.sparse_cost): random Q, K, V of
(1, n_heads, T, head_dim) float32, median of 3 calls after a warm-up, dense and with the pattern.

    python bench/sparse.py [--heads 4] [--head-dim 32]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from attnlab.services.explain import sparse_cost  # noqa: E402

CASES = [
    ("longformer", {"window": 128, "global_tokens": (0,)}),
    ("bigbird", {"block": 64, "window_blocks": 3, "global_blocks": 1, "random_blocks": 1}),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--head-dim", type=int, default=32)
    parser.add_argument("--seq-lens", default="1024,2048,4096")
    args = parser.parse_args()
    torch.set_num_threads(1)
    lens = [int(t) for t in args.seq_lens.split(",")]
    print(f"flash forward, {args.heads} heads x {args.head_dim}, float32, 1 thread: median ms")
    print(f"{'pattern':<36} {'T':>6} {'density':>8} {'dense':>8} {'sparse':>8} {'dense/sparse':>12}")
    for name, params in CASES:
        out = sparse_cost(name, params, lens, args.heads, args.head_dim)
        for row in out["rows"]:
            print(f"{name + ' ' + str(out['params']):<36.36} {row['seq_len']:>6} {row['density']:>8.3f} "
                  f"{row['dense_ms']:>8.1f} {row['sparse_ms']:>8.1f} {row['speedup']:>12.2f}")


if __name__ == "__main__":
    main()
