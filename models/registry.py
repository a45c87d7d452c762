"""The model registry: every model attnlab can show, whether it is available, and why not.

Inside: ``scratch_entry`` / ``zoo_entries`` (from-scratch checkpoints), ``Registry`` (thread-safe,
lazy loading), ``default_registry`` (bundled pretrained models, allowlist, zoo) and ``load``.
The entry type and the lookup errors live in ``attnlab.models.catalogue``.

``load("minilm")`` is the notebook entry point; services use a ``Registry`` built with
the server's allowlist and model root.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from .adapter import ModelAdapter, ModelInfo, ScratchAdapter
from .catalogue import Entry, UnavailableModel, UnknownModel
from .device import Placement
from .names import lookup
from .paths import ZOO

log = logging.getLogger(__name__)


def scratch_entry(model_id: str, directory: Path, description: str = "") -> Entry:
    """A from-scratch checkpoint directory (config.json + model.safetensors + tokenizer)."""

    def info() -> ModelInfo:
        from .config import TransformerConfig

        cfg = TransformerConfig.load(directory / "config.json")
        return ModelInfo(id=model_id, family=cfg.family, source="scratch", n_layers=cfg.n_layers,
                         n_heads=cfg.n_heads, d_model=cfg.d_model, max_positions=cfg.max_positions,
                         positional=cfg.positional, n_kv_heads=cfg.kv_heads, vocab_size=cfg.vocab_size,
                         description=description)

    def load() -> ModelAdapter:
        from .architectures import load_model
        from .tokenization import load_tokenizer

        return ScratchAdapter(model_id, load_model(directory), load_tokenizer(directory), description, directory)

    return Entry(model_id, info, load)


def zoo_entries(zoo: Path = ZOO) -> list[Entry]:
    """Every trained checkpoint under models/zoo/<name>/ (written by `attnlab lab`)."""
    entries = []
    for config in sorted(zoo.glob("*/config.json")):
        directory = config.parent
        if (directory / "model.safetensors").exists():
            entries.append(scratch_entry(directory.name, directory,
                                         f"from-scratch checkpoint models/zoo/{directory.name}"))
    return entries


class Registry:
    """Thread-safe, lazy: each model loads once, on first use, onto ``placement`` (None: as loaded, CPU float32)."""

    def __init__(self, entries: list[Entry] | None = None, placement: Placement | None = None):
        self.placement = placement
        self.entries: dict[str, Entry] = {}
        self._loaded: dict[str, ModelAdapter] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        for entry in entries or []:
            self.register(entry)

    def register(self, entry: Entry) -> None:
        self.entries[entry.id] = entry

    def ids(self) -> list[str]:
        return list(self.entries)

    def info(self, model_id: str) -> ModelInfo:
        """The entry's description (no weights read); ``UnknownModel`` names the known ids."""
        return lookup(self.entries, model_id, "model", error=UnknownModel).info()

    def list(self) -> list[ModelInfo]:
        return [entry.info() for entry in self.entries.values()]

    def loaded(self) -> list[str]:
        return list(self._loaded)

    def load(self, model_id: str) -> ModelAdapter:
        info = self.info(model_id)
        if not info.available:
            raise UnavailableModel(f"model {model_id!r} is not available: {info.reason}")
        if model_id in self._loaded:
            return self._loaded[model_id]
        with self._guard:
            lock = self._locks.setdefault(model_id, threading.Lock())
        with lock:  # a second caller waits for the first load instead of loading twice
            if model_id not in self._loaded:
                log.info("loading model %s", model_id)
                adapter = self.entries[model_id].load()
                if self.placement is not None:
                    adapter.place(self.placement)
                self._loaded[model_id] = adapter
        return self._loaded[model_id]


def default_registry(allowlist: list[str] | None = None, model_root: Path | None = None,
                     zoo: Path = ZOO, placement: Placement | None = None) -> Registry:
    """Bundled pretrained models, allowlisted hub ids, local directories, the zoo; loaded onto ``placement``."""
    registry = Registry(placement=placement)
    try:
        from .hf import pretrained_entries
    except ImportError:  # pretrained support not installed
        log.warning("attnlab.models.hf unavailable; only from-scratch models are listed")
    else:
        for entry in pretrained_entries(allowlist or [], model_root):
            registry.register(entry)
    for entry in zoo_entries(zoo):
        registry.register(entry)
    return registry


_default: Registry | None = None


def load(model_id: str) -> ModelAdapter:
    """Notebook entry point: ``from attnlab.models import load; m = load("minilm")``."""
    global _default
    if _default is None:
        _default = default_registry()
    return _default.load(model_id)
