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
from collections.abc import Callable, Sequence
from pathlib import Path

from .adapter import ModelAdapter, ModelInfo, ScratchAdapter, scratch_description, trained_positions
from .cards import PRETRAINED_CARDS, load_card
from .catalogue import Entry, UnavailableModel, UnknownModel
from .device import Placement
from .names import lookup
from .paths import USER_PREFIX, ZOO, labs_dir

log = logging.getLogger(__name__)


def scratch_entry(model_id: str, directory: Path, description: str = "") -> Entry:
    """A from-scratch checkpoint directory (config.json + model.safetensors + tokenizer)."""

    def info() -> ModelInfo:
        from .config import TransformerConfig

        cfg = TransformerConfig.load(directory / "config.json")
        return ModelInfo(id=model_id, family=cfg.family, source="scratch", n_layers=cfg.n_layers,
                         n_heads=cfg.n_heads, d_model=cfg.d_model, max_positions=cfg.run_positions,
                         positional=cfg.positional, n_kv_heads=cfg.kv_heads, vocab_size=cfg.vocab_size,
                         description=scratch_description(cfg, description), trained_positions=trained_positions(cfg),
                         card=load_card(directory))

    def load() -> ModelAdapter:
        from .architectures import load_model
        from .tokenization import load_tokenizer

        return ScratchAdapter(model_id, load_model(directory), load_tokenizer(directory), description, directory)

    return Entry(model_id, info, load)


def zoo_entries(zoo: Path = ZOO, prefix: str = "", where: str = "models/zoo") -> list[Entry]:
    """Every trained checkpoint under ``zoo/<name>/`` (written by `attnlab lab`), as ``<prefix><name>``, and each
    variant a lab keeps in a sub-directory as ``<prefix><name>-<variant>`` (``extrapolation-sinusoidal``, ...)."""
    entries = []
    zoo = Path(zoo)
    for config in sorted([*zoo.glob("*/config.json"), *zoo.glob("*/*/config.json")]):
        directory = config.parent
        if not (directory / "model.safetensors").exists():
            continue
        relative = directory.relative_to(zoo)
        entries.append(scratch_entry(prefix + "-".join(relative.parts), directory,
                                     f"from-scratch checkpoint {where}/{relative.as_posix()}"))
    return entries


def user_lab_entries(root: Path | None = None) -> list[Entry]:
    """The user's own lab runs (``labs_dir()/<name>``, written by `attnlab lab NAME`), as ``my-<name>``:
    listed beside the bundled zoo's ``<name>``, which stays the shipped result."""
    root = Path(root) if root is not None else labs_dir()
    return zoo_entries(root, USER_PREFIX, str(root))


class ModelPathError(ValueError):
    """A model directory named at start (``attnlab serve --model PATH``) that cannot be served; says why."""


def path_entry(path: Path | str) -> Entry:
    """A model directory the operator named at start: a ``save_pretrained`` directory (its ``config.json`` has
    ``model_type``) or a from-scratch checkpoint (``config.json`` with ``family``, ``model.safetensors``).

    The operator's explicit choice, so it may lie outside the model root; requests name it only by its id,
    the directory's name, never by path. Hugging Face directories load with ``local_files_only`` and never
    with remote code (``attnlab.models.hf.load_hf``). Reads the config only; raises ``ModelPathError``.
    """
    import json
    import os

    named = Path(os.path.abspath(Path(path).expanduser()))  # its name is the id, also for a symlink
    directory = named.resolve()
    config = directory / "config.json"
    if not config.is_file():
        raise ModelPathError(f"--model {path}: no config.json in {directory} (a save_pretrained directory or an "
                             "attnlab checkpoint)")
    try:
        cfg = json.loads(config.read_text())
    except (OSError, ValueError) as exc:
        raise ModelPathError(f"--model {path}: config.json is not readable JSON ({exc})") from None
    description = f"model directory {named.name} (attnlab serve --model)"  # never the path: clients read it
    if isinstance(cfg, dict) and "model_type" in cfg:
        from .hf.sources import directory_entry

        return directory_entry(named.name, directory, description)
    if isinstance(cfg, dict) and "family" in cfg and (directory / "model.safetensors").is_file():
        return scratch_entry(named.name, directory, description)
    raise ModelPathError(f"--model {path}: config.json has neither model_type (Hugging Face) nor family and "
                         "model.safetensors (attnlab checkpoint)")


