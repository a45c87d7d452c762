"""Times of the explain endpoints, end to end through the ASGI app (the real server, MiniLM).

- GET /api/runs/{id}/computation for MiniLM at 128 tokens (a run with values), goal <= 50 ms;
- GET /api/runs/{id}/attention?weighting=value_norm (a whole 128 x 128 head) beside the raw tile;
- the Q/K geometry's 2-D projection of 2 x 512 points: PCA (goal <= 200 ms), t-SNE and UMAP (when
  umap-learn is installed), each on the same points.

    python bench/explain.py [--runs N]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from attnlab.core.settings import Settings  # noqa: E402
from attnlab.main import create_app  # noqa: E402
from attnlab.models.explain import qk_joint  # noqa: E402
from attnlab.services.explain import project_2d, umap_available  # noqa: E402

WORDS = ("the quick brown fox jumps over a lazy dog while seven wizards quietly judge boxing matches in "
         "the old town square").split()


def text_of(n_words: int) -> str:
    return " ".join(WORDS[i % len(WORDS)] for i in range(n_words))


def median_ms(fn, runs: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15, help="timed calls per measurement (median reported)")
    parser.add_argument("--no-projections", action="store_true", help="skip the PCA / t-SNE / UMAP timings")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    app = create_app(Settings(_env_file=None))
    with TestClient(app) as client:
        n_words = 126  # + [CLS] and [SEP]: 128 tokens for these one-piece words
        run = client.post("/api/runs", json={"model": "minilm", "text": text_of(n_words), "values": True}).json()
        rid, n = run["run_id"], run["n_tokens"]
        params = {"layer": 3, "head": 5, "query": n // 2}
        url = f"/api/runs/{rid}/computation"
        plain = {"Accept-Encoding": "identity"}
        end_to_end = median_ms(lambda: client.get(url, params=params, headers=plain).raise_for_status(), args.runs)
        gzipped = median_ms(lambda: client.get(url, params=params, headers={"Accept-Encoding": "gzip"})
                            .raise_for_status(), args.runs)
        size = len(client.get(url, params=params, headers=plain).content)
        server = statistics.median(client.get(url, params=params, headers=plain).json()["server_ms"]
                                   for _ in range(args.runs))
        tile = f"/api/runs/{rid}/attention"
        raw_ms = median_ms(lambda: client.get(tile, params={"layer": 3, "head": 5}).raise_for_status(), args.runs)
        vw_ms = median_ms(lambda: client.get(tile, params={"layer": 3, "head": 5, "weighting": "value_norm"})
                          .raise_for_status(), args.runs)
    print(f"MiniLM, {n} tokens, torch threads {torch.get_num_threads()}")
    print(f"computation: server {server:.1f} ms (goal <= 50 ms); end to end {end_to_end:.1f} ms uncompressed "
          f"({size / 1e3:.0f} kB), {gzipped:.1f} ms gzipped")
    print(f"tile 128x128: raw {raw_ms:.1f} ms, value_norm {vw_ms:.1f} ms (normalisers cached after the first call)")
    if args.no_projections:
        return

    torch.manual_seed(0)
    q, k = qk_joint(torch.randn(512, 32), torch.randn(512, 32))
    points = torch.cat([q, k]).numpy()
    pca = median_ms(lambda: project_2d(points, "pca"), args.runs)
    print(f"projection of 2 x 512 points: PCA {pca:.1f} ms (goal <= 200 ms)")
    t0 = time.perf_counter()
    project_2d(points, "tsne", 0)
    print(f"  t-SNE {(time.perf_counter() - t0) * 1e3:.0f} ms (one call)")
    if umap_available():
        t0 = time.perf_counter()
        import umap  # noqa: F401  numba compiles on first import

        t1 = time.perf_counter()
        first = project_2d(points, "umap", 0)
        t2 = time.perf_counter()
        second = project_2d(points, "umap", 0)
        t3 = time.perf_counter()
        print(f"  UMAP import {(t1 - t0):.1f} s, first call {(t2 - t1):.1f} s, next call {(t3 - t2) * 1e3:.0f} ms "
              f"(same seed, same map: {bool(np.allclose(first, second))})")
    else:
        print("  UMAP: umap-learn not installed (pip install 'attnlab[umap]')")


if __name__ == "__main__":
    main()
