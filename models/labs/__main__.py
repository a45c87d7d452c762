"""``python -m attnlab.models.labs NAME [--out-dir DIR] [--quick] [--set key=value ...]``."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from ..config import parse_override
from . import LABS, run_lab


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m attnlab.models.labs", description="run one attnlab lab")
    p.add_argument("name", choices=list(LABS))
    p.add_argument("--out-dir", help="default: <data dir>/labs/NAME (ATTNLAB_DATA_DIR)")
    p.add_argument("--quick", action="store_true", help="a seconds-long run (tests)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="lab options, e.g. steps=500")
    args = p.parse_args(argv)
    options = {k: parse_override(v) for k, v in (item.split("=", 1) for item in args.set)}
    results = run_lab(args.name, args.out_dir, args.quick, **options)
    summary = {k: v for k, v in results.items() if k != "figures"}
    sys.stdout.write(json.dumps(summary, indent=1)[:5000] + "\n")
    return results


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    main()
