"""A model's fingerprint: a content hash of its weights, dtype and device.

Two processes that load the same checkpoint get the same fingerprint, and a retrained or
re-quantised checkpoint under the same name gets a different one. Run ids include it
(``attnlab.services.runs``), so a run recomputed on another worker or replica is the same run,
never a run of other weights that happen to share the model's name.

Cost: one pass over the parameters, blake2b at ~1 GB/s (MiniLM-L6's 90 MB: ~0.1 s; SmolLM2-135M's
270 MB in float16: ~0.3 s), once per model per process.
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn

FINGERPRINT_VERSION = 1  # bump when what is hashed changes


def module_fingerprint(module: nn.Module) -> str:
    """Hex blake2b (32 hex digits) of ``module.state_dict()``: every entry's name, dtype, shape and bytes,
    in name order, plus the device type the parameters live on.

    Tied weights appear under each of their names (the state dict lists them so), which is deterministic.
    Raises nothing for an empty module (its fingerprint is that of no entries)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"attnlab-fingerprint-v{FINGERPRINT_VERSION}".encode())
    state = module.state_dict()
    devices = sorted({t.device.type for t in state.values()})
    h.update(f"devices={','.join(devices)}".encode())
    for name in sorted(state):
        t = state[name].detach()
        h.update(f"\n{name}:{t.dtype}:{tuple(t.shape)}:".encode())
        if t.numel():
            # raw bytes through a uint8 view: works for every dtype (bfloat16 has no numpy twin)
            flat = t.reshape(-1).contiguous().cpu()
            h.update(flat.view(torch.uint8).numpy().data)
    return h.hexdigest()
