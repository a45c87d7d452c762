"""One interface for every model, from scratch or pretrained.

Services talk only to ``ModelAdapter``: tokenize with offsets and special-token flags,
run a forward under capture, generate step by step with a KV cache, describe the
config. They never branch on where a model came from: what differs is stated as
capabilities (``ModelInfo.kinds``, ``ModelInfo.can_generate``, ``axis_seqs`` for the
tokens that label each axis of each kind, ``ModelAdapter.dummy_inputs``).

Inside: ``ModelInfo``, ``TokenSeq``, ``Encoded``, ``ForwardResult``, ``Candidate``,
``GenerationStep``, ``ModelAdapter`` and ``ScratchAdapter`` (the Hugging Face one is
``attnlab.models.hf.HFAdapter``).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from .architectures import Decoder, EncoderDecoder, TransformerModel, filter_logits, sample_next
from .attention import BACKENDS, use_backend
from .capture import Recorder, capture, stack_maps
from .cards import ModelCard
from .config import TransformerConfig
from .device import CPU, Placement, place
from .labels import Piece, TextStream, token_labels
from .layers import KVCache, MultiHeadAttention
from .positional import Rotary
from .tokenization import BPETokenizer

Family = Literal["encoder", "decoder", "encoder-decoder"]
DISPLAY_MODULE = "attnlab.notebook"  # draws ForwardResult.show's views (plotly, inline in Jupyter)
Source = Literal["scratch", "pretrained"]

# the attention kinds each family records, in the order a forward records them
FAMILY_KINDS: dict[str, tuple[str, ...]] = {
    "encoder": ("encoder",),
    "decoder": ("decoder",),
    "encoder-decoder": ("encoder", "decoder", "cross"),
}


@dataclass
class ModelInfo:
    """What the registry and /api/models say about a model."""

    id: str
    family: Family
    source: Source
    n_layers: int
    n_heads: int
    d_model: int
    max_positions: int  # the longest input it may be run at (413 past it)
    positional: str
    backends: list[str] = field(default_factory=lambda: list(BACKENDS))
    available: bool = True
    reason: str | None = None
    n_kv_heads: int | None = None
    vocab_size: int | None = None
    n_params: int | None = None
    description: str = ""
    # the length a from-scratch model was trained at, where it is shorter than max_positions: a position
    # scheme without a table runs past it (extrapolation); None: max_positions
    trained_positions: int | None = None
    card: ModelCard | None = None  # trained on / expects, example inputs, most telling head (models.cards)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def kinds(self) -> tuple[str, ...]:
        """The attention kinds a forward records ("encoder", "decoder", "cross")."""
        return FAMILY_KINDS.get(self.family, ())

    @property
    def can_generate(self) -> bool:
        """Whether ``ModelAdapter.generate`` works: decoders only."""
        return self.family == "decoder"


@dataclass
class TokenSeq:
    """A token sequence as every answer carries it.

    ``tokens`` are display labels (:func:`attnlab.models.labels.token_labels`), ``ids`` what the model
    sees, ``offsets`` the [start, end) characters of the text each token came from (None for a
    token the tokenizer added itself, such as BERT's [CLS]), ``special`` whether the id is a
    control id, ``segments`` 0/1 per token for a sentence pair (offsets then index each
    segment's own text). ``text`` is the text the offsets index when it is not the request's
    own: the decoded text of generated tokens.
    """

    tokens: list[str]
    ids: list[int]
    offsets: list[tuple[int, int] | None]
    special: list[bool]
    segments: list[int] | None = None
    text: str | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def fields(self, prefix: str = "", segments: bool = True) -> dict:
        """The answer fields of this sequence: ``{prefix}tokens``, ``{prefix}token_ids``,
        ``{prefix}offsets``, ``{prefix}special`` and (unless ``segments`` is False) ``{prefix}segments``."""
        out = {f"{prefix}tokens": self.tokens, f"{prefix}token_ids": self.ids,
               f"{prefix}offsets": [list(o) if o is not None else None for o in self.offsets],
               f"{prefix}special": self.special}
        if segments:
            out[f"{prefix}segments"] = self.segments
        return out


@dataclass
class Encoded:
    """A tokenised input: ids (1, T) and what the pages need to label them."""

    ids: Tensor  # (1, T)
    tokens: list[str]  # display labels
    offsets: list[tuple[int, int] | None]  # into the text (or text_pair); None: added by the tokenizer
    special: list[bool]  # by id: a control string typed in the text is special too
    segments: list[int] | None = None  # sentence pairs: 0 for text, 1 for text_pair
    token_type_ids: Tensor | None = None  # (1, T) what BERT's segment embedding reads
    attention_mask: Tensor | None = None  # (1, T)

    def __len__(self) -> int:
        return self.ids.shape[1]

    def seq(self) -> TokenSeq:
        return TokenSeq(self.tokens, self.ids[0].tolist(), self.offsets, self.special, self.segments)

    def to(self, device: torch.device) -> Encoded:
        """The same input with its tensors on ``device`` (the model's)."""
        moved = {name: t.to(device) for name in ("ids", "token_type_ids", "attention_mask")
                 if (t := getattr(self, name)) is not None}
        return replace(self, **moved)


def axis_seqs(kind: str, source: TokenSeq, target: TokenSeq | None) -> tuple[TokenSeq, TokenSeq]:
    """(query tokens, key tokens) of a map of ``kind``: the encoder's input, the decoder's target.

    Cross-attention's queries are the target and its keys the source; without a target
    (encoder, decoder-only models) both axes are the input.
    """
    target = target if target is not None else source
    return {"encoder": (source, source), "decoder": (target, target), "cross": (target, source)}.get(
        kind, (source, source))


@dataclass
class ForwardResult:
    """A forward pass under capture."""

    input: TokenSeq  # the (encoder) input tokens
    recorder: Recorder
    logits: Tensor | None
    timings: dict[str, float]
    target: TokenSeq | None = None  # encoder-decoder: the decoder's tokens (generated, then teacher-forced)

    @property
    def tokens(self) -> list[str]:
        return self.input.tokens

    @property
    def special(self) -> list[bool]:
        return self.input.special

    def axes(self, kind: str) -> tuple[TokenSeq, TokenSeq]:
        """(query tokens, key tokens) labelling the maps of ``kind`` (see ``axis_seqs``)."""
        return axis_seqs(kind, self.input, self.target)

    def maps(self, kind: str | None = None, layers: Sequence[int] | None = None, heads: Sequence[int] | None = None,
             as_numpy: bool = True):
        """Attention weights ``[L, H, Tq, Tk]`` (float32) of ``kind`` (default: the first recorded), rebuilt exactly
        from the capture; all layers and heads unless chosen. Axes are labelled by ``axes(kind)``.
        Raises KeyError for a kind or layer not recorded, IndexError for a head out of range."""
        kind = kind or self.recorder.kinds[0]
        if kind not in self.recorder.kinds:
            raise KeyError(f"no {kind!r} attention recorded; recorded kinds: {self.recorder.kinds}")
        layers = list(range(self.recorder.layers(kind))) if layers is None else list(layers)
        n_heads = self.recorder.get(kind, layers[0]).n_heads
        heads = list(range(n_heads)) if heads is None else list(heads)
        if any(not 0 <= h < n_heads for h in heads):
            raise IndexError(f"heads {heads}: a {kind} layer has heads 0:{n_heads}")
        out = stack_maps(self.recorder, kind, layers, heads)
        return out.numpy() if as_numpy else out

    def show(self, view: str = "model", **options):
        """Draw a page view inline in a notebook: ``view`` "model" (layers x heads grid) or "head".

        Needs the display layer, ``attnlab.notebook`` (plotly); this returns its figure object.
        """
        from importlib import import_module  # the display layer sits above the library, like pandas' plot backend

        return import_module(DISPLAY_MODULE).show(self, view=view, **options)


@dataclass
class Candidate:
    """One of the most likely next tokens of a step."""

    token: str  # label, as the token would read after the tokens so far
    token_id: int
    prob: float


@dataclass
class GenerationStep:
    step: int
    token_id: int
    token: str  # label as known at this step (bytes of an unfinished character read as hex)
    text: str  # the text this step completes; an unfinished character waits for its last byte
    offsets: tuple[int, int] | None  # into the generated text (a fragment has its character's span); None: control
    relabel: list[tuple[int, str]]  # earlier steps whose labels this step completed: (step, label)
    top: list[Candidate]
    recorder: Recorder  # this step's capture: the new query row is its last row
    context_len: int  # keys the new token attended to


class ModelAdapter(ABC):
    """The one interface services use."""

    info: ModelInfo

    @abstractmethod
    def tokenize(self, text: str, text_pair: str | None = None) -> Encoded: ...

    @abstractmethod
    def piece(self, token_id: int) -> Piece:
        """What one token contributes to the text: bytes for byte-level tokens, else str (for a
        special token, its vocabulary string)."""

    @abstractmethod
    def decode(self, ids: list[int]) -> str:
        """The text of ``ids``: the tokenizer's own decoding with control ids (``special_ids``) left out, as
        [CLS] and [SEP] are no part of a text. Generated and decoded target text is this, so a generated
        ``<eos>`` adds no text (its offsets are None)."""

    @property
    @abstractmethod
    def special_ids(self) -> frozenset[int]:
        """Control ids: flagged special wherever they occur, typed in the text or added. Not the unknown
        token's id (``unk_id``): that one stands for text the vocabulary lacks."""

    unk_id: int | None = None

    def labels(self, ids: list[int], raw: Sequence[str | None] | None = None) -> list[str]:
        """Display labels of a token sequence (the one rule, models.labels.token_labels). ``raw``: the text
        each token came from (None for an added one), so an unknown token shows what it replaced."""
        unknown = None
        if raw is not None and self.unk_id is not None:
            unknown = [r if i == self.unk_id else None for i, r in zip(ids, raw)]
        return token_labels([self.piece(i) for i in ids], [i in self.special_ids for i in ids], unknown)

    def text_stream(self) -> TextStream:
        """A tracker that releases generated text as characters complete."""
        return TextStream(self.decode, self.piece, self.special_ids.__contains__)

    def generated(self, ids: list[int]) -> TokenSeq:
        """Generated ids as a token sequence whose offsets index ``decode(ids)`` (None for control tokens)."""
        stream = self.text_stream()
        for i in ids:
            stream.add(i)
        return TokenSeq(stream.labels, list(ids), list(stream.offsets), [i in self.special_ids for i in ids],
                        text=self.decode(list(ids)))

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

    @property
    def kinds(self) -> tuple[str, ...]:
        return self.info.kinds

    @property
    def can_generate(self) -> bool:
        return self.info.can_generate

    @abstractmethod
    def dummy_inputs(self, ids: Tensor) -> dict[str, Tensor]:
        """Keyword arguments of ``self.model``'s forward for token ids (B, T) (profiling, benchmarks)."""

    def check_backend(self, backend: str) -> None:
        if backend not in self.info.backends:
            raise ValueError(f"model {self.info.id!r} supports backends {self.info.backends}, not {backend!r}")

    @torch.no_grad()
    def forward(self, text: str, text_pair: str | None = None, backend: str = "math",
                keep_weights: bool = False, keep_values: bool = False) -> ForwardResult:
        """Tokenise, run under capture, time both.

        ``keep_weights``: for dense answers of small inputs; a backend that computes the
        weights anyway (math) keeps them in the capture instead of them being rebuilt.
        ``keep_values``: the capture also keeps V per KV head (``attnlab.models.explain``).
        Raises ValueError for more tokens than ``info.max_positions``.
        """
        t0 = time.perf_counter()
        enc = self.tokenize(text, text_pair)
        if len(enc) > self.info.max_positions:  # the server refuses these (413); the library says why too
            raise ValueError(f"text: {len(enc)} tokens is more than model {self.info.id!r} accepts (max_positions "
                             f"{self.info.max_positions})")
        result = self.forward_encoded(enc, backend, keep_weights, keep_values)
        result.timings["tokenize_ms"] = (time.perf_counter() - t0) * 1e3 - result.timings["forward_ms"]
        return result

    @torch.no_grad()
    def forward_encoded(self, enc: Encoded, backend: str = "math", keep_weights: bool = False,
                        keep_values: bool = False) -> ForwardResult:
        """Run an input tokenised by ``tokenize`` under capture (services tokenise once, to check limits).

        ``keep_values``: the capture also keeps V per KV head (``attnlab.models.explain``).
        """
        self.check_backend(backend)
        t0 = time.perf_counter()
        enc = enc.to(self.placement.device)
        with self.using_backend(backend), capture(keep_weights=keep_weights, keep_values=keep_values) as rec:
            logits = self._forward(enc)
        return ForwardResult(enc.seq(), rec, logits, {"forward_ms": (time.perf_counter() - t0) * 1e3})

    @torch.no_grad()
    def generate(self, prompt: str, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, seed: int = 0, backend: str = "math", n_top: int = 5,
                 stop_at_eos: bool = True) -> Iterator[GenerationStep]:
        """Yield one captured step per new token (KV cache; deterministic for a seed).

        Each step carries the text it completes and its offsets into the generated text
        (``decode`` of the generated ids), and labels its top-k candidates as they would read
        after the tokens so far.
        """
        if not self.can_generate:
            raise ValueError(f"model {self.info.id!r} is an {self.info.family}; generation needs a decoder")
        self.check_backend(backend)
        generator = torch.Generator().manual_seed(seed)
        ids = self.tokenize(prompt).ids.to(self.placement.device)
        cache = None
        context = ids.shape[1]
        stream = self.text_stream()
        for step in range(max_new_tokens):
            with self.using_backend(backend), capture() as rec:
                logits, cache = self._step(ids, cache)
            # the distribution shown is the model's at this temperature (greedy shows temperature 1)
            probs = filter_logits(logits, temperature if temperature > 0 else 1.0, None, None).softmax(-1)[0]
            top = torch.topk(probs, min(n_top, probs.shape[-1]))
            # sampled on CPU in float32 with a CPU generator: the same tokens for a seed on any device
            next_id = sample_next(logits.float().cpu(), temperature, top_k, top_p, generator)
            token_id = int(next_id[0, 0])
            candidates = [Candidate(stream.label_next(int(i)), int(i), float(p))
                          for p, i in zip(top.values, top.indices)]
            new = stream.add(token_id)
            yield GenerationStep(step, token_id, new.label, new.text, new.offsets, new.relabel, candidates, rec,
                                 context)
            context += 1
            ids = next_id.to(self.placement.device)
            if stop_at_eos and token_id == self.eos_token_id:
                return
            if context >= self.info.max_positions:
                return

    eos_token_id: int | None = None
    placement: Placement = CPU  # where the model and its inputs live; Registry(placement=...) moves it

    def place(self, placement: Placement) -> None:
        """Move the model to a device and dtype (``attnlab.models.device``); inputs follow it."""
        place(self.model, placement)
        self.placement = placement

    def output_projection(self, kind: str, layer: int) -> tuple[Tensor, Tensor | None]:
        """W_O of one attention layer as (weight (d_model, H * hd), bias (d_model,) or None), read from the model.

        Head h's slice is ``weight[:, h * hd:(h + 1) * hd]``: the block output is
        ``sum_h weight_h @ out_h + bias`` (Vaswani et al. 2017, arXiv 1706.03762, multi-head attention).
        Raises KeyError for a (kind, layer) the model does not have.
        """
        raise NotImplementedError(f"model {self.info.id!r}: no output projection lookup")

    def unrotate(self, x: Tensor, positions: Tensor) -> Tensor | None:
        """Queries or keys (B, H, T, hd) before the rotary embedding at ``positions`` (T,), or None when the
        model uses no rotary embedding (RoPE: Su et al. 2021, arXiv 2104.09864; a rotation, so its inverse is
        the rotation by minus the angle)."""
        return None


def trained_positions(cfg: TransformerConfig) -> int | None:
    """The training length of a from-scratch config that may run past it, else None."""
    return cfg.max_positions if cfg.run_positions > cfg.max_positions else None


def scratch_description(cfg: TransformerConfig, description: str) -> str:
    """A checkpoint's description, plus its training length where it may run past it."""
    trained = trained_positions(cfg)
    if not trained:
        return description
    return f"{description}; {cfg.positional} positions, trained at {trained} tokens, runs to {cfg.run_positions:,}"


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
            d_model=cfg.d_model, max_positions=cfg.run_positions, positional=cfg.positional,
            n_kv_heads=cfg.kv_heads, vocab_size=cfg.vocab_size, n_params=model.num_parameters(),
            description=scratch_description(cfg, description), trained_positions=trained_positions(cfg),
        )
        specials = getattr(tokenizer, "special_ids", {}) or {}
        self.eos_token_id = specials.get("<eos>")
        self.bos_token_id = specials.get("<bos>")
        # <unk> stands for a character the vocabulary lacks; a byte-level BPE covers every byte and never emits
        # it for text, so there it stays a control token
        self.unk_id = None if isinstance(tokenizer, BPETokenizer) else specials.get("<unk>")

    def describe(self) -> dict:
        return {**self.info.to_dict(), "config": self.model.config.to_dict()}

    def tokenize(self, text: str, text_pair: str | None = None) -> Encoded:
        """Our tokenizers add no tokens: every offset indexes the text (or, with a pair, text_pair)."""
        ids, offsets = self.tokenizer.encode_with_offsets(text)
        segments = None
        if text_pair is not None:
            pair_ids, pair_offsets = self.tokenizer.encode_with_offsets(text_pair)
            segments = [0] * len(ids) + [1] * len(pair_ids)
            ids, offsets = ids + pair_ids, offsets + pair_offsets
        if not ids:
            raise ValueError("text: no tokens after tokenisation")
        special = [i in self.special_ids for i in ids]
        offsets = [tuple(o) for o in offsets]
        texts = (text, text_pair or "")
        raw = [texts[seg][s:e] for seg, (s, e) in zip(segments or [0] * len(ids), offsets)]
        return Encoded(torch.tensor([ids]), self.labels(ids, raw), offsets, special, segments)

    def piece(self, token_id: int) -> Piece:
        return self.tokenizer.piece(token_id)

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode([i for i in ids if i not in self.special_ids])

    @cached_property
    def special_ids(self) -> frozenset[int]:
        return frozenset((getattr(self.tokenizer, "special_ids", {}) or {}).values()) - {self.unk_id}

    def dummy_inputs(self, ids: Tensor) -> dict[str, Tensor]:
        if self.info.family == "encoder-decoder":
            return {"src": ids, "tgt": ids[:, : max(2, ids.shape[1] // 2)]}
        return {"ids": ids}

    def _forward(self, enc: Encoded) -> Tensor | None:
        return self.model(enc.ids, attention_mask=enc.attention_mask).logits

    @torch.no_grad()
    def forward_encoded(self, enc: Encoded, backend: str = "math", keep_weights: bool = False,
                        keep_values: bool = False) -> ForwardResult:
        if not isinstance(self.model, EncoderDecoder):
            return super().forward_encoded(enc, backend, keep_weights, keep_values)
        # encoder-decoder: decode greedily first, then capture one teacher-forced pass
        # over the source and the generated target (encoder, decoder and cross maps)
        self.check_backend(backend)
        t0 = time.perf_counter()
        enc = enc.to(self.placement.device)
        with self.using_backend(backend):
            target = self.model.generate(enc.ids, self.bos_token_id or 0, self.eos_token_id,
                                         max_new_tokens=min(2 * enc.ids.shape[1] + 2, self.info.max_positions - 1))
            t1 = time.perf_counter()
            with capture(keep_weights=keep_weights, keep_values=keep_values) as rec:
                logits = self.model(enc.ids, target).logits
        t2 = time.perf_counter()
        return ForwardResult(enc.seq(), rec, logits, {"generate_ms": (t1 - t0) * 1e3, "forward_ms": (t2 - t1) * 1e3},
                             target=self.decoder_target(target[0].tolist()))

    def output_projection(self, kind: str, layer: int) -> tuple[Tensor, Tensor | None]:
        for module in self.model.modules():
            if isinstance(module, MultiHeadAttention) and module.kind == kind and module.layer == layer:
                return module.o_proj.weight, module.o_proj.bias
        raise KeyError(f"model {self.info.id!r} has no {kind} attention at layer {layer}")

    def unrotate(self, x: Tensor, positions: Tensor) -> Tensor | None:
        rope = next((m for m in self.model.modules() if isinstance(m, Rotary)), None)
        return None if rope is None else rope.rotate(x, -positions)

    def decoder_target(self, ids: list[int]) -> TokenSeq:
        """The decoder's tokens: the start token (which the model did not generate: offsets None),
        then the generated ones, whose offsets index their decoded text (control tokens such as
        ``<eos>`` are no part of it: offsets None, as for the start token)."""
        generated = self.generated(ids[1:])
        return TokenSeq(self.labels(ids), ids, [None, *generated.offsets], [i in self.special_ids for i in ids],
                        text=generated.text)

    def _step(self, ids: Tensor, cache: object | None) -> tuple[Tensor, object]:
        assert isinstance(self.model, Decoder)
        cache = cache if cache is not None else KVCache()
        logits = self.model(ids, cache=cache).logits[:, -1]
        return logits, cache
