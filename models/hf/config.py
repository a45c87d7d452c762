"""Reading Hugging Face configs: the one place that knows HF's field names.

Three readers of one config dict (``config.json`` or ``config.to_dict()``), all built on the
alias table ``CONFIG_ALIASES``:

- ``info_from_config``: the ``ModelInfo`` the catalogue lists (family, sizes, positional);
- ``hf_shape``: the ``attnlab.models.config.Shape`` the architecture page counts parameters
  and FLOPs from;
- ``gpt2_config`` / ``bert_config`` / ``llama_config``: our exact ``TransformerConfig`` for
  importing weights (``attnlab.models.hf.importers``); an option our layers do not implement is
  ``NotImplementedError``, never a silent mismatch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from ..adapter import Family, ModelInfo
from ..config import Shape, TransformerConfig
from ..names import lookup

CONFIG_ALIASES = {
    "n_layers": ("num_hidden_layers", "n_layer", "num_layers"),
    "n_heads": ("num_attention_heads", "n_head"),
    "d_model": ("hidden_size", "n_embd", "d_model", "dim"),
    "max_positions": ("max_position_embeddings", "n_positions"),
    "n_kv_heads": ("num_key_value_heads",),
    "vocab_size": ("vocab_size",),
    "d_ff": ("intermediate_size", "n_inner"),
}
ROPE_MODEL_TYPES = {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "olmo", "smollm3"}

# Hugging Face activation names -> ours. GPT-2's "gelu_new" is the tanh approximation.
HF_ACTIVATIONS: dict[str, str] = {
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "relu": "relu",
}


def pick(cfg: Mapping, field: str) -> int | None:
    """The first integer among HF's names for ``field`` (a key of ``CONFIG_ALIASES``), else None."""
    for name in CONFIG_ALIASES[field]:
        if isinstance(cfg.get(name), int):
            return cfg[name]
    return None


def read_config(directory: Path | str) -> dict:
    """``<directory>/config.json`` as a dict; FileNotFoundError when there is none."""
    path = Path(directory) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{directory}: no config.json")
    return json.loads(path.read_text())


def uses_rope(cfg: Mapping) -> bool:
    """Llama-like: rotary positions (and, in the families we know, RMSNorm, SwiGLU, no biases)."""
    return cfg.get("model_type") in ROPE_MODEL_TYPES or bool(cfg.get("rope_parameters") or cfg.get("rope_theta"))


def family_of(cfg: Mapping) -> Family:
    """Encoder, decoder or encoder-decoder, from a config dict."""
    if cfg.get("is_encoder_decoder"):
        return "encoder-decoder"
    archs = cfg.get("architectures") or []
    if cfg.get("is_decoder") or any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
        return "decoder"
    if cfg.get("model_type") in {"gpt2", "gpt_neox", "gptj"} | ROPE_MODEL_TYPES:
        return "decoder"
    return "encoder"


def positional_of(cfg: Mapping) -> str:
    """Our positional scheme name for a config: rope, learned, or HF's own position_embedding_type."""
    if uses_rope(cfg):
        return "rope"
    if cfg.get("position_embedding_type", "absolute") == "absolute":
        return "learned"
    return str(cfg.get("position_embedding_type"))


def info_from_config(model_id: str, cfg: Mapping, description: str = "", n_params: int | None = None) -> ModelInfo:
    """ModelInfo from a Hugging Face config dict (read from config.json or ``config.to_dict()``)."""
    n_heads = pick(cfg, "n_heads") or 0
    return ModelInfo(
        id=model_id, family=family_of(cfg), source="pretrained", n_layers=pick(cfg, "n_layers") or 0,
        n_heads=n_heads, d_model=pick(cfg, "d_model") or 0, max_positions=pick(cfg, "max_positions") or 0,
        positional=positional_of(cfg), n_kv_heads=pick(cfg, "n_kv_heads") or n_heads or None,
        vocab_size=pick(cfg, "vocab_size"), n_params=n_params, description=description,
    )


