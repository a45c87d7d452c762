"""Activation (gradient) checkpointing, measured: peak training memory and step time with and without it.

With checkpointing on (``TransformerModel.set_gradient_checkpointing``), each block keeps only its
input during the forward and recomputes its activations in the backward (Chen et al. 2016,
"Training Deep Nets with Sublinear Memory Cost", arXiv 1604.06174): the activations held at
the peak drop from all blocks' to one block's plus the block inputs, for roughly one extra
forward of compute.

``measure_checkpointing`` times and measures one forward+backward of the same model, weights and
batch both ways. Memory is the peak torch's allocator holds during the step above what it held
before it (``attnlab.models.memory.measure_peak``: profiler allocation events on CPU,
``max_memory_allocated`` on CUDA), never process RSS; the weights, their gradients (one warm-up
step allocates them) and the batch are the baseline. ``checkpointing_table`` does it for every
architecture of the zoo and MiniLM's shape: ``attnlab bench checkpointing``.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..architectures import build_model
from ..config import PRESETS, TransformerConfig
from .batches import batch_tokens
from .config import Batch

log = logging.getLogger(__name__)

# MiniLM-L6 (sentence-transformers/all-MiniLM-L6-v2): BERT's layout at 6 layers x 12 heads x d_model 384
MINILM_SHAPE = PRESETS["bert-base"].replace(d_model=384, n_layers=6, n_heads=12, d_ff=1536)


@dataclass(frozen=True)
class CheckpointingRow:
    """One model's numbers. Memory in MiB (2**20 bytes), time in milliseconds (median of ``repeats``)."""

    model: str
    family: str
    n_layers: int
    d_model: int
    n_params: int
    batch: str  # "B x T" tokens (encoder-decoder: source and target each)
    tokens: int
    peak_without_mib: float
    peak_with_mib: float
    saving_ratio: float  # 1 - with / without
    step_ms_without: float
    step_ms_with: float
    slowdown: float  # with / without, wall time
    # CPU time of this process during the step (all its threads): on a CPU shared with other jobs the wall
    # time swings with their load, the CPU time much less
    step_cpu_ms_without: float
    step_cpu_ms_with: float
    cpu_slowdown: float
    method: str  # how memory was measured (memory.measure_peak)

    def to_dict(self) -> dict:
        return asdict(self)


