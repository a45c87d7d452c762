"""Encoder (BERT-style), Decoder (GPT-style) and EncoderDecoder (T5-style).

They differ by masks, heads and wiring, not by copies of code: all three are stacks of
the same ``Block``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .attention import MaskPattern, get_backend
from .config import TransformerConfig
from .layers import ACTIVATIONS, AttentionContext, Block, KVCache, make_norm
from .positional import PositionalScheme, make_positional


@dataclass
class ModelOutput:
    logits: Tensor | None  # (B, T, vocab)
    hidden: Tensor  # (B, T, d_model) last hidden state (after the final norm when there is one)
    hidden_states: list[Tensor] | None = None  # input to every layer, then the last output
    cache: KVCache | None = None
    loss: Tensor | None = None


class Embeddings(nn.Module):
    """Token (+ segment) (+ absolute position) embeddings, optionally normalised (BERT)."""

    def __init__(self, cfg: TransformerConfig, positional: PositionalScheme):
        super().__init__()
        self.tokens = nn.Embedding(cfg.vocab_size, cfg.d_model)
        nn.init.normal_(self.tokens.weight, std=0.02)
        self.segments = nn.Embedding(cfg.type_vocab_size, cfg.d_model) if cfg.type_vocab_size else None
        self.positional = positional
        self.norm = make_norm(cfg) if cfg.embedding_norm else None
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, ids: Tensor, positions: Tensor, segments: Tensor | None = None) -> Tensor:
        x = self.tokens(ids)
        pos = self.positional.embed(positions)
        if pos is not None:
            x = x + pos.to(x.dtype)
        if self.segments is not None:
            x = x + self.segments(segments if segments is not None else torch.zeros_like(ids))
        if self.norm is not None:
            x = self.norm(x)
        return self.dropout(x)


class Stack(nn.Module):
    """Embeddings + positional scheme + N blocks + final norm. Shared by all three models."""

    def __init__(self, cfg: TransformerConfig, kind: str, n_layers: int, causal: bool, cross: bool = False):
        super().__init__()
        self.kind, self.causal = kind, causal
        positional = make_positional(
            cfg.positional, d_model=cfg.d_model, n_heads=cfg.n_heads, max_positions=cfg.max_positions,
            head_dim=cfg.head_dim, causal=causal, base=cfg.rope_base,
        )
        self.embed = Embeddings(cfg, positional)
        self.blocks = nn.ModuleList(Block(cfg, kind, i, cross=cross) for i in range(n_layers))
        self.final_norm = make_norm(cfg) if cfg.final_norm else None
        self.gradient_checkpointing = False
        self.pattern: MaskPattern | None = None

    @property
    def positional(self) -> PositionalScheme:
        return self.embed.positional

    def context(self, positions: Tensor, key_padding: Tensor | None) -> AttentionContext:
        rotary = self.positional if self.positional.name == "rope" else None
        return AttentionContext(self.causal, positions, key_padding, self.positional.bias(), rotary, self.pattern)

    def forward(self, ids: Tensor, key_padding: Tensor | None = None, segments: Tensor | None = None,
                memory: Tensor | None = None, memory_padding: Tensor | None = None,
                cache: KVCache | None = None, keep_hidden: bool = False) -> tuple[Tensor, list[Tensor] | None]:
        past = cache.length() if cache is not None else 0
        positions = torch.arange(past, past + ids.shape[1], device=ids.device)
        x = self.embed(ids, positions, segments)
        ctx = self.context(positions, key_padding)
        memory_ctx = None
        if memory is not None:
            memory_ctx = AttentionContext(False, positions, memory_padding)
        hidden = [x] if keep_hidden else None
        for block in self.blocks:
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                # recompute the block in backward instead of storing its activations
                x = checkpoint(block, x, ctx, memory, memory_ctx, cache, use_reentrant=False)
            else:
                x = block(x, ctx, memory, memory_ctx, cache)
            if hidden is not None:
                hidden.append(x)
        if self.final_norm is not None:
            x = self.final_norm(x)
            if hidden is not None:
                hidden[-1] = x
        return x, hidden


class TransformerModel(nn.Module):
    """Shared behaviour: backend switch, sparse pattern, checkpointing, save/load."""

    config: TransformerConfig

    def stacks(self) -> list[Stack]:
        return [m for m in self.modules() if isinstance(m, Stack)]

    def set_backend(self, name: str) -> None:
        """Switch every attention call to another kernel (math / sdpa / flash)."""
        get_backend(name)  # fail early on an unknown name
        for module in self.modules():
            if hasattr(module, "backend") and hasattr(module, "q_proj"):
                module.backend = name

    @property
    def backend(self) -> str:
        return next(m.backend for m in self.modules() if hasattr(m, "q_proj"))

    def set_pattern(self, pattern: MaskPattern | None) -> None:
        """Use a sparse attention pattern (Longformer, BigBird) for self-attention."""
        for stack in self.stacks():
            stack.pattern = pattern

    def set_gradient_checkpointing(self, enabled: bool = True) -> None:
        for stack in self.stacks():
            stack.gradient_checkpointing = enabled

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def save(self, directory: str | Path, dtype: torch.dtype | None = None) -> None:
        """safetensors weights + JSON config; tied weights are stored once."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.config.save(directory / "config.json")
        state = {}
        tied = self.tied_names()  # re-tied by the constructor on load
        for name, tensor in self.state_dict().items():
            if name in tied:
                continue
            t = tensor.detach().contiguous()
            state[name] = t.to(dtype) if dtype is not None and t.is_floating_point() else t
        save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt", "family": self.config.family})

    @classmethod
    def load(cls, directory: str | Path, map_location: str = "cpu") -> TransformerModel:
        directory = Path(directory)
        config = TransformerConfig.load(directory / "config.json")
        model = MODEL_CLASSES[config.family](config)
        state = load_file(str(directory / "model.safetensors"), device=map_location)
        reference = model.state_dict()
        state = {k: v.to(reference[k].dtype) for k, v in state.items()}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if set(missing) - model.tied_names() or unexpected:
            raise ValueError(f"checkpoint {directory} does not match its config: missing {missing}, "
                             f"unexpected {unexpected}")
        return model

    def tied_names(self) -> set[str]:
        """State-dict names that alias an earlier tensor (tied embeddings), stored once."""
        seen: set[int] = set()
        tied = set()
        for name, tensor in self.state_dict().items():
            if tensor.data_ptr() in seen:
                tied.add(name)
            seen.add(tensor.data_ptr())
        return tied

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)


