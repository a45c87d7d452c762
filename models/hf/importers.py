"""Import Hugging Face GPT-2, BERT and Llama weights into our own models, key for key.

Each importer reads the ``transformers`` config through ``attnlab.models.hf.config`` (``gpt2_config``,
``bert_config``, ``llama_config``), builds the matching model, and copies every tensor into our
parameter names. Nothing is guessed: an option our layers do not implement (a RoPE scaling,
biased Llama projections, GPT-2's per-layer attention scaling) is an error, not a silent
mismatch. Tests prove logits and every attention map equal the ``transformers`` eager ones.

    from transformers import GPT2LMHeadModel
    ours = from_hf_gpt2(GPT2LMHeadModel.from_pretrained(path, local_files_only=True))
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor, nn

from ..architectures import Decoder, Encoder, TransformerModel
from ..names import lookup
from .config import bert_config, gpt2_config, llama_config

log = logging.getLogger(__name__)


def _load(model: TransformerModel, state: dict[str, Tensor], source: str) -> TransformerModel:
    """Copy ``state`` into ``model``; every parameter must be covered and every shape match."""
    reference = model.state_dict()
    tied = model.tied_names()
    missing = sorted(set(reference) - set(state) - tied)
    unexpected = sorted(set(state) - set(reference))
    if missing or unexpected:
        raise ValueError(f"importing {source}: missing {missing}, unexpected {unexpected}")
    for name, tensor in state.items():
        if tensor.shape != reference[name].shape:
            raise ValueError(f"importing {source}: {name} has shape {tuple(tensor.shape)}, "
                             f"ours is {tuple(reference[name].shape)}")
    with torch.no_grad():
        for name, tensor in state.items():
            reference[name].copy_(tensor.to(reference[name].dtype))
    return model.eval()


def _linear(state: dict[str, Tensor], ours: str, layer: nn.Module) -> None:
    state[f"{ours}.weight"] = layer.weight
    if getattr(layer, "bias", None) is not None:
        state[f"{ours}.bias"] = layer.bias


def _norm(state: dict[str, Tensor], ours: str, layer: nn.Module) -> None:
    _linear(state, ours, layer)  # weight and (LayerNorm only) bias, same names


# -- GPT-2 -----------------------------------------------------------------------------


def from_hf_gpt2(hf_model) -> Decoder:
    """A ``GPT2LMHeadModel`` (or bare ``GPT2Model``) as our ``Decoder``."""
    base = getattr(hf_model, "transformer", hf_model)
    config = gpt2_config(hf_model.config)
    model = Decoder(config)
    d = config.d_model
    state: dict[str, Tensor] = {
        "decoder.embed.tokens.weight": base.wte.weight,
        "decoder.embed.positional.table.weight": base.wpe.weight,
    }
    for i, block in enumerate(base.h):
        ours = f"decoder.blocks.{i}"
        # GPT-2 uses Conv1D: y = x @ W + b with W (in, out), the transpose of nn.Linear's (out, in)
        w_qkv, b_qkv = block.attn.c_attn.weight, block.attn.c_attn.bias  # (d, 3d), (3d,)
        for j, name in enumerate(("q_proj", "k_proj", "v_proj")):
            state[f"{ours}.attn.{name}.weight"] = w_qkv[:, j * d:(j + 1) * d].t()
            state[f"{ours}.attn.{name}.bias"] = b_qkv[j * d:(j + 1) * d]
        state[f"{ours}.attn.o_proj.weight"] = block.attn.c_proj.weight.t()
        state[f"{ours}.attn.o_proj.bias"] = block.attn.c_proj.bias
        state[f"{ours}.ff.up.weight"] = block.mlp.c_fc.weight.t()
        state[f"{ours}.ff.up.bias"] = block.mlp.c_fc.bias
        state[f"{ours}.ff.down.weight"] = block.mlp.c_proj.weight.t()
        state[f"{ours}.ff.down.bias"] = block.mlp.c_proj.bias
        _norm(state, f"{ours}.norm1", block.ln_1)
        _norm(state, f"{ours}.norm2", block.ln_2)
    _norm(state, "decoder.final_norm", base.ln_f)
    if not config.tie_embeddings:
        if not hasattr(hf_model, "lm_head"):
            raise ValueError("an untied GPT-2 needs its lm_head; pass GPT2LMHeadModel")
        state["head.proj.weight"] = hf_model.lm_head.weight
    return _load(model, state, "GPT-2")


# -- BERT ------------------------------------------------------------------------------


def from_hf_bert(hf_model) -> Encoder:
    """A ``BertModel`` or ``BertForMaskedLM`` as our ``Encoder``.

    A bare ``BertModel`` (all-MiniLM-L6-v2) has no MLM head: ours keeps its random
    init, so compare hidden states, not logits.
    """
    base = getattr(hf_model, "bert", hf_model)
    config = bert_config(hf_model.config)
    model = Encoder(config)
    emb = base.embeddings
    state: dict[str, Tensor] = {
        "encoder.embed.tokens.weight": emb.word_embeddings.weight,
        "encoder.embed.positional.table.weight": emb.position_embeddings.weight,
        "encoder.embed.segments.weight": emb.token_type_embeddings.weight,
    }
    _norm(state, "encoder.embed.norm", emb.LayerNorm)
    for i, layer in enumerate(base.encoder.layer):
        ours = f"encoder.blocks.{i}"
        attn = layer.attention
        _linear(state, f"{ours}.attn.q_proj", attn.self.query)
        _linear(state, f"{ours}.attn.k_proj", attn.self.key)
        _linear(state, f"{ours}.attn.v_proj", attn.self.value)
        _linear(state, f"{ours}.attn.o_proj", attn.output.dense)
        _norm(state, f"{ours}.norm1", attn.output.LayerNorm)
        _linear(state, f"{ours}.ff.up", layer.intermediate.dense)
        _linear(state, f"{ours}.ff.down", layer.output.dense)
        _norm(state, f"{ours}.norm2", layer.output.LayerNorm)
    head = getattr(getattr(hf_model, "cls", None), "predictions", None)
    if head is not None:
        _linear(state, "head.transform", head.transform.dense)
        _norm(state, "head.norm", head.transform.LayerNorm)
        state["head.proj.bias"] = head.bias if getattr(head, "bias", None) is not None else head.decoder.bias
    else:
        log.info("BERT without an MLM head: our head keeps its random init (logits are not meaningful)")
        for name, tensor in model.head.state_dict().items():
            if f"head.{name}" not in model.tied_names():
                state[f"head.{name}"] = tensor
    return _load(model, state, "BERT")




def from_hf_llama(hf_model) -> Decoder:
    """A ``LlamaForCausalLM`` (SmolLM2) as our ``Decoder``.

    Hugging Face stores Q/K rows in the "rotate half" layout, which is what our
    ``Rotary`` uses, so no row permutation is needed.
    """
    base = hf_model.model
    config = llama_config(hf_model.config)
    model = Decoder(config)
    state: dict[str, Tensor] = {"decoder.embed.tokens.weight": base.embed_tokens.weight}
    for i, layer in enumerate(base.layers):
        ours = f"decoder.blocks.{i}"
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            _linear(state, f"{ours}.attn.{name}", getattr(layer.self_attn, name))
        _linear(state, f"{ours}.ff.gate", layer.mlp.gate_proj)
        _linear(state, f"{ours}.ff.up", layer.mlp.up_proj)
        _linear(state, f"{ours}.ff.down", layer.mlp.down_proj)
        _norm(state, f"{ours}.norm1", layer.input_layernorm)
        _norm(state, f"{ours}.norm2", layer.post_attention_layernorm)
    _norm(state, "decoder.final_norm", base.norm)
    if not config.tie_embeddings:
        state["head.proj.weight"] = hf_model.lm_head.weight
    return _load(model, state, "Llama")


IMPORTERS = {
    "gpt2": from_hf_gpt2,
    "bert": from_hf_bert,
    "llama": from_hf_llama,
}


def from_hf(hf_model) -> TransformerModel:
    """Import by the Hugging Face ``model_type`` (gpt2, bert, llama); ``UnknownName`` for any other."""
    return lookup(IMPORTERS, hf_model.config.model_type, "model_type to import")(hf_model)
