"""Head gates: a per-forward intervention on each head's output, before the output projection W_O.

``with gate_heads(gates): model(ids)`` makes every self-attention call of that forward (from-scratch
layers and the Hugging Face bridge alike: both go through ``attnlab.models.dispatch.attend``) mix
each head's output ``o_h`` (B, Tq, D) with a replacement ``r_h``:

    o_h' = s_h * o_h + (1 - s_h) * r_h           (s_h the gate, shape (B or 1, L, H))

The replacement is one of (``REPLACEMENTS``):

- ``zero``: r = 0, the head's output removed (Michel, Levy & Neubig 2019, arXiv 1905.10650);
- ``mean``: r = the head's own output averaged over positions; in a causal model over positions <= i
  (a running mean, so no later token leaks into an earlier position), in an encoder over every real
  position of the sequence;
- ``patch``: r = the head's output in another run of the same length (activation patching: Meng et al.
  2022, arXiv 2202.05262; Wang et al. 2022, arXiv 2211.00593), recorded by ``record_heads``.

A gate of 1 changes nothing; a gate that requires grad gives head importance as dL/ds (Michel et al.);
a batch of gates (B, L, H) runs B different interventions in one batched forward. Gates apply to
self-attention kinds (``encoder``, ``decoder``); cross-attention is left alone. Like the capture, the
gates are found through a context variable, never parked on modules.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

Replacement = Literal["zero", "mean", "patch"]
REPLACEMENTS: tuple[str, ...] = ("zero", "mean", "patch")
SELF_KINDS = ("encoder", "decoder")


@dataclass
class HeadGates:
    """Gates of one forward: ``scale`` (B or 1, L, H), 1 = keep the head, 0 = replace it entirely.

    ``source`` holds, for ``patch``, each layer's head outputs (1, H, T, D) from ``record_heads``.
    ``key_padding`` (B, T), True = real token, keeps padding out of an encoder's mean.
    Raises ValueError for an unknown replacement or a patch without its source.
    """

    scale: Tensor
    replacement: Replacement = "zero"
    source: dict[int, Tensor] | None = None
    key_padding: Tensor | None = None
    _calls: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.replacement not in REPLACEMENTS:
            raise ValueError(f"replacement must be one of {REPLACEMENTS}, not {self.replacement!r}")
        if self.scale.dim() != 3:
            raise ValueError(f"scale must be (B or 1, layers, heads), got shape {tuple(self.scale.shape)}")
        if self.replacement == "patch" and self.source is None:
            raise ValueError("a patch needs the source run's head outputs (record_heads)")

    @classmethod
    def ones(cls, n_layers: int, n_heads: int, batch: int = 1, **kwargs) -> HeadGates:
        return cls(torch.ones(batch, n_layers, n_heads), **kwargs)

    def apply(self, out: Tensor, layer: int, causal: bool) -> Tensor:
        """out (B, H, T, D) of ``layer``; returns the gated output, same shape."""
        if layer >= self.scale.shape[1]:
            return out
        s = self.scale[:, layer, :, None, None].to(out.dtype)  # (B or 1, H, 1, 1)
        if self.replacement == "zero":
            return out * s
        replacement = self._replacement(out, layer, causal)
        return out * s + (1 - s) * replacement

    def _replacement(self, out: Tensor, layer: int, causal: bool) -> Tensor:
        if self.replacement == "patch":
            return self.source[layer].to(out.dtype)
        if causal:  # running mean over positions <= i
            counts = torch.arange(1, out.shape[2] + 1, device=out.device, dtype=out.dtype)[:, None]
            return out.cumsum(2) / counts
        if self.key_padding is not None:
            keep = self.key_padding[:, None, :, None].to(out.dtype)  # (B, 1, T, 1)
            return (out * keep).sum(2, keepdim=True) / keep.sum(2, keepdim=True).clamp_min(1)
        return out.mean(2, keepdim=True).expand_as(out)

    def layer_of(self, kind: str, layer: int | None) -> int:
        """The layer index of a call that does not know its own: calls of a kind counted in order."""
        if layer is not None:
            return layer
        n = self._calls.get(kind, 0)
        self._calls[kind] = n + 1
        return n


@dataclass
class HeadRecord:
    """Head outputs of one forward, by layer: (B, H, T, D) each, before W_O (``record_heads``)."""

    outputs: dict[int, Tensor] = field(default_factory=dict)
    _calls: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, layer: int | None, out: Tensor) -> None:
        if layer is None:
            layer = self._calls.get(kind, 0)
            self._calls[kind] = layer + 1
        self.outputs[layer] = out.detach()


_gates: contextvars.ContextVar[HeadGates | None] = contextvars.ContextVar("attnlab_gates", default=None)
_records: contextvars.ContextVar[HeadRecord | None] = contextvars.ContextVar("attnlab_head_record", default=None)


def current_gates() -> HeadGates | None:
    return _gates.get()


def current_head_record() -> HeadRecord | None:
    return _records.get()


@contextlib.contextmanager
def gate_heads(gates: HeadGates | None) -> Iterator[HeadGates | None]:
    """Apply ``gates`` to every self-attention call made in this block (this context only)."""
    token = _gates.set(gates)
    try:
        yield gates
    finally:
        _gates.reset(token)


@contextlib.contextmanager
def record_heads() -> Iterator[HeadRecord]:
    """Keep every self-attention head output (before W_O) of the forwards made in this block."""
    rec = HeadRecord()
    token = _records.set(rec)
    try:
        yield rec
    finally:
        _records.reset(token)


def intervene(out: Tensor, kind: str, layer: int | None, causal: bool) -> Tensor:
    """What ``attend`` calls on each head output (B, H, T, D): record it, then gate it (if asked)."""
    if kind not in SELF_KINDS:
        return out
    rec = _records.get()
    if rec is not None:
        rec.add(kind, layer, out)
    gates = _gates.get()
    if gates is None:
        return out
    return gates.apply(out, gates.layer_of(kind, layer), causal)
