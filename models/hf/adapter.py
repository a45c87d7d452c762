"""A ``transformers`` model and tokenizer behind ``ModelAdapter``, and loading one from disk.

``HFAdapter`` runs its model under ``attn_implementation="attnlab"`` (``attnlab.models.hf.bridge``),
so every forward records into the current capture and runs on the chosen backend.
``load_hf`` loads from a local directory only: never the network, never remote code.
``transformers`` is imported inside functions: importing this module stays cheap.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from functools import cached_property
from pathlib import Path

import torch
from torch import Tensor

from ..adapter import Encoded, Family, ModelAdapter
from ..attention import active_backend, use_backend
from ..labels import Piece, TextStream, byte_level_piece
from .bridge import ATTN_IMPLEMENTATION, register_attention
from .config import family_of, info_from_config, read_config

log = logging.getLogger(__name__)

# transformers resolves its names lazily on first use; two threads loading two models at once (a server's first
# requests) could meet a half-initialised module ("cannot import name 'AutoModel'"): the first imports of the
# loaders run one at a time
TRANSFORMERS_IMPORT_LOCK = threading.Lock()


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

    def dummy_inputs(self, ids: Tensor) -> dict[str, Tensor]:
        return {"input_ids": ids}

    def decode(self, ids: list[int]) -> str:
        # control ids left out before decoding (not skip_special_tokens, which would drop [UNK] too)
        return self.tokenizer.decode([i for i in ids if i not in self.special_ids])

    def text_stream(self) -> TextStream:
        stream = super().text_stream()
        stream.fffd_per_byte = '"ByteFallback"' in self._decoder_types
        return stream

    # the output projection's name inside an attention module (Llama, GPT-2, BART/T5-style), else in its
    # parent (BERT keeps it beside the attention module, as `output.dense`)
    _O_PROJ_NAMES = ("o_proj", "c_proj", "out_proj", "o", "output.dense", "dense")

    @cached_property
    def _attention_modules(self) -> dict[int, tuple[torch.nn.Module, torch.nn.Module | None]]:
        """{layer: (attention module, its parent)}: the modules transformers numbers with ``layer_idx``."""
        out: dict[int, tuple[torch.nn.Module, torch.nn.Module | None]] = {}
        parents = {id(child): mod for mod in self.model.modules() for child in mod.children()}
        for module in self.model.modules():
            idx = getattr(module, "layer_idx", None)
            is_attention = type(module).__name__.endswith("Attention")  # not the decoder layer holding it
            if is_attention and isinstance(idx, int) and not getattr(module, "is_cross_attention", False) \
                    and idx not in out:
                out[idx] = (module, parents.get(id(module)))
        return out

    def output_projection(self, kind: str, layer: int) -> tuple[Tensor, Tensor | None]:
        if kind not in self.kinds or kind == "cross" or layer not in self._attention_modules:
            raise KeyError(f"model {self.info.id!r} has no {kind} attention at layer {layer}")
        module, parent = self._attention_modules[layer]
        for owner in (module, parent):
            for name in self._O_PROJ_NAMES:
                proj = owner.get_submodule(name) if owner is not None and _has(owner, name) else None
                if proj is None or not hasattr(proj, "weight"):
                    continue
                # torch Linear keeps (out, in); GPT-2's Conv1D keeps (in, out)
                weight = proj.weight if isinstance(proj, torch.nn.Linear) else proj.weight.T
                return weight, proj.bias
        raise KeyError(f"model {self.info.id!r}: no output projection found for layer {layer}")

    def unrotate(self, x: Tensor, positions: Tensor) -> Tensor | None:
        rotary = next((m for name, m in self.model.named_modules() if name.endswith("rotary_emb")), None)
        if rotary is None:
            return None
        # transformers' rotary: x * cos + rotate_half(x) * sin, both scaled by attention_scaling (s); rotating
        # by minus the angle gives s^2 x back
        cos, sin = rotary(x, (-positions)[None])
        cos, sin = cos[0].to(x.dtype), sin[0].to(x.dtype)  # (T, hd): broadcast over x's leading dims
        half = x.shape[-1] // 2
        rotated_half = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        scaling = float(getattr(rotary, "attention_scaling", 1.0))
        return (x * cos + rotated_half * sin) / scaling**2

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


def _has(module: torch.nn.Module, name: str) -> bool:
    try:
        module.get_submodule(name)
    except AttributeError:
        return False
    return True


def load_hf(model_id: str, source: Path, description: str = "", family: Family | None = None,
            dtype: torch.dtype = torch.float32) -> HFAdapter:
    """Load a Hugging Face model from a local directory (a model dir, a cache snapshot), offline.

    float32 by default: on CPU it is exact against eager references (SmolLM2 135M
    takes ~0.55 GB, MiniLM ~90 MB). Never runs remote code, never downloads.
    """
    with TRANSFORMERS_IMPORT_LOCK:
        from transformers import AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

    t0 = time.perf_counter()
    config_dict = read_config(source)
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

