"""Thin script for `attnlab bench api`: python bench/api.py [runs] [torch threads]."""

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from attnlab.cli.api_bench import run_api_bench  # noqa: E402

if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else None
    run_api_bench(runs, threads)
