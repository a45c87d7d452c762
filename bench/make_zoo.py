"""Regenerate the demo checkpoints under models/zoo/ and record how long each took.

    python bench/make_zoo.py                      # all labs, default settings
    python bench/make_zoo.py induction seq2seq    # some of them
    python bench/make_zoo.py --threads 2

Each lab runs in its own process (a clean allocator and thread pool each), writes
models/zoo/<lab>/ (float16 weights, config, tokenizer, log.jsonl, snapshots,
results.json) and the wall/CPU times land in bench/zoo_times.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ("induction", "extrapolation", "seq2seq", "lm", "mlm")

log = logging.getLogger("make_zoo")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("labs", nargs="*", default=list(DEFAULT))
    p.add_argument("--threads", type=int, default=1,
                   help="intra-op threads per lab (1: fastest when the CPU is shared with other jobs)")
    args = p.parse_args()
    times_file = ROOT / "bench" / "zoo_times.json"
    times = json.loads(times_file.read_text()) if times_file.exists() else {}
    for lab in args.labs:
        start = time.perf_counter()
        log.info("lab %s ...", lab)
        subprocess.run([sys.executable, "-m", "models.labs", lab, "--set", f"threads={args.threads}"],
                       cwd=ROOT, check=True)
        results = json.loads((ROOT / "models" / "zoo" / lab / "results.json").read_text())
        times[lab] = {"wall_seconds": round(time.perf_counter() - start, 1), "lab_seconds": results["seconds"],
                      "cpu_seconds": results.get("cpu_seconds"), "train_seconds": results.get("train_seconds"),
                      "threads": args.threads, "date": time.strftime("%Y-%m-%d %H:%M")}
        times_file.write_text(json.dumps(times, indent=1))
        log.info("lab %s: %.1f s", lab, times[lab]["wall_seconds"])


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    main()
