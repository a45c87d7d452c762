"""``attnlab.attach``: a user's own in-memory ``transformers`` model behind the one adapter.

A notebook holds a model object (fine-tuned, built from a config, loaded however the user
likes); ``attach(model, tokenizer)`` switches its attention to our registered function
(``attnlab.models.hf.bridge``: capture on every backend) and returns an ``AttachedModel``, the same
``HFAdapter`` the server uses for bundled models: ``forward``, ``generate``, maps, head scores.
``detach()`` (or leaving a ``with`` block) gives the model back its own attention
implementation and training mode.

Refused, by name, before anything is changed: models whose attention does not go through
``transformers.AttentionInterface``, and attention features our spec has no term for (T5's
relative position bias, Gemma 2's logit soft-capping), so a map is never silently different
from the model's own.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from .adapter import HFAdapter

log = logging.getLogger(__name__)

# model types whose attention adds a learned relative position bias inside the kernel (position_bias)
RELATIVE_BIAS_TYPES = frozenset({"t5", "mt5", "umt5", "longt5", "switch_transformers", "pop2piano", "udop"})


class UnsupportedModel(NotImplementedError):
    """attach() cannot capture this model faithfully; the message names what is missing."""


def _configs(config) -> list:
    """The config and its sub-configs (a multimodal model's text_config, ...)."""
    out = [config]
    for key in getattr(config, "sub_configs", {}) or {}:
        sub = getattr(config, key, None)
        if sub is not None and not isinstance(sub, Mapping):
            out.append(sub)
    return out


def unsupported_reason(model) -> str | None:
    """Why attach() would refuse ``model`` (a message naming the missing feature), or None when it can."""
    from transformers import PreTrainedModel

    if not isinstance(model, PreTrainedModel):
        return f"{type(model).__name__} is not a transformers PreTrainedModel"
    name = type(model).__name__
    for cfg in _configs(model.config):
        model_type = getattr(cfg, "model_type", "")
        if model_type in RELATIVE_BIAS_TYPES or getattr(cfg, "relative_attention_num_buckets", None):
            return (f"{name} ({model_type}) adds a learned relative position bias (T5 buckets) inside attention; "
                    "attnlab's spec for pretrained models does not carry it yet")
        softcap = getattr(cfg, "attn_logit_softcapping", None)
        if softcap is not None:
            return (f"{name} ({model_type}) soft-caps attention logits (attn_logit_softcapping={softcap}, "
                    "Gemma 2); attnlab's attention spec has no soft-capping term")
        if getattr(cfg, "is_encoder_decoder", False):
            return f"{name} ({model_type}) is an encoder-decoder; attach() supports encoders and decoders"
    cls = type(model)
    if not (cls.is_backend_compatible() and cls._can_set_attn_implementation()):
        return (f"{name} does not route its attention through transformers.AttentionInterface, so attnlab "
                "cannot install its attention function")
    return None


class AttachedModel(HFAdapter):
    """An in-memory model under attnlab's attention until ``detach()``; also a context manager.

    Everything of ``HFAdapter``: ``forward(text, backend=...)`` -> ``ForwardResult`` (``.maps()`` gives
    [L, H, Tq, Tk] numpy arrays), ``generate(...)`` captured steps, ``tokenize``. Raises RuntimeError once
    detached.
    """

    def __init__(self, model, tokenizer, name: str | None = None):
        reason = unsupported_reason(model)
        if reason is not None:
            raise UnsupportedModel(f"attnlab.attach: {reason}")
        self._own_implementation = model.config._attn_implementation
        self._was_training = model.training
        model_id = name or getattr(model.config, "name_or_path", "") or model.config.model_type
        super().__init__(model_id, model, tokenizer, description=f"{type(model).__name__} attached in memory")
        self.attached = True
        log.info("attached %s (its own attention: %s)", model_id, self._own_implementation)

    def detach(self) -> None:
        """Give the model back its own attention implementation and training mode (idempotent)."""
        if not self.attached:
            return
        self.model.set_attn_implementation(self._own_implementation)
        self.model.train(self._was_training)
        self.attached = False

    def __enter__(self) -> AttachedModel:
        return self

    def __exit__(self, *exc) -> None:
        self.detach()

    def _check_attached(self) -> None:
        if not self.attached:
            raise RuntimeError(f"{self.info.id}: detached; call attnlab.attach(model, tokenizer) again")

    def _forward(self, enc):
        self._check_attached()
        return super()._forward(enc)

    def _step(self, ids, cache):
        self._check_attached()
        return super()._step(ids, cache)


def attach(model, tokenizer, name: str | None = None) -> AttachedModel:
    """Put an in-memory ``transformers`` model and its tokenizer behind attnlab's adapter.

    ``model``: a ``PreTrainedModel`` whose attention goes through ``AttentionInterface`` (BERT,
    RoBERTa, DistilBERT, GPT-2, Llama, Qwen2, Mistral with its sliding window, Gemma); ``tokenizer``: its
    fast tokenizer (offsets are needed). The model is switched to eval mode and to attention
    ``"attnlab"`` until ``detach()``. Raises ``UnsupportedModel`` (a NotImplementedError) naming
    what is missing (no AttentionInterface, T5 relative bias, Gemma 2 soft-capping, encoder-decoder).
    """
    return AttachedModel(model, tokenizer, name)