def synthetic_batch(config: TransformerConfig, batch_size: int, seq_len: int, seed: int = 0) -> Batch:
    """Random token ids shaped for the model's family, with labels (the loss needs them)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, config.vocab_size, (batch_size, seq_len), generator=g)  # past the special ids
    if config.family == "encoder-decoder":
        return {"src": ids, "tgt": ids, "src_mask": torch.ones_like(ids, dtype=torch.bool), "labels": ids}
    return {"ids": ids, "labels": ids}


def measure_checkpointing(name: str, config: TransformerConfig, batch: Batch, *, repeats: int = 3,
                          device: str = "cpu") -> CheckpointingRow:
    """Peak memory and median step time of one forward+backward, without and with checkpointing.

    The same weights (one seed) and batch both ways; one warm-up step each first, so gradient
    buffers and lazy initialisation are in the baseline. Raises ``ValueError`` for ``repeats < 1``.
    """
    from ..memory import measure_peak

    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    peaks: dict[bool, int] = {}
    times: dict[bool, float] = {}
    cpu: dict[bool, float] = {}
    method = ""
    n_params = 0
    on_device = {k: v.to(device) for k, v in batch.items()}
    for ckpt in (False, True):
        torch.manual_seed(0)
        model = build_model(config).to(device).train()
        n_params = model.num_parameters()
        model.set_gradient_checkpointing(ckpt)

        def step(m=model) -> None:
            m(**on_device).loss.backward()

        step()  # warm-up: gradient buffers, lazy inits, first-call caches
        samples, cpu_samples = [], []
        for _ in range(repeats):
            model.zero_grad(set_to_none=False)
            t0, c0 = time.perf_counter(), time.process_time()
            step()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            samples.append(time.perf_counter() - t0)
            cpu_samples.append(time.process_time() - c0)
        model.zero_grad(set_to_none=False)
        _, peak = measure_peak(step, device)
        peaks[ckpt], times[ckpt], method = peak.bytes, statistics.median(samples), peak.method
        cpu[ckpt] = statistics.median(cpu_samples)
        del model
    mib = 2**20
    first = next(iter(batch.values()))
    return CheckpointingRow(
        model=name, family=config.family, n_layers=config.n_layers, d_model=config.d_model, n_params=n_params,
        batch=f"{first.shape[0]} x {first.shape[1]}", tokens=batch_tokens(batch),
        peak_without_mib=round(peaks[False] / mib, 2), peak_with_mib=round(peaks[True] / mib, 2),
        saving_ratio=round(1 - peaks[True] / peaks[False], 4) if peaks[False] else float("nan"),
        step_ms_without=round(1000 * times[False], 1), step_ms_with=round(1000 * times[True], 1),
        slowdown=round(times[True] / times[False], 3), step_cpu_ms_without=round(1000 * cpu[False], 1),
        step_cpu_ms_with=round(1000 * cpu[True], 1),
        cpu_slowdown=round(cpu[True] / cpu[False], 3) if cpu[False] > 0 else float("nan"), method=method)


def zoo_configs(zoo: Path) -> dict[str, TransformerConfig]:
    """The architecture of every checkpoint under ``zoo`` (its ``config.json``), by name."""
    return {p.parent.name: TransformerConfig.load(p) for p in sorted(Path(zoo).glob("*/config.json"))}


def checkpointing_table(configs: dict[str, TransformerConfig], *, batch_size: int = 8, seq_len: int = 128,
                        repeats: int = 3, device: str = "cpu", threads: int | None = 1,
                        progress: bool = True) -> dict:
    """``measure_checkpointing`` for each named config (``seq_len`` capped at its positions); a dict for
    results.json: ``{rows, batch_size, seq_len, repeats, device, threads, torch}``."""
    from tqdm.auto import tqdm

    saved = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    rows = []
    try:
        for name, config in tqdm(list(configs.items()), desc="checkpointing", unit="model", leave=False,
                                 disable=not progress):
            length = min(seq_len, config.max_positions)
            row = measure_checkpointing(name, config, synthetic_batch(config, batch_size, length), repeats=repeats,
                                        device=device)
            log.info("%s: %.1f -> %.1f MiB (%.0f%% saved), %.0f -> %.0f ms", name, row.peak_without_mib,
                     row.peak_with_mib, 100 * row.saving_ratio, row.step_ms_without, row.step_ms_with)
            rows.append(row.to_dict())
    finally:
        torch.set_num_threads(saved)
    return {"rows": rows, "batch_size": batch_size, "seq_len": seq_len, "repeats": repeats, "device": device,
            "threads": threads or torch.get_num_threads(), "torch": torch.__version__}


def default_configs(zoo: Path, names: Iterable[str] | None = None) -> dict[str, TransformerConfig]:
    """The zoo's architectures and MiniLM's shape (``minilm-shape``), optionally only ``names``."""
    configs = {**zoo_configs(zoo), "minilm-shape": MINILM_SHAPE}
    if names:
        wanted = list(names)
        unknown = [n for n in wanted if n not in configs]
        if unknown:
            raise ValueError(f"unknown model(s) {unknown}; known: {sorted(configs)}")
        configs = {n: configs[n] for n in wanted}
    return configs


def write_table(table: dict, out_dir: Path) -> Path:
    """``<out_dir>/results.json`` with the table and a ``"bench": "checkpointing"`` marker."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "results.json"
    path.write_text(json.dumps({"bench": "checkpointing", **table}, indent=1, allow_nan=False))
    return path