class LMHead(nn.Module):
    """Vocabulary projection, with BERT's optional dense + act + norm transform first."""

    def __init__(self, cfg: TransformerConfig, embedding: nn.Embedding):
        super().__init__()
        self.transform = nn.Linear(cfg.d_model, cfg.d_model) if cfg.mlm_transform else None
        self.act = ACTIVATIONS["gelu" if cfg.activation == "swiglu" else cfg.activation]
        self.norm = make_norm(cfg) if cfg.mlm_transform else None
        self.proj = nn.Linear(cfg.d_model, cfg.vocab_size, bias=cfg.mlm_transform)
        if cfg.tie_embeddings:
            self.proj.weight = embedding.weight

    def forward(self, x: Tensor) -> Tensor:
        if self.transform is not None:
            x = self.norm(self.act(self.transform(x)))
        return self.proj(x)


def _lm_loss(logits: Tensor, labels: Tensor | None) -> Tensor | None:
    if labels is None:
        return None
    return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100)


class Encoder(TransformerModel):
    """BERT-style bidirectional encoder with a masked-LM head."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        self.encoder = Stack(config, "encoder", config.n_layers, causal=False)
        self.head = LMHead(config, self.encoder.embed.tokens)
        self._init_weights()

    def forward(self, ids: Tensor, attention_mask: Tensor | None = None, segments: Tensor | None = None,
                labels: Tensor | None = None, keep_hidden: bool = False) -> ModelOutput:
        padding = attention_mask.bool() if attention_mask is not None else None
        x, hidden = self.encoder(ids, padding, segments, keep_hidden=keep_hidden)
        logits = self.head(x)
        return ModelOutput(logits, x, hidden, loss=_lm_loss(logits, labels))


class Decoder(TransformerModel):
    """GPT-style causal decoder with a language-model head and KV-cached generation."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        self.decoder = Stack(config, "decoder", config.n_layers, causal=True)
        self.head = LMHead(config, self.decoder.embed.tokens)
        self._init_weights()

    def forward(self, ids: Tensor, attention_mask: Tensor | None = None, labels: Tensor | None = None,
                cache: KVCache | None = None, keep_hidden: bool = False) -> ModelOutput:
        padding = attention_mask.bool() if attention_mask is not None else None
        x, hidden = self.decoder(ids, padding, cache=cache, keep_hidden=keep_hidden)
        logits = self.head(x)
        loss = None
        if labels is not None:  # labels are the inputs; predict token t+1 from tokens <= t
            loss = _lm_loss(logits[:, :-1], labels[:, 1:])
        return ModelOutput(logits, x, hidden, cache, loss)

    @torch.no_grad()
    def generate(self, ids: Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, seed: int | None = None, use_cache: bool = True) -> Tensor:
        """Sample (or greedy when temperature == 0) ``max_new_tokens`` after ``ids`` (B, T)."""
        generator = torch.Generator(device=ids.device)
        generator.manual_seed(0 if seed is None else seed)
        cache = KVCache() if use_cache else None
        out = ids
        step_input = ids
        for _ in range(max_new_tokens):
            context = step_input if use_cache else out[:, -self.config.run_positions:]
            logits = self(context, cache=cache).logits[:, -1]
            next_id = sample_next(logits, temperature, top_k, top_p, generator)
            out = torch.cat([out, next_id], dim=1)
            step_input = next_id
        return out


