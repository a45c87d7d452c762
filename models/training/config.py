"""Training configuration: ``TrainConfig``, the objectives' families, the optimizer and its LR curve.

``TrainConfig`` is frozen and checked on creation; ``make_optimizer`` builds AdamW with weight
decay on matrices only (``param_groups``); ``lr_curve`` is the schedule's curve as data."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from ..layers import RMSNorm
from ..schedules import get_schedule, schedule_curve

log = logging.getLogger(__name__)

Objective = Literal["clm", "mlm", "span"]
Precision = Literal["fp32", "bf16"]
Batch = dict[str, Tensor]
BatchFn = Callable[[int], Batch]  # step -> the global batch of that step, deterministic

OBJECTIVE_FAMILY: dict[str, str] = {"clm": "decoder", "mlm": "encoder", "span": "encoder-decoder"}
STATE_FILE = "trainer_state.pt"
STATE_JSON = "trainer_state.json"
LOG_FILE = "log.jsonl"
SNAPSHOT_FILE = "snapshots.safetensors"
SNAPSHOT_JSON = "snapshots.json"


class TrainingDiverged(RuntimeError):
    """Too many consecutive steps had a non-finite loss or gradient."""


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings. The model's own shape lives in ``TransformerConfig``."""

    steps: int = 1000
    lr: float = 3e-4
    weight_decay: float = 0.1  # decoupled (AdamW); never on norms, biases or embeddings
    betas: tuple[float, float] = (0.9, 0.95)  # beta2 0.95 as in GPT-3: steadier for small batches
    grad_clip: float = 1.0  # max global grad norm; 0 disables clipping
    schedule: str = "warmup_cosine"  # a key of models.schedules.SCHEDULES
    warmup: int = 100
    min_lr_ratio: float = 0.1  # warmup_cosine decays to this fraction of lr
    precision: Precision = "fp32"  # bf16 autocast where the device supports it (CPU does)
    gradient_checkpointing: bool = False
    backend: str = "sdpa"  # attention kernel used while training; snapshots capture through it
    log_every: int = 10
    eval_every: int = 0  # 0 = only at the end (when an eval function is given)
    snapshot_every: int = 0  # 0 = no attention snapshots
    save_every: int = 0  # 0 = only at the end
    spike_factor: float = 3.0  # a loss above spike_factor x its EMA is logged as a spike
    max_bad_steps: int = 5  # consecutive non-finite steps tolerated (skipped) before aborting
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        get_schedule(self.schedule)
        if self.steps <= 0:
            raise ValueError(f"steps must be positive, got {self.steps}")
        if self.schedule in ("warmup_cosine", "warmup_linear") and self.steps <= self.warmup:
            raise ValueError(f"{self.schedule} needs steps ({self.steps}) > warmup ({self.warmup})")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be fp32 or bf16, got {self.precision!r}")

    def schedule_kwargs(self, d_model: int) -> dict:
        """The keyword arguments the named schedule takes."""
        return {
            "constant": {"warmup": self.warmup},
            "warmup_cosine": {"warmup": self.warmup, "total": self.steps, "min_ratio": self.min_lr_ratio},
            "warmup_linear": {"warmup": self.warmup, "total": self.steps, "min_ratio": self.min_lr_ratio},
            "inverse_sqrt": {"warmup": max(self.warmup, 1), "d_model": d_model},
            "inverse_sqrt_normalized": {"warmup": max(self.warmup, 1)},
        }[self.schedule]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        data = dict(data)
        if "betas" in data:
            data["betas"] = tuple(data["betas"])
        return cls(**data)


# ----------------------------------------------------------------------------- LR curve


def lr_curve(schedule: str = "warmup_cosine", steps: int = 1000, lr: float = 3e-4, warmup: int = 100,
             min_lr_ratio: float = 0.1, d_model: int = 512) -> dict:
    """The learning rate at every step, for ``attnlab train --plot-lr`` and the pages.

    Returns ``{"schedule", "step": [...], "lr": [...]}``; an absolute schedule
    (``inverse_sqrt``) is scaled by ``lr`` exactly as the optimizer would scale it.
    """
    cfg = TrainConfig(steps=steps, lr=lr, warmup=warmup, schedule=schedule, min_lr_ratio=min_lr_ratio)
    kw = cfg.schedule_kwargs(d_model)
    values = schedule_curve(schedule, steps, **kw)
    return {"schedule": schedule, "step": list(range(steps)), "lr": [lr * v for v in values], "params": kw}


# ----------------------------------------------------------------------------- optimizer


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decay on weight matrices only; not on norms, biases or embeddings.

    Decaying a LayerNorm gain pulls it towards 0 and decaying an embedding shrinks rare
    tokens' vectors every step they are not seen; both only hurt (as in GPT-2/minGPT).
    """
    decay, no_decay, seen = [], [], set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if id(p) in seen or not p.requires_grad:
                continue  # tied weights are visited once, at their first (embedding) owner
            seen.add(id(p))
            exempt = isinstance(module, (nn.Embedding, nn.LayerNorm, RMSNorm)) or name == "bias" or p.ndim < 2
            (no_decay if exempt else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    # for an absolute schedule (inverse_sqrt) lr is a scale on the paper's curve
    return torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas)


# ----------------------------------------------------------------------------- batches

