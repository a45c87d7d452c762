"""Where models run: a device and a floating-point dtype, resolved once from settings.

``ATTNLAB_DEVICE`` is ``auto`` (CUDA when a CUDA device is present, else CPU), ``cpu`` or
``cuda``; ``ATTNLAB_DTYPE`` is ``auto`` (float32 on CPU; bfloat16 on CUDA, float16 on a GPU
without bfloat16), ``float32``, ``bfloat16`` or ``float16``. A :class:`Placement` moves a
model's parameters there (:func:`place`); inputs follow the model's device.

Precision: weights and activations are in the placement's dtype; every backend
accumulates scores in float32 and returns the row log-sum-exp in float32, and the
capture's tiles are computed in float32 from the (16-bit) Q and K the model produced,
so a tile is exact to the dtype's precision: it equals the float32 softmax of those
Q and K, not of a float32 model's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

DeviceName = Literal["auto", "cpu", "cuda"]
DtypeName = Literal["auto", "float32", "bfloat16", "float16"]
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
DTYPES: dict[str, torch.dtype | None] = {
    "auto": None, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16,
}


@dataclass(frozen=True)
class Placement:
    """A device and a dtype for models, their inputs and their captures."""

    device: torch.device
    dtype: torch.dtype

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    def describe(self) -> dict:
        """JSON-friendly: device type and name, dtype, and GPU memory where there is a GPU."""
        out: dict = {"device": self.device.type, "dtype": self.dtype_name, "name": "cpu"}
        if self.device.type == "cuda":
            index = self.device.index if self.device.index is not None else torch.cuda.current_device()
            free, total = torch.cuda.mem_get_info(index)
            out.update(name=torch.cuda.get_device_name(index), memory_total_bytes=total, memory_free_bytes=free,
                       memory_allocated_bytes=torch.cuda.memory_allocated(index))
        return out


CPU = Placement(torch.device("cpu"), torch.float32)


def resolve(device: str = "auto", dtype: str = "auto") -> Placement:
    """The placement for these setting values.

    Raises ValueError naming the setting for an unknown value, for ``cuda`` where no CUDA
    device is present, and for bfloat16 on a GPU that lacks it.
    """
    if device not in DEVICES:
        raise ValueError(f"device: {device!r} is not one of {list(DEVICES)}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype: {dtype!r} is not one of {list(DTYPES)}")
    has_cuda = torch.cuda.is_available()
    if device == "cuda" and not has_cuda:
        raise ValueError(f"device: 'cuda' asked for, but torch {torch.__version__} sees no CUDA device "
                         "(a CPU build of torch, or no GPU); use 'auto' or 'cpu'")
    dev = torch.device("cuda" if device == "cuda" or (device == "auto" and has_cuda) else "cpu")
    chosen = DTYPES[dtype]
    if chosen is None:
        if dev.type == "cpu":
            chosen = torch.float32
        else:
            chosen = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if dev.type == "cuda" and chosen == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise ValueError(f"dtype: this GPU ({torch.cuda.get_device_name()}) has no bfloat16; use float16 or float32")
    return Placement(dev, chosen)


def place(module: nn.Module, placement: Placement) -> nn.Module:
    """Move a model's parameters and buffers to the placement (floating ones take its dtype)."""
    return module.to(device=placement.device, dtype=placement.dtype)


def module_placement(module: nn.Module) -> Placement:
    """Where a model's first floating parameter lives (CPU float32 for a model without one)."""
    for p in module.parameters():
        if p.is_floating_point():
            return Placement(p.device, p.dtype)
    return CPU