def filter_logits(logits: Tensor, temperature: float, top_k: int | None, top_p: float | None) -> Tensor:
    """Logits after temperature, top-k and nucleus (top-p, Holtzman et al. 2019) filtering."""
    logits = logits.float() / max(temperature, 1e-8)
    if top_k is not None and 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1, None]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = sorted_logits.softmax(-1)
        # drop a token when the mass before it already reaches top_p; the first always stays
        # (explicitly: a tiny top_p such as 5e-324 is 0 in float32, and 0 >= 0 would drop it)
        drop = probs.cumsum(-1) - probs >= top_p
        drop[..., 0] = False
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return logits


def sample_next(logits: Tensor, temperature: float, top_k: int | None, top_p: float | None,
                generator: torch.Generator) -> Tensor:
    """One token id per row (B, 1): argmax when temperature is 0, else a seeded sample."""
    if temperature == 0:
        return logits.argmax(-1, keepdim=True)
    probs = filter_logits(logits, temperature, top_k, top_p).softmax(-1)
    return torch.multinomial(probs, 1, generator=generator)


class EncoderDecoder(TransformerModel):
    """T5-style: bidirectional encoder, causal decoder with cross-attention, relative bias."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        self.encoder = Stack(config, "encoder", config.n_layers, causal=False)
        self.decoder = Stack(config, "decoder", config.decoder_layers, causal=True, cross=True)
        self.decoder.embed.tokens = self.encoder.embed.tokens  # one shared vocabulary table, as in T5
        self.head = LMHead(config, self.encoder.embed.tokens)
        self._init_weights()

    def encode(self, src: Tensor, src_mask: Tensor | None = None) -> Tensor:
        return self.encoder(src, src_mask.bool() if src_mask is not None else None)[0]

    def forward(self, src: Tensor, tgt: Tensor, src_mask: Tensor | None = None, labels: Tensor | None = None,
                memory: Tensor | None = None, cache: KVCache | None = None) -> ModelOutput:
        padding = src_mask.bool() if src_mask is not None else None
        if memory is None:
            memory = self.encoder(src, padding)[0]
        x, _ = self.decoder(tgt, memory=memory, memory_padding=padding, cache=cache)
        logits = self.head(x)
        return ModelOutput(logits, x, None, cache, _lm_loss(logits, labels))

    @torch.no_grad()
    def generate(self, src: Tensor, bos_id: int, eos_id: int | None, max_new_tokens: int,
                 src_mask: Tensor | None = None) -> Tensor:
        """Greedy decoding with a KV cache; stops when every row has produced ``eos_id``."""
        memory = self.encode(src, src_mask)
        cache = KVCache()
        out = torch.full((src.shape[0], 1), bos_id, dtype=torch.long, device=src.device)
        step = out
        for _ in range(max_new_tokens):
            logits = self(src, step, src_mask, memory=memory, cache=cache).logits[:, -1]
            step = logits.argmax(-1, keepdim=True)
            out = torch.cat([out, step], dim=1)
            if eos_id is not None and (out == eos_id).any(dim=1).all():
                break
        return out


MODEL_CLASSES: dict[str, type[TransformerModel]] = {
    "encoder": Encoder,
    "decoder": Decoder,
    "encoder-decoder": EncoderDecoder,
}


def build_model(config: TransformerConfig) -> TransformerModel:
    """The model for a config's family."""
    return MODEL_CLASSES[config.family](config)


def load_model(directory: str | Path) -> TransformerModel:
    """A from-scratch checkpoint saved by ``TransformerModel.save``."""
    return TransformerModel.load(directory)


def checkpoint_info(directory: str | Path) -> dict:
    return json.loads((Path(directory) / "config.json").read_text())
