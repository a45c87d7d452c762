"""One frozen config for every from-scratch architecture, named presets, and the `Shape` that sizes any Transformer."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .names import lookup

Family = Literal["encoder", "decoder", "encoder-decoder"]
Norm = Literal["layernorm", "rmsnorm"]
NormPosition = Literal["pre", "post"]
Activation = Literal["gelu", "gelu_tanh", "relu", "swiglu"]
Positional = Literal["none", "sinusoidal", "learned", "t5_relative", "rope", "alibi"]


@dataclass(frozen=True)
class TransformerConfig:
    family: Family = "decoder"
    vocab_size: int = 256
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    n_kv_heads: int | None = None  # None = n_heads; fewer = grouped-query attention (Llama 2/3, SmolLM2)
    d_ff: int | None = None  # None = 4 * d_model, the ratio of the original Transformer and GPT-2
    n_decoder_layers: int | None = None  # encoder-decoder only; None = n_layers
    max_positions: int = 512  # the length the model was trained at (the size of a learned position table)
    # the longest input it may be run at; None: max_positions. Only for schemes without a position table
    # (every scheme but "learned"): capture and flash attention are O(T * d) in memory, so a model trained at
    # 64 tokens can be run, and its extrapolation seen, at 32,768
    max_run_positions: int | None = None
    positional: Positional = "learned"
    rope_base: float = 10000.0
    norm: Norm = "layernorm"
    norm_position: NormPosition = "pre"  # pre-norm trains stably without warmup tricks (Xiong et al. 2020)
    norm_eps: float = 1e-5
    activation: Activation = "gelu"
    bias: bool = True  # biases on linear layers (GPT-2/BERT yes, Llama no)
    dropout: float = 0.0
    attention_only: bool = False  # no feed-forward: the induction-head lab's 2-layer model
    tie_embeddings: bool = True  # output projection shares the token embedding (GPT-2, Press & Wolf 2017)
    type_vocab_size: int = 0  # BERT segment embeddings; 0 = none
    embedding_norm: bool = False  # BERT normalises the summed embeddings before layer 0
    mlm_transform: bool = False  # BERT's MLM head: dense + act + norm before the vocab projection
    final_norm: bool = True  # pre-norm stacks need one last norm before the head
    attn_backend: str = "math"
    pad_token_id: int = 0

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        if self.n_heads % self.kv_heads:
            raise ValueError(f"n_heads={self.n_heads} must be a multiple of n_kv_heads={self.kv_heads}")
        if self.positional == "rope" and self.head_dim % 2:
            raise ValueError(f"rope needs an even head_dim, got {self.head_dim}")
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "max_positions"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.max_run_positions is not None:
            if self.max_run_positions < self.max_positions:
                raise ValueError(f"max_run_positions={self.max_run_positions} must be at least "
                                 f"max_positions={self.max_positions}")
            if self.positional == "learned" and self.max_run_positions > self.max_positions:
                raise ValueError(f"max_run_positions={self.max_run_positions}: a learned position table has "
                                 f"{self.max_positions} rows; it cannot be run past them")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def ff_dim(self) -> int:
        return self.d_ff or 4 * self.d_model

    @property
    def run_positions(self) -> int:
        """The longest input this model may be run at (``max_run_positions``, else ``max_positions``)."""
        return self.max_run_positions or self.max_positions

    @property
    def decoder_layers(self) -> int:
        return self.n_decoder_layers or self.n_layers

    def replace(self, **changes: object) -> TransformerConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TransformerConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown config fields {sorted(unknown)}")
        return cls(**data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> TransformerConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))


PRESETS: dict[str, TransformerConfig] = {
    # seconds-scale tests and CPU demos
    "tiny": TransformerConfig(d_model=64, n_layers=2, n_heads=4, max_positions=256),
    "small": TransformerConfig(d_model=256, n_layers=4, n_heads=8, max_positions=1024),
    # the shapes of well-known checkpoints, so their weights import key for key
    "gpt2-small": TransformerConfig(
        vocab_size=50257, d_model=768, n_layers=12, n_heads=12, max_positions=1024,
        activation="gelu_tanh", positional="learned",
    ),
    "bert-base": TransformerConfig(
        family="encoder", vocab_size=30522, d_model=768, n_layers=12, n_heads=12, max_positions=512,
        norm_position="post", norm_eps=1e-12, type_vocab_size=2, embedding_norm=True, mlm_transform=True,
        final_norm=False,
    ),
    "t5-small": TransformerConfig(
        family="encoder-decoder", vocab_size=32128, d_model=512, n_layers=6, n_heads=8, d_ff=2048,
        positional="t5_relative", norm="rmsnorm", activation="relu", bias=False, norm_eps=1e-6,
    ),
}


def preset(name: str, **overrides: object) -> TransformerConfig:
    base = lookup(PRESETS, name, "preset")
    return base.replace(**overrides)


def parse_override(raw: str) -> object:
    """A ``--set key=value`` value from a command line: int, float, true/false/none, else the string."""
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(raw.lower(), raw)


@dataclass(frozen=True)
class Shape:
    """The handful of numbers that size a Transformer, whatever config format they came from."""

    family: str
    vocab_size: int
    d_model: int
    n_layers: int
    n_decoder_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    d_ff: int
    max_positions: int
    positional: str
    norm: str  # layernorm | rmsnorm
    norm_position: str  # pre | post
    activation: str
    bias: bool
    tie_embeddings: bool
    attention_only: bool = False
    type_vocab_size: int = 0
    lm_head: bool = True  # a bare HF encoder (BertModel) has none
    pooler: bool = False  # BertModel's [CLS] pooler: dense d x d + tanh
    final_norm: bool = True  # pre-norm stacks end with one more norm
    embedding_norm: bool = False  # BERT normalises the summed embeddings
    mlm_transform: bool = False  # BERT's MLM head: dense + act + norm, and a bias on the vocabulary projection
