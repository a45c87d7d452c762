"""What GET /api/backends answers: this machine's device, SDPA's kernels and every attention backend.

No model is loaded and nothing heavy runs: SDPA's choice for a typical call is asked of torch
(``which_kernel``) on two small tensors in the models' placement.
"""

from __future__ import annotations

import torch

from attnlab.models.attention import backend_status, sdpa_kernels, triton_flash
from attnlab.models.device import Placement


def backends_report(placement: Placement) -> dict:
    """The device the models use, the software that decides what can run, SDPA's kernels and the backends.

    ``sdpa_choice`` is the kernel SDPA takes here for a causal call of 8 heads x 1024 x 64 in the
    models' dtype (what the plain ``sdpa`` backend runs for an unmasked model).
    """
    dev = placement.device
    q = torch.zeros(1, 8, 1024, 64, dtype=placement.dtype, device=dev)
    try:
        choice = sdpa_kernels.which_kernel(q, q, q, is_causal=True)
    except ValueError:
        choice = None
    return {
        **placement.describe(),
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "cuda_version": torch.version.cuda,
        "triton": triton_flash.triton_version(),
        "triton_interpreter": triton_flash.interpreting(),
        "sdpa_choice": choice,
        "sdpa_kernels": [
            {"kernel": k, "available": (r := sdpa_kernels.kernel_unavailable_reason(k, dev)) is None, "reason": r,
             "paper": sdpa_kernels.PAPERS[k]}
            for k in sdpa_kernels.KERNELS
        ],
        "backends": [s.to_dict() for s in backend_status(dev)],
    }