def hf_shape(family: str, cfg: Mapping) -> Shape:
    """The sizes of a Hugging Face BERT / GPT-2 / Llama-like config, for counting parameters and FLOPs."""
    d = pick(cfg, "d_model")
    layers = pick(cfg, "n_layers")
    heads = pick(cfg, "n_heads")
    archs = list(cfg.get("architectures") or [])
    llama_like = uses_rope(cfg)
    gpt2_like = cfg.get("model_type") == "gpt2" or "n_embd" in cfg
    return Shape(
        family=family, vocab_size=cfg.get("vocab_size", 0), d_model=d, n_layers=layers, n_decoder_layers=layers,
        n_heads=heads, n_kv_heads=pick(cfg, "n_kv_heads") or heads, head_dim=cfg.get("head_dim") or d // heads,
        d_ff=pick(cfg, "d_ff") or 4 * d, max_positions=pick(cfg, "max_positions") or 0,
        positional="rope" if llama_like else "learned",
        norm="rmsnorm" if llama_like else "layernorm",
        norm_position="pre" if (llama_like or gpt2_like) else "post",
        activation="swiglu" if llama_like else str(cfg.get("hidden_act") or cfg.get("activation_function") or "gelu"),
        bias=not llama_like, tie_embeddings=bool(cfg.get("tie_word_embeddings", True)),
        type_vocab_size=cfg.get("type_vocab_size", 0) or 0,
        lm_head=any(a.endswith(("LM", "LMHeadModel", "ForCausalLM", "ForMaskedLM", "ForPreTraining"))
                    for a in archs) if archs else True,
        pooler="BertModel" in archs,
        final_norm=llama_like or gpt2_like, embedding_norm=not (llama_like or gpt2_like),
        mlm_transform=any(a.endswith(("ForMaskedLM", "ForPreTraining")) for a in archs),
    )


# -- exact configs for importing weights -------------------------------------------------------

def activation(name: str) -> str:
    """Our activation for an HF ``hidden_act`` / ``activation_function``; ``UnknownName`` if we have none."""
    return lookup(HF_ACTIVATIONS, name, "activation")


def gpt2_config(hf_config) -> TransformerConfig:
    """Our config for a ``transformers`` GPT2Config."""
    if (not getattr(hf_config, "scale_attn_weights", True)
            or getattr(hf_config, "scale_attn_by_inverse_layer_idx", False)):
        raise NotImplementedError("GPT-2 variants with unscaled or per-layer-scaled attention are not supported")
    return TransformerConfig(
        family="decoder", vocab_size=hf_config.vocab_size, d_model=hf_config.n_embd, n_layers=hf_config.n_layer,
        n_heads=hf_config.n_head, d_ff=hf_config.n_inner or 4 * hf_config.n_embd,
        max_positions=hf_config.n_positions, positional="learned", norm="layernorm", norm_position="pre",
        norm_eps=hf_config.layer_norm_epsilon, activation=activation(hf_config.activation_function), bias=True,
        tie_embeddings=getattr(hf_config, "tie_word_embeddings", True), final_norm=True,
    )


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
        activation=activation(hf_config.hidden_act), bias=True, type_vocab_size=hf_config.type_vocab_size,
        embedding_norm=True, mlm_transform=True, final_norm=False, tie_embeddings=True,
        pad_token_id=hf_config.pad_token_id or 0,
    )


def rope_theta(hf_config) -> float:
    """The RoPE base of a Llama-like config; NotImplementedError for scaled RoPE."""
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
        max_positions=hf_config.max_position_embeddings, positional="rope", rope_base=rope_theta(hf_config),
        norm="rmsnorm", norm_position="pre", norm_eps=hf_config.rms_norm_eps, activation="swiglu", bias=False,
        tie_embeddings=bool(getattr(hf_config, "tie_word_embeddings", False)), final_norm=True,
    )
