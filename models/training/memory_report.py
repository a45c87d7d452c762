"""Peak training memory with and without gradient checkpointing, on one batch (``memory.measure_peak``)."""

from __future__ import annotations

import logging

import torch

from ..architectures import build_model
from ..config import TransformerConfig
from .batches import batch_tokens
from .config import Batch

log = logging.getLogger(__name__)


def checkpointing_memory_report(config: TransformerConfig, batch: Batch, device: str = "cpu",
                                threads: int = 2) -> dict:
    """Peak memory of one forward+backward on the same batch, with and without checkpointing.

    Measured by ``attnlab.models.memory.measure_peak`` (the one place attnlab measures memory): the
    peak of what torch allocates during the step above what it held before it, from the
    allocator (torch's profiler events on CPU, ``max_memory_allocated`` on CUDA), never
    process RSS. Each model does one warm-up step first, so lazy initialisation and the
    gradients' own buffers are in the baseline. Returns MiB figures and the saving.
    """
    from ..memory import measure_peak

    peaks: dict[bool, float] = {}
    method = ""
    saved_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for ckpt in (False, True):
            torch.manual_seed(0)
            model = build_model(config).to(device).train()
            model.set_gradient_checkpointing(ckpt)
            on_device = {k: v.to(device) for k, v in batch.items()}
            model(**on_device).loss.backward()  # warm-up: gradient buffers, lazy inits, first-call caches
            model.zero_grad(set_to_none=False)
            _, peak = measure_peak(lambda m=model, b=on_device: m(**b).loss.backward(), device)
            peaks[ckpt], method = peak.bytes, peak.method
            del model, on_device
    finally:
        torch.set_num_threads(saved_threads)
    mib = 2**20
    report = {
        "device": device,
        "method": method,
        "tokens": batch_tokens(batch),
        "peak_without_mib": peaks[False] / mib,
        "peak_with_mib": peaks[True] / mib,
        "saving_mib": (peaks[False] - peaks[True]) / mib,
        "saving_ratio": 1 - peaks[True] / peaks[False] if peaks[False] > 0 else float("nan"),
    }
    log.info("gradient checkpointing on %s (%d tokens): peak %.1f MiB without, %.1f MiB with (%.0f%% saved)",
             device, report["tokens"], report["peak_without_mib"], report["peak_with_mib"],
             100 * report["saving_ratio"])
    return report


# ----------------------------------------------------------------------------- train_main
