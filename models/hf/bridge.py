"""The bridge into ``transformers``: our attention function, registered under ``"attnlab"``.

Hugging Face attention modules call ``attnlab_attention`` with post-rotary Q and K; it turns
the HF mask into our lazy ``AttentionSpec`` (``spec_from_hf``) and hands the call to
``attnlab.models.dispatch.attend``: the chosen backend (math / sdpa / flash) and the capture, the
same path the from-scratch layers take. ``register_attention`` installs it (idempotent).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import torch
from torch import Tensor

from ..attention import AttentionSpec
from ..attention.window import SlidingWindow
from ..dispatch import attend

ATTN_IMPLEMENTATION = "attnlab"  # the name under which transformers finds our attention function

# -- from a Hugging Face mask to our lazy spec -----------------------------------------

@dataclass
class DenseMaskBias:
    """A mask HF built that is not causal + key padding (sliding window, packing, a bias).

    Served to the spec as an additive bias, block by block, from the dense tensor.
    Disallowed entries hold float32's minimum, not -inf, as eager attention does: a
    query row with no allowed key then spreads uniformly instead of giving NaN.
    """

    additive: Tensor  # (H or 1, Tq, Tk) float32 for batch element 0
    n_heads: int
    q_offset: int

    def __call__(self, q_pos: Tensor, k_pos: Tensor) -> Tensor:
        rows = self.additive[:, q_pos - self.q_offset][:, :, k_pos]  # (H or 1, tq, tk)
        return rows.expand(self.n_heads, -1, -1)


def _allowed_and_bias(mask: Tensor) -> tuple[Tensor, Tensor | None]:
    """Split an HF mask (bool: True = attend, or additive float) into allowed + extra bias."""
    if mask.dtype == torch.bool:
        return mask, None
    floor = torch.finfo(mask.dtype).min / 2
    allowed = mask > floor
    extra = mask.masked_fill(~allowed, 0.0)
    return allowed, (extra if bool(extra.any()) else None)


def spec_from_hf(query: Tensor, key: Tensor, attention_mask: Tensor | None, scale: float,
                 is_causal: bool, sliding_window: int | None = None) -> AttentionSpec:
    """Our lazy spec for one HF attention call; exact, or an error when it cannot be.

    The queries are the last ``Tq`` of ``Tk`` positions (a KV cache holds the rest).
    HF hands us None (plain causal or no mask) or a (B, 1, Tq, Tk) mask; we recognise
    causal + key padding (within a ``sliding_window`` when the layer has one: Mistral),
    check the rebuilt mask equals HF's, and otherwise fall back to the dense mask as a
    bias (batch size 1 only).
    """
    batch, n_heads, t_q, _ = query.shape
    t_k = key.shape[-2]
    q_offset = t_k - t_q
    if attention_mask is None:
        return AttentionSpec(scale, causal=is_causal, q_offset=q_offset)
    mask = attention_mask[..., -t_k:]  # some models hand a mask longer than the keys (static caches)
    allowed, extra = _allowed_and_bias(mask)
    if extra is None and allowed.shape[1] == 1:
        key_padding = allowed.any(dim=-2)[:, 0]  # (B, Tk): a key some query may see is a real token
        padding = None if bool(key_padding.all()) else key_padding.expand(batch, t_k)
        windows = (None,) if not sliding_window else (SlidingWindow(int(sliding_window)), None)
        for causal, pattern in ((c, w) for w in windows for c in (is_causal, not is_causal)):
            spec = AttentionSpec(scale, causal=causal, key_padding=padding, pattern=pattern, q_offset=q_offset)
            q_pos, k_pos = spec.positions(t_q, t_k, query.device)
            rebuilt = spec.mask_block(q_pos, k_pos)
            if rebuilt is None:
                rebuilt = torch.ones(1, 1, t_q, t_k, dtype=torch.bool, device=query.device)
            if torch.equal(rebuilt.expand(allowed.shape), allowed):
                return spec
    if batch != 1 and not all(torch.equal(allowed[0], allowed[b]) for b in range(1, batch)):
        raise NotImplementedError(
            "attnlab capture: this attention mask is neither causal nor key padding and differs across the "
            "batch; run one sequence at a time"
        )
    additive = torch.zeros(allowed.shape[1:], dtype=torch.float32, device=query.device)
    additive = additive.masked_fill(~allowed[0], torch.finfo(torch.float32).min)
    if extra is not None:
        additive = additive + extra[0].float()
    bias = DenseMaskBias(additive, n_heads, q_offset)
    return AttentionSpec(scale, bias=bias, q_offset=q_offset, extras={"hf_mask": "dense"})


def attnlab_attention(module, query: Tensor, key: Tensor, value: Tensor, attention_mask: Tensor | None,
                      scaling: float | None = None, dropout: float = 0.0, **kwargs) -> tuple[Tensor, None]:
    """The attention function transformers calls under ``attn_implementation="attnlab"``.

    query (B, H, Tq, D) after rotary; key/value (B, Hkv, Tk, D), Hkv dividing H (GQA).
    Returns the output as HF expects it, (B, Tq, H, D), and no weights: maps come from
    the capture (exact tiles), whatever the backend. The backend is the per-request one
    (ModelAdapter.forward's use_backend block), else math.
    """
    if module.training and dropout > 0:
        raise NotImplementedError("attnlab attention is for inference: it does not apply attention dropout")
    # features of HF's eager attention our spec has no term for: refuse rather than draw a different map
    for name, feature in (("softcap", "logit soft-capping"), ("s_aux", "attention sinks"),
                          ("position_bias", "a relative position bias")):
        if kwargs.get(name) is not None:
            raise NotImplementedError(f"attnlab capture: this attention layer uses {feature} ({name}), which "
                                      "attnlab's attention spec does not have")
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    is_causal = kwargs.get("is_causal")
    if is_causal is None:
        is_causal = bool(getattr(module, "is_causal", False))
    spec = spec_from_hf(query, key, attention_mask, scale, is_causal, kwargs.get("sliding_window"))
    if getattr(module, "is_cross_attention", False):
        kind = "cross"
    else:
        kind = "decoder" if spec.causal else "encoder"
    layer = getattr(module, "layer_idx", None)  # None: numbered in call order within the capture
    out = attend(query, key, value, spec, kind, layer if isinstance(layer, int) else None, "math")
    return out.transpose(1, 2).contiguous(), None  # (B, Tq, H, D)


_registered = False
_register_lock = threading.Lock()


def register_attention() -> None:
    """Install ``attnlab_attention`` (and its mask builder) in transformers; idempotent."""
    global _registered
    with _register_lock:
        if _registered:
            return
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

        AttentionInterface.register(ATTN_IMPLEMENTATION, attnlab_attention)
        # Without a mask builder of the same name transformers passes no mask at all, and
        # padding would be lost. SDPA's boolean masks suit us: None when plain causal or
        # full, else (B, 1, Tq, Tk) with True = attend.
        AttentionMaskInterface.register(ATTN_IMPLEMENTATION, sdpa_mask)
        _registered = True

