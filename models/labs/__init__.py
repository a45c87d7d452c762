"""The labs: one command each, every one writing ``results.json`` (and a checkpoint where it trains one model).

    from attnlab.models.labs import run_lab
    results = run_lab("induction")                     # -> <data_dir>/labs/induction/
    results = run_lab("lm", "runs/lm", preset="gpt2-small", corpus="wikitext-2", device="cuda")

``python -m attnlab.models.labs NAME [--out-dir DIR] [--quick] [--set key=value ...]`` does the same.

A run writes to the user's data directory (``attnlab.models.paths.labs_dir()``, ``$ATTNLAB_DATA_DIR/labs``
when set), never into the installed package: the registry lists it as ``my-<name>`` beside the bundled
``models/zoo/<name>`` (the shipped results). ``bench/make_zoo.py`` passes ``out_dir`` to refresh the zoo.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from ..names import lookup
from ..paths import labs_dir


@dataclass(frozen=True)
class Lab:
    name: str
    module: str  # models.labs.<module> defines run(out_dir, quick=False, **options) -> dict
    title: str
    description: str

    def run(self, out_dir: str | Path, quick: bool = False, **options: object) -> dict:
        return importlib.import_module(f"{__name__}.{self.module}").run(out_dir, quick, **options)


LABS: dict[str, Lab] = {lab.name: lab for lab in (
    Lab("induction", "induction", "Induction heads",
        "2-layer attention-only decoder on repeated random segments; per-head induction scores"),
    Lab("extrapolation", "extrapolation", "Positional extrapolation",
        "one small decoder per positional scheme, trained at 64 tokens, perplexity at 1x-8x"),
    Lab("seq2seq", "seq2seq", "Encoder-decoder on reversal and copy",
        "T5-style encoder-decoder; exact match and the cross-attention (anti-)diagonal"),
    Lab("lm", "lm", "Language model on Jane Austen",
        "small GPT with byte-level BPE; samples and validation perplexity"),
    Lab("mlm", "mlm", "Masked LM on Jane Austen",
        "small BERT-style encoder (15% masking, 80/10/10); fill-mask examples"),
    Lab("heads", "heads", "Why multiple heads help",
        "head importance, single-head ablation and the pruning curve of the shipped induction and lm models"),
    Lab("stability", "stability", "Training stability: pre- vs post-norm, warmup",
        "the same 6-layer decoder, pre-norm and post-norm, with and without warmup, at two learning rates"),
    Lab("schedules", "schedules", "Learning-rate schedules",
        "constant, warmup + linear decay, warmup + cosine, inverse square root on one model and data"),
)}


def get_lab(name: str) -> Lab:
    return lookup(LABS, name, "lab", sep=", ")


def run_lab(name: str, out_dir: str | Path | None = None, quick: bool = False, **options: object) -> dict:
    """Run one lab; return its results (also written to ``<out_dir>/results.json``).

    ``out_dir`` defaults to ``labs_dir() / name`` (the user's data directory; the registry and pages list
    it as ``my-<name>``);
    ``quick`` is a seconds-long version for tests; ``options`` are the lab's own flags
    (``steps``, ``threads``, ``seed``, and per lab e.g. ``positional``, ``preset``, ``corpus``).
    """
    lab = get_lab(name)
    return lab.run(Path(out_dir) if out_dir is not None else labs_dir() / name, quick, **options)


__all__ = ["LABS", "Lab", "get_lab", "run_lab"]
