"""Architecture introspection: a model's structure, parameters and FLOPs per component, and a timed profile.

``describe_architecture`` reads a config dict only (from-scratch ``TransformerConfig`` or
a Hugging Face BERT / GPT-2 / Llama config) and derives blocks, tensor shapes at each
step, parameter counts and forward FLOPs per token by component, norm placement and
where positions enter. ``profile_architecture`` times forward and backward per
component (models.profiler) on a freshly initialised copy of the same architecture:
timing does not depend on weight values, and the served model is never touched.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Mapping
from dataclasses import asdict

import torch

from .config import Shape

log = logging.getLogger(__name__)


def normalise_config(family: str, cfg: Mapping) -> Shape:
    """A ``Shape`` from a from-scratch config or a Hugging Face one (BERT, GPT-2, Llama: ``hf.config``)."""
    if "n_layers" in cfg and "d_model" in cfg:  # models.config.TransformerConfig
        n_heads = cfg["n_heads"]
        return Shape(cfg["family"], cfg["vocab_size"], cfg["d_model"], cfg["n_layers"],
                     cfg.get("n_decoder_layers") or cfg["n_layers"], n_heads, cfg.get("n_kv_heads") or n_heads,
                     cfg["d_model"] // n_heads, cfg.get("d_ff") or 4 * cfg["d_model"], cfg["max_positions"],
                     cfg["positional"], cfg["norm"], cfg["norm_position"], cfg["activation"], cfg["bias"],
                     cfg["tie_embeddings"], cfg.get("attention_only", False), cfg.get("type_vocab_size", 0),
                     final_norm=cfg.get("final_norm", True), embedding_norm=cfg.get("embedding_norm", False),
                     mlm_transform=cfg.get("mlm_transform", False))
    from .hf.config import hf_shape

    return hf_shape(family, cfg)


POSITION_ENTRY = {
    "none": "nowhere: the model sees no positions (attention is permutation-invariant; causal masking leaks some)",
    "sinusoidal": "added to the token embeddings once, before layer 0 (fixed sinusoids)",
    "learned": "added to the token embeddings once, before layer 0 (a learned table; no extrapolation)",
    "rope": "inside every attention layer: queries and keys are rotated by position before q.k",
    "alibi": "inside every attention layer: a per-head linear bias on the scores, -slope x distance",
    "t5_relative": "inside every attention layer: a learned bias per head and relative-offset bucket on the scores",
}


def _linear(n_in: int, n_out: int, bias: bool) -> int:
    return n_in * n_out + (n_out if bias else 0)


def describe_architecture(family: str, cfg: Mapping, context: int = 128) -> dict:
    """Blocks, shapes, parameters and forward FLOPs per token by component.

    FLOPs count a multiply-add as 2; attention's q.k and weights.v grow with the context
    length, taken as ``context`` (capped at the model's positions).
    """
    s = normalise_config(family, cfg)
    T = min(context, s.max_positions) if s.max_positions else context
    d, H, kv, hd, ff = s.d_model, s.n_heads, s.n_kv_heads, s.head_dim, s.d_ff
    norm_params = (2 if s.norm == "layernorm" else 1) * d

    def attn_params() -> int:
        return (_linear(d, H * hd, s.bias) + 2 * _linear(d, kv * hd, s.bias) + _linear(H * hd, d, s.bias))

    attn_proj_flops = 2 * (d * H * hd + 2 * d * kv * hd + H * hd * d)
    attn_mix_flops = 2 * 2 * H * hd * T  # q.k over T keys, then weights.v
    ffn_params = 0 if s.attention_only else (
        3 * d * ff + (3 * ff if s.bias else 0) if s.activation == "swiglu"
        else _linear(d, ff, s.bias) + _linear(ff, d, s.bias))
    ffn_flops = 0 if s.attention_only else 2 * (3 if s.activation == "swiglu" else 2) * d * ff
    stacks = [("encoder", s.n_layers, False)] if s.family == "encoder" else \
        [("decoder", s.n_layers, False)] if s.family == "decoder" else \
        [("encoder", s.n_layers, False), ("decoder", s.n_decoder_layers, True)]
    n_blocks = sum(n for _, n, _ in stacks)
    n_cross = sum(n for _, n, cross in stacks if cross)
    norms_per_block = (1 if s.attention_only else 2)

    n_norms = norms_per_block * n_blocks + n_cross + (len(stacks) if s.final_norm else 0)
    emb = s.vocab_size * d
    if s.positional == "learned":
        emb += s.max_positions * d * len(stacks)
    emb += s.type_vocab_size * d
    emb += norm_params if s.embedding_norm else 0
    pos_bias = 32 * H * len(stacks) if s.positional == "t5_relative" else 0
    head_params = 0 if s.tie_embeddings or not s.lm_head else s.vocab_size * d
    if s.lm_head and s.mlm_transform:
        head_params += d * d + d + norm_params + s.vocab_size  # dense, norm, vocabulary bias
    components = [
        {"component": "embedding", "params": emb, "flops_per_token": 0},
        {"component": "attention (projections)", "params": attn_params() * (n_blocks + n_cross),
         "flops_per_token": attn_proj_flops * (n_blocks + n_cross)},
        {"component": "attention (scores x values)", "params": pos_bias,
         "flops_per_token": attn_mix_flops * (n_blocks + n_cross)},
        {"component": "feed-forward", "params": ffn_params * n_blocks, "flops_per_token": ffn_flops * n_blocks},
        {"component": "norms", "params": norm_params * n_norms, "flops_per_token": 5 * d * n_norms},
        {"component": "output head", "params": head_params,
         "flops_per_token": 2 * d * s.vocab_size if s.lm_head else 0},
    ]
    if s.pooler:
        components.append({"component": "pooler", "params": d * d + d, "flops_per_token": 0})
    B = "B"
    shapes = [
        {"step": "token ids", "shape": [B, "T"]},
        {"step": "embeddings (+ positions)" if s.positional in ("learned", "sinusoidal") else "embeddings",
         "shape": [B, "T", d]},
        {"step": "queries Q", "shape": [B, H, "T", hd]},
        {"step": "keys K, values V" + (f" ({kv} shared KV heads, grouped-query)" if kv != H else ""),
         "shape": [B, kv, "T", hd]},
        {"step": "scores Q K^T / sqrt(d_head)" + (" + bias" if s.positional in ("alibi", "t5_relative") else ""),
         "shape": [B, H, "T", "T"]},
        {"step": "attention output (heads concatenated, projected)", "shape": [B, "T", d]},
    ]
    if not s.attention_only:
        shapes.append({"step": f"feed-forward hidden ({s.activation})", "shape": [B, "T", ff]})
    shapes.append({"step": "block output (residual stream)", "shape": [B, "T", d]})
    if s.lm_head:
        shapes.append({"step": "logits", "shape": [B, "T", s.vocab_size]})
    residual = "x + f(norm(x))" if s.norm_position == "pre" else "norm(x + f(x))"
    blocks = []
    for kind, n, cross in stacks:
        parts = (["causal self-attention"] if kind == "decoder" else ["bidirectional self-attention"]) + \
            (["cross-attention over the encoder output"] if cross else []) + \
            ([] if s.attention_only else [f"feed-forward {d} -> {ff} -> {d} ({s.activation})"])
        blocks.append({"stack": kind, "n_layers": n, "sublayers": parts, "residual": residual})
    total = sum(c["params"] for c in components)
    return {
        "family": s.family, "shape": asdict(s), "context": T, "blocks": blocks, "shapes": shapes,
        "components": components, "total_params": total,
        "total_flops_per_token": sum(c["flops_per_token"] for c in components),
        "norm": f"{s.norm_position}-norm {s.norm}: each sublayer computes {residual}",
        "positions": POSITION_ENTRY.get(s.positional, s.positional),
        "tied_embeddings": s.tie_embeddings and s.lm_head,
    }


# Measured (2 CPU cores): idle, MiniLM-L6 (22.7M parameters) took 0.95 s at 64 tokens and 1.4 s at 256, SmolLM2-135M
# 4.9 s at 16 and 6.2 s at 64; with the cores busy (load 5), MiniLM 6.9 s at 64 and SmolLM2 41 s at 16. Time grows as
# parameters x (tokens + 128): whatever the input, a profile costs ~128 tokens' worth of work per parameter (a
# fresh random initialisation, gradient buffers, the timing hooks). Against this estimate that is ~80 GFLOP/s idle
# and ~10 GFLOP/s busy.
PROFILE_FIXED_TOKENS = 128


def profile_cost_gflop(n_params: int, tokens: int) -> float:
    """What ``profile_architecture`` costs, in GFLOP: 3 passes (a warm-up and 2 timed), each a forward and a
    backward (3 forwards' work) of 2 FLOPs per parameter per token, plus the fixed part above. MiniLM-L6 at 64
    tokens: 78 GFLOP; SmolLM2-135M at 16: 349 GFLOP."""
    return 3 * 3 * 2 * n_params * (tokens + PROFILE_FIXED_TOKENS) / 1e9


_profile_cache: dict[tuple, dict] = {}
_profile_lock = threading.Lock()


def _fresh_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A randomly initialised module of the same class and config (timing ignores weight values)."""
    config = getattr(model, "config", None)
    try:
        fresh = type(model)(config)
    except Exception:  # a class whose constructor wants more than its config: copy it
        fresh = copy.deepcopy(model)
    return fresh.float().train(False)


def profile_architecture(adapter, tokens: int = 64, backward: bool = True) -> dict:
    """Forward/backward ms per component on a ``tokens``-long random input; cached per model."""
    from .profiler import profile_model

    key = (adapter.info.id, tokens, backward)
    with _profile_lock:
        if key in _profile_cache:
            return _profile_cache[key]
        model = _fresh_copy(adapter.model)
        vocab = adapter.info.vocab_size or 100
        ids = torch.randint(0, min(vocab, 1000), (1, tokens), generator=torch.Generator().manual_seed(0))
        inputs = adapter.dummy_inputs(ids)
        threads = torch.get_num_threads()
        result = profile_model(model, inputs, repeats=2, backward=backward).to_dict()
        result.update({"model": adapter.info.id, "threads": threads, "device": "cpu",
                       "note": "freshly initialised copy of the architecture; mean of 2 runs after a warm-up"})
        _profile_cache[key] = result
        return result
