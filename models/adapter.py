"""One interface for every model, from scratch or pretrained.

Services talk only to ``ModelAdapter``: tokenize with offsets and special-token flags,
run a forward under capture, generate step by step with a KV cache, describe the
config. They never branch on where a model came from.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Literal

import torch
from torch import Tensor

from .architectures import Decoder, EncoderDecoder, TransformerModel, filter_logits, sample_next
from .attention import BACKENDS, use_backend
from .capture import Recorder, capture
from .layers import KVCache

Family = Literal["encoder", "decoder", "encoder-decoder"]
Source = Literal["scratch", "pretrained"]


@dataclass
class ModelInfo:
    """What the registry and /api/models say about a model."""

    id: str
    family: Family
    source: Source
    n_layers: int
    n_heads: int
    d_model: int
    max_positions: int
    positional: str
    backends: list[str] = field(default_factory=lambda: list(BACKENDS))
    available: bool = True
    reason: str | None = None
    n_kv_heads: int | None = None
    vocab_size: int | None = None
    n_params: int | None = None
    description: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Encoded:
    """A tokenised input: ids (1, T) and what the pages need to label them."""

    ids: Tensor  # (1, T)
    tokens: list[str]
    offsets: list[tuple[int, int]]
    special: list[bool]
    segments: Tensor | None = None  # (1, T) BERT segment ids
    attention_mask: Tensor | None = None  # (1, T)

    def __len__(self) -> int:
        return self.ids.shape[1]


@dataclass
class ForwardResult:
    """A forward pass under capture."""

    tokens: list[str]  # the (encoder) input tokens
    recorder: Recorder
    logits: Tensor | None
    timings: dict[str, float]
    target_tokens: list[str] | None = None  # encoder-decoder: the decoder's tokens
    special: list[bool] | None = None


@dataclass
class GenerationStep:
    step: int
    token_id: int
    token: str
    top: list[tuple[str, float]]  # (token, probability) of the most likely next tokens
    recorder: Recorder  # this step's capture: the new query row is its last row
    context_len: int  # keys the new token attended to


def display_tokens(raw: list[str], texts: list[str], special: list[bool]) -> list[str]:
    """How tokens are shown: the text each one decodes to (" is", not byte-level BPE's "Ġis"),
    but WordPiece continuations ("##ing") and special tokens ("[CLS]", "<bos>") as they are."""
    return [r if s or r.startswith("##") else t for r, t, s in zip(raw, texts, special)]


class ModelAdapter(ABC):
    """The one interface services use."""

    info: ModelInfo

    @abstractmethod
    def tokenize(self, text: str, text_pair: str | None = None) -> Encoded: ...

    @abstractmethod
    def token_text(self, token_id: int) -> str:
        """How one token id reads (for generation traces)."""

    def using_backend(self, name: str):
        """A context in which this model's attention runs on ``name`` (this thread only)."""
        return use_backend(name)

    @abstractmethod
    def _forward(self, enc: Encoded) -> Tensor | None:
        """Run the model on an encoded input; return logits (1, T, V) if it has a head."""

    @abstractmethod
    def _step(self, ids: Tensor, cache: object | None) -> tuple[Tensor, object]:
        """One decoding step: logits of the last position (1, V) and the updated cache."""

    def describe(self) -> dict:
        """The config of the model, for the architecture page."""
        return self.info.to_dict()

    def check_backend(self, backend: str) -> None:
        if backend not in self.info.backends:
            raise ValueError(f"model {self.info.id!r} supports backends {self.info.backends}, not {backend!r}")

    @torch.no_grad()
    def forward(self, text: str, text_pair: str | None = None, backend: str = "math",
                keep_weights: bool = False) -> ForwardResult:
        """Tokenise, run under capture, time both.

        ``keep_weights``: for dense answers of small inputs; a backend that computes the
        weights anyway (math) keeps them in the capture instead of them being rebuilt.
        """
        t0 = time.perf_counter()
        enc = self.tokenize(text, text_pair)
        result = self.forward_encoded(enc, backend, keep_weights)
        result.timings["tokenize_ms"] = (time.perf_counter() - t0) * 1e3 - result.timings["forward_ms"]
        return result

    @torch.no_grad()
    def forward_encoded(self, enc: Encoded, backend: str = "math", keep_weights: bool = False) -> ForwardResult:
        """Run an input tokenised by ``tokenize`` under capture (services tokenise once, to check limits)."""
        self.check_backend(backend)
        t0 = time.perf_counter()
        with self.using_backend(backend), capture(keep_weights=keep_weights) as rec:
            logits = self._forward(enc)
        return ForwardResult(enc.tokens, rec, logits, {"forward_ms": (time.perf_counter() - t0) * 1e3},
                             special=enc.special)

    @torch.no_grad()
    def generate(self, prompt: str, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, seed: int = 0, backend: str = "math", n_top: int = 5,
                 stop_at_eos: bool = True) -> Iterator[GenerationStep]:
        """Yield one captured step per new token (KV cache; deterministic for a seed)."""
        if self.info.family != "decoder":
            raise ValueError(f"model {self.info.id!r} is an {self.info.family}; generation needs a decoder")
        self.check_backend(backend)
        generator = torch.Generator().manual_seed(seed)
        ids = self.tokenize(prompt).ids
        cache = None
        context = ids.shape[1]
        for step in range(max_new_tokens):
            with self.using_backend(backend), capture() as rec:
                logits, cache = self._step(ids, cache)
            # the distribution shown is the model's at this temperature (greedy shows temperature 1)
            probs = filter_logits(logits, temperature if temperature > 0 else 1.0, None, None).softmax(-1)[0]
            top = torch.topk(probs, min(n_top, probs.shape[-1]))
            next_id = sample_next(logits, temperature, top_k, top_p, generator)
            token_id = int(next_id[0, 0])
            yield GenerationStep(step, token_id, self.token_text(token_id),
                                 [(self.token_text(int(i)), float(p)) for p, i in zip(top.values, top.indices)],
                                 rec, context)
            context += 1
            ids = next_id
            if stop_at_eos and token_id == self.eos_token_id:
                return
            if context >= self.info.max_positions:
                return

    eos_token_id: int | None = None


class ScratchAdapter(ModelAdapter):
    """A from-scratch model with one of our tokenizers."""

    def __init__(self, model_id: str, model: TransformerModel, tokenizer, description: str = "",
                 path: Path | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.path = path
        cfg = model.config
        self.info = ModelInfo(
            id=model_id, family=cfg.family, source="scratch", n_layers=cfg.n_layers, n_heads=cfg.n_heads,
            d_model=cfg.d_model, max_positions=cfg.max_positions, positional=cfg.positional,
            n_kv_heads=cfg.kv_heads, vocab_size=cfg.vocab_size, n_params=model.num_parameters(),
            description=description,
        )
        specials = getattr(tokenizer, "special_ids", {}) or {}
        self.eos_token_id = specials.get("<eos>")
        self.bos_token_id = specials.get("<bos>")

    def describe(self) -> dict:
        return {**self.info.to_dict(), "config": self.model.config.to_dict()}

    def tokenize(self, text: str, text_pair: str | None = None) -> Encoded:
        ids, offsets = self.tokenizer.encode_with_offsets(text)
        if text_pair is not None:
            pair_ids, pair_offsets = self.tokenizer.encode_with_offsets(text_pair)
            ids, offsets = ids + pair_ids, offsets + pair_offsets
        if not ids:
            raise ValueError("text: no tokens after tokenisation")
        special = [i in self._special_ids() for i in ids]
        tokens = display_tokens([self.tokenizer.id_to_token(i) for i in ids], [self.token_text(i) for i in ids], special)
        return Encoded(torch.tensor([ids]), tokens, [tuple(o) for o in offsets], special)

    def token_text(self, token_id: int) -> str:
        return self.tokenizer.decode([token_id])

    def _special_ids(self) -> set[int]:
        return set((getattr(self.tokenizer, "special_ids", {}) or {}).values())

    def _forward(self, enc: Encoded) -> Tensor | None:
        return self.model(enc.ids, attention_mask=enc.attention_mask).logits

    @torch.no_grad()
    def forward_encoded(self, enc: Encoded, backend: str = "math", keep_weights: bool = False) -> ForwardResult:
        if not isinstance(self.model, EncoderDecoder):
            return super().forward_encoded(enc, backend, keep_weights)
        # encoder-decoder: decode greedily first, then capture one teacher-forced pass
        # over the source and the generated target (encoder, decoder and cross maps)
        self.check_backend(backend)
        t0 = time.perf_counter()
        with self.using_backend(backend):
            target = self.model.generate(enc.ids, self.bos_token_id or 0, self.eos_token_id,
                                         max_new_tokens=min(2 * enc.ids.shape[1] + 2, self.info.max_positions - 1))
            t1 = time.perf_counter()
            with capture(keep_weights=keep_weights) as rec:
                logits = self.model(enc.ids, target).logits
        t2 = time.perf_counter()
        return ForwardResult(enc.tokens, rec, logits, {"generate_ms": (t1 - t0) * 1e3, "forward_ms": (t2 - t1) * 1e3},
                             target_tokens=[self.tokenizer.id_to_token(int(i)) if int(i) in self._special_ids()
                                            else self.token_text(int(i)) for i in target[0]],
                             special=enc.special)

    def _step(self, ids: Tensor, cache: object | None) -> tuple[Tensor, object]:
        assert isinstance(self.model, Decoder)
        cache = cache if cache is not None else KVCache()
        logits = self.model(ids, cache=cache).logits[:, -1]
        return logits, cache
