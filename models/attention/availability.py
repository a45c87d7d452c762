"""Every attention backend attnlab knows, whether it can run on a device here, and why not.

The registry (``BACKENDS``) holds the backends the toggle offers on this machine; this adds
the ones it leaves out (SDPA's forced kernels and triton without a CUDA device), each with
the reason, for ``GET /api/backends`` and ``attnlab bench``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from . import sdpa_kernels, triton_flash
from .backends import BACKENDS, Backend


@dataclass(frozen=True)
class BackendStatus:
    name: str
    description: str
    returns_lse: bool
    returns_weights: bool
    devices: tuple[str, ...]  # device types whose tensors it takes
    registered: bool  # offered by the toggle (the API's backend enum) on this machine
    available: bool  # can run on the device asked about
    reason: str | None  # why not, when it cannot

    def to_dict(self) -> dict:
        return asdict(self)


def _reason(backend: Backend, device: torch.device) -> str | None:
    if backend.name == "triton":
        return triton_flash.unavailable_reason(device)
    if device.type not in backend.devices:
        if backend.name in sdpa_kernels.FORCED:
            return "offered on CUDA only; on CPU, 'sdpa' runs SDPA's CPU kernel (flash-style, or math)"
        return f"takes {' or '.join(backend.devices)} tensors, not {device.type}"
    if device.type == "cuda" and not torch.cuda.is_available():
        return "no CUDA device here"
    if backend.name in sdpa_kernels.FORCED:
        return sdpa_kernels.kernel_unavailable_reason(backend.name.removeprefix("sdpa_"), device)
    return None


def backend_status(device: str | torch.device = "cpu") -> list[BackendStatus]:
    """The registered backends in the toggle's order, then the known ones not offered here."""
    dev = torch.device(device)
    known = dict(BACKENDS)
    for backend in (*sdpa_kernels.FORCED.values(), triton_flash.TRITON):
        known.setdefault(backend.name, backend)
    out = []
    for name, backend in known.items():
        reason = _reason(backend, dev)
        out.append(BackendStatus(name, backend.description, backend.returns_lse, backend.returns_weights,
                                 backend.devices, name in BACKENDS, reason is None, reason))
    return out
