"""Import Hugging Face GPT-2, BERT and Llama weights into our own models, key for key.

Each importer reads the ``transformers`` config, builds the matching
``TransformerConfig``, and copies every tensor into our parameter names. Nothing is
guessed: an option our layers do not implement (a RoPE scaling, biased Llama
projections, GPT-2's per-layer attention scaling) is an error, not a silent mismatch.
Tests prove logits and every attention map equal the ``transformers`` eager ones.

    from transformers import GPT2LMHeadModel
    ours = from_hf_gpt2(GPT2LMHeadModel.from_pretrained(path, local_files_only=True))
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor, nn

from .architectures import Decoder, Encoder, TransformerModel
from .config import TransformerConfig

log = logging.getLogger(__name__)

# Hugging Face activation names -> ours. GPT-2's "gelu_new" is the tanh approximation.
HF_ACTIVATIONS: dict[str, str] = {
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "relu": "relu",
}


def _activation(name: str) -> str:
    try:
        return HF_ACTIVATIONS[name]
    except KeyError:
        raise NotImplementedError(f"activation {name!r} has no counterpart here; known: {sorted(HF_ACTIVATIONS)}") from None


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

def gpt2_config(hf_config) -> TransformerConfig:
    """Our config for a ``transformers`` GPT2Config."""
    if not getattr(hf_config, "scale_attn_weights", True) or getattr(hf_config, "scale_attn_by_inverse_layer_idx", False):
        raise NotImplementedError("GPT-2 variants with unscaled or per-layer-scaled attention are not supported")
    return TransformerConfig(
        family="decoder", vocab_size=hf_config.vocab_size, d_model=hf_config.n_embd, n_layers=hf_config.n_layer,
        n_heads=hf_config.n_head, d_ff=hf_config.n_inner or 4 * hf_config.n_embd,
        max_positions=hf_config.n_positions, positional="learned", norm="layernorm", norm_position="pre",
        norm_eps=hf_config.layer_norm_epsilon, activation=_activation(hf_config.activation_function), bias=True,
        tie_embeddings=getattr(hf_config, "tie_word_embeddings", True), final_norm=True,
    )


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

def bert_config(hf_config) -> TransformerConfig:
    """Our config for a ``transformers`` BertConfig (absolute positions, post-norm)."""
    position_type = getattr(hf_config, "position_embedding_type", "absolute")
    if position_type != "absolute":
        raise NotImplementedError(f"BERT with position_embedding_type={position_type!r} is not supported")
    return TransformerConfig(
        family="encoder", vocab_size=hf_config.vocab_size, d_model=hf_config.hidden_size,
        n_layers=hf_config.num_hidden_layers, n_heads=hf_config.num_attention_heads,
        d_ff=hf_config.intermediate_size, max_positions=hf_config.max_position_embeddings, positional="learned",
        norm="layernorm", norm_position="post", norm_eps=hf_config.layer_norm_eps,
        activation=_activation(hf_config.hidden_act), bias=True, type_vocab_size=hf_config.type_vocab_size,
        embedding_norm=True, mlm_transform=True, final_norm=False, tie_embeddings=True,
        pad_token_id=hf_config.pad_token_id or 0,
    )


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


# -- Llama (SmolLM2) -------------------------------------------------------------------

def _rope_theta(hf_config) -> float:
    # transformers 5 keeps RoPE settings in rope_parameters (rope_scaling is an alias of it)
    params = getattr(hf_config, "rope_parameters", None) or getattr(hf_config, "rope_scaling", None) or {}
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type != "default":
        raise NotImplementedError(f"RoPE scaling {rope_type!r} is not supported; only plain RoPE")
    theta = params.get("rope_theta", getattr(hf_config, "rope_theta", None))
    if theta is None:
        raise ValueError("Llama config has no rope_theta")
    return float(theta)


def llama_config(hf_config) -> TransformerConfig:
    """Our config for a ``transformers`` LlamaConfig: RoPE, RMSNorm, SwiGLU, GQA, no biases."""
    if getattr(hf_config, "attention_bias", False) or getattr(hf_config, "mlp_bias", False):
        raise NotImplementedError("Llama variants with biased projections are not supported")
    if hf_config.hidden_act != "silu":
        raise NotImplementedError(f"Llama with hidden_act={hf_config.hidden_act!r}; only silu (SwiGLU)")
    head_dim = getattr(hf_config, "head_dim", None) or hf_config.hidden_size // hf_config.num_attention_heads
    if head_dim * hf_config.num_attention_heads != hf_config.hidden_size:
        raise NotImplementedError("Llama with head_dim * n_heads != hidden_size is not supported")
    return TransformerConfig(
        family="decoder", vocab_size=hf_config.vocab_size, d_model=hf_config.hidden_size,
        n_layers=hf_config.num_hidden_layers, n_heads=hf_config.num_attention_heads,
        n_kv_heads=hf_config.num_key_value_heads, d_ff=hf_config.intermediate_size,
        max_positions=hf_config.max_position_embeddings, positional="rope", rope_base=_rope_theta(hf_config),
        norm="rmsnorm", norm_position="pre", norm_eps=hf_config.rms_norm_eps, activation="swiglu", bias=False,
        tie_embeddings=bool(getattr(hf_config, "tie_word_embeddings", False)), final_norm=True,
    )


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
    """Import by the Hugging Face ``model_type`` (gpt2, bert, llama)."""
    model_type = hf_model.config.model_type
    try:
        importer = IMPORTERS[model_type]
    except KeyError:
        raise NotImplementedError(f"no importer for model_type {model_type!r}; known: {sorted(IMPORTERS)}") from None
    return importer(hf_model)