def path_entries(paths: Sequence[Path | str]) -> list[Entry]:
    """``path_entry`` of each path; ``ModelPathError`` when two directories share a name (their id)."""
    entries: dict[str, Entry] = {}
    for path in paths:
        entry = path_entry(path)
        if entry.id in entries:
            raise ModelPathError(f"--model {path}: another directory is also named {entry.id!r} (a model's id is "
                                 "its directory's name)")
        entries[entry.id] = entry
    return list(entries.values())


def _with_card(info: ModelInfo) -> ModelInfo:
    """The info with the bundled card of its id when its entry gave none (pretrained models)."""
    if info.card is None and info.id in PRETRAINED_CARDS:
        info.card = PRETRAINED_CARDS[info.id]
    return info


class Registry:
    """Thread-safe, lazy: each model loads once, on first use, onto ``placement`` (None: as loaded, CPU float32)."""

    def __init__(self, entries: list[Entry] | None = None, placement: Placement | None = None):
        self.placement = placement
        self.entries: dict[str, Entry] = {}
        self._loaded: dict[str, ModelAdapter] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._watched: list[Callable[[], list[Entry]]] = []
        for entry in entries or []:
            self.register(entry)

    def register(self, entry: Entry) -> None:
        self.entries[entry.id] = entry

    def watch(self, source: Callable[[], list[Entry]]) -> None:
        """Register ``source()``'s entries now, and again whenever the models are listed or an unknown id is
        asked for: a folder that gains models while the server runs (the user's lab runs, ``my-<name>``) is
        served without a restart. Entries already registered are kept as they are."""
        self._watched.append(source)
        self.refresh()

    def refresh(self) -> list[str]:
        """Register what the watched sources hold that is not registered yet; returns the new ids."""
        new = []
        for source in self._watched:
            for entry in source():
                if entry.id not in self.entries:
                    self.register(entry)
                    new.append(entry.id)
        if new:
            log.info("models added since start: %s", ", ".join(new))
        return new

    def ids(self) -> list[str]:
        return list(self.entries)

    def info(self, model_id: str) -> ModelInfo:
        """The entry's description (no weights read); ``UnknownModel`` names the known ids."""
        if model_id not in self.entries:
            self.refresh()
        return _with_card(lookup(self.entries, model_id, "model", error=UnknownModel).info())

    def list(self) -> list[ModelInfo]:
        self.refresh()
        return [_with_card(entry.info()) for entry in self.entries.values()]

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
                     zoo: Path = ZOO, user_labs: Path | None = None,
                     model_paths: Sequence[Path | str] = (), placement: Placement | None = None) -> Registry:
    """Bundled pretrained models, allowlisted hub ids, local directories, the zoo, the user's lab runs
    (``user_labs``, default ``labs_dir()``, listed as ``my-<name>``), and the directories named at start
    (``model_paths``: ``path_entries``; one named like another model replaces it, the operator's explicit choice).
    Models load onto ``placement`` (None: as loaded, CPU float32)."""
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
    registry.watch(lambda: user_lab_entries(user_labs))  # a lab run while the server runs is listed at once
    for entry in path_entries(model_paths):
        if entry.id in registry.entries:
            log.warning("model %s: the directory named at start replaces the registered one", entry.id)
        registry.register(entry)
    return registry


_default: Registry | None = None


def load(model_id: str) -> ModelAdapter:
    """Notebook entry point: ``from attnlab.models import load; m = load("minilm")``."""
    global _default
    if _default is None:
        _default = default_registry()
    return _default.load(model_id)
