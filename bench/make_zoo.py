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
DEFAULT = ("induction", "extrapolation", "seq2seq", "lm", "mlm", "stability", "schedules")

log = logging.getLogger("make_zoo")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("labs", nargs="*", default=list(DEFAULT))
    p.add_argument("--threads", type=int, default=1,
                   help="intra-op threads per lab (1: fastest when the CPU is shared with other jobs)")
    p.add_argument("--record-only", action="store_true",
                   help="train nothing; collect the times already in models/zoo/*/results.json")
    args = p.parse_args()
    times_file = ROOT / "bench" / "zoo_times.json"
    times = json.loads(times_file.read_text()) if times_file.exists() else {}
    for lab in args.labs:
        start = time.perf_counter()
        results_file = ROOT / "models" / "zoo" / lab / "results.json"
        if not args.record_only:
            log.info("lab %s ...", lab)
            subprocess.run([sys.executable, "-m", "attnlab.models.labs", lab, "--out-dir", str(results_file.parent),
                            "--set", f"threads={args.threads}"],
                           cwd=ROOT, check=True)
        elif not results_file.exists():
            continue
        results = json.loads(results_file.read_text())
        times[lab] = {"lab_seconds": results["seconds"], "cpu_seconds": results.get("cpu_seconds"),
                      "train_seconds": results.get("train_seconds"), "threads": results.get("threads"),
                      "checkpoint_bytes": results.get("checkpoint_bytes"),
                      "date": time.strftime("%Y-%m-%d %H:%M", time.localtime(results_file.stat().st_mtime))}
        if not args.record_only:
            times[lab]["wall_seconds"] = round(time.perf_counter() - start, 1)
        times_file.write_text(json.dumps(times, indent=1))
        log.info("lab %s: %.1f s", lab, times[lab]["lab_seconds"])


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    main()
