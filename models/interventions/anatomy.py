"""Where the residual stream lives in a model: its blocks, each block's attention and feed-forward, the unembedding.

``anatomy(adapter)`` finds them in a from-scratch model (``attnlab.models.architectures``) or in a
``transformers`` one (Llama/SmolLM2, GPT-2, BERT, by the names those classes use), so the interventions
never branch on where a model came from. ``Anatomy.run`` is a forward *with* autograd (the adapters'
own forwards run under ``no_grad``): head importance needs the gradient of the gates.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from torch import Tensor, nn

from ..adapter import Encoded, ModelAdapter
from ..architectures import Decoder, Encoder, TransformerModel
from ..attention import use_backend


class Unsupported(ValueError):
    """The model has no part an intervention needs (an encoder-decoder, an unknown Hugging Face layout)."""


@dataclass
class Outputs:
    """One batched forward: logits (B, T, V) where the model has an LM/MLM head, else the final hidden states."""

    logits: Tensor | None
    hidden: Tensor | None  # (B, T, d_model), models without a head


@dataclass
class Streams:
    """The residual stream (``record_streams``): block inputs/outputs and what each block's parts added."""

    residual: list[Tensor] = field(default_factory=list)  # L + 1 of (B, T, d): input to block 0, then each output
    attention: list[Tensor] = field(default_factory=list)  # L of (B, T, d): the attention sub-layer's output
    ffn: list[Tensor] = field(default_factory=list)  # L of (B, T, d): the feed-forward's output (empty: none)


@dataclass
class Anatomy:
    """The parts of one model the interventions use."""

    n_layers: int
    n_heads: int
    causal: bool
    blocks: list[nn.Module]
    attention: list[nn.Module]  # per block: the module whose output is the attention sub-layer's contribution
    ffn: list[nn.Module | None]  # per block: the feed-forward's (None: attention-only)
    unembed: Callable[[Tensor], Tensor] | None  # residual (.., d) -> logits (.., V): final norm + head
    _run: Callable[[Tensor, Tensor | None], Outputs]

    @property
    def has_head(self) -> bool:
        return self.unembed is not None

    def run(self, ids: Tensor, token_type_ids: Tensor | None = None, backend: str = "math") -> Outputs:
        """Forward of ids (B, T) on ``backend``, under the current head gates; autograd as the caller has it."""
        with use_backend(backend):
            return self._run(ids, token_type_ids)

    @contextlib.contextmanager
    def record_streams(self) -> Iterator[Streams]:
        """Keep the residual stream and each block's contributions of the forwards made in this block."""
        streams = Streams()

        def first(x):
            return x[0] if isinstance(x, (tuple, list)) else x

        handles = [self.blocks[0].register_forward_pre_hook(
            lambda m, args, kwargs: streams.residual.append(first(args) if args else kwargs["hidden_states"]),
            with_kwargs=True)]
        for block, attn, ffn in zip(self.blocks, self.attention, self.ffn):
            handles.append(block.register_forward_hook(lambda m, a, out: streams.residual.append(first(out))))
            handles.append(attn.register_forward_hook(lambda m, a, out: streams.attention.append(first(out))))
            if ffn is not None:
                handles.append(ffn.register_forward_hook(lambda m, a, out: streams.ffn.append(first(out))))
        try:
            yield streams
        finally:
            for h in handles:
                h.remove()


def _get(module: nn.Module, path: str) -> nn.Module | None:
    for name in path.split("."):
        module = getattr(module, name, None)
        if module is None:
            return None
    return module


def _scratch(adapter: ModelAdapter, model: TransformerModel) -> Anatomy:
    if not isinstance(model, (Decoder, Encoder)):
        raise Unsupported(f"{adapter.info.id!r} is an encoder-decoder; interventions take encoders and decoders")
    stack = model.decoder if isinstance(model, Decoder) else model.encoder

    def unembed(h: Tensor) -> Tensor:
        return model.head(stack.final_norm(h) if stack.final_norm is not None else h)

    def run(ids: Tensor, token_type_ids: Tensor | None) -> Outputs:
        return Outputs(model(ids).logits, None)

    blocks = list(stack.blocks)
    return Anatomy(model.config.n_layers, model.config.n_heads, isinstance(model, Decoder), blocks,
                   [b.attn for b in blocks], [b.ff for b in blocks], unembed, run)


# transformers layouts by the attribute names of their classes: (blocks, attention output, feed-forward output)
_HF_LAYOUTS = (
    ("model.layers", "self_attn", "mlp"),  # Llama, SmolLM2, Mistral, Qwen
    ("transformer.h", "attn", "mlp"),  # GPT-2
    ("encoder.layer", "attention.output.dense", "output.dense"),  # BertModel
    ("bert.encoder.layer", "attention.output.dense", "output.dense"),  # BertForMaskedLM
)
_HF_FINAL_NORMS = ("model.norm", "transformer.ln_f")


def _hf(adapter: ModelAdapter, model: nn.Module) -> Anatomy:
    info = adapter.info
    if info.family == "encoder-decoder":
        raise Unsupported(f"{info.id!r} is an encoder-decoder; interventions take encoders and decoders")
    layout = next((lay for lay in _HF_LAYOUTS if _get(model, lay[0]) is not None), None)
    if layout is None:
        raise Unsupported(f"{info.id!r}: no known layout of blocks ({type(model).__name__})")
    blocks_path, attn_path, ffn_path = layout
    blocks = list(_get(model, blocks_path))
    attention = [_get(b, attn_path) for b in blocks]
    ffn = [_get(b, ffn_path) for b in blocks]
    causal = info.family == "decoder"
    norm = next((m for m in (_get(model, p) for p in _HF_FINAL_NORMS) if m is not None), None)
    head = _get(model, "cls") or (model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None)
    unembed = None
    if head is not None:
        def unembed(h: Tensor) -> Tensor:
            return head(norm(h) if norm is not None else h)

    def run(ids: Tensor, token_type_ids: Tensor | None) -> Outputs:
        kwargs = {"input_ids": ids}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids.expand_as(ids)
        if causal:
            kwargs["use_cache"] = False
        out = model(**kwargs)
        logits = getattr(out, "logits", None)
        return Outputs(logits, None if logits is not None else out.last_hidden_state)

    return Anatomy(info.n_layers, info.n_heads, causal, blocks, attention, ffn, unembed, run)


def anatomy(adapter: ModelAdapter) -> Anatomy:
    """The parts of ``adapter``'s model; raises ``Unsupported`` for an encoder-decoder or an unknown layout."""
    model = adapter.model  # type: ignore[attr-defined]
    if isinstance(model, TransformerModel):
        return _scratch(adapter, model)
    return _hf(adapter, model)


def batch_ids(enc: Encoded, batch: int) -> Tensor:
    """The input ids repeated for a batch of interventions: (batch, T)."""
    return enc.ids.expand(batch, -1)
