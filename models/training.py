"""Training for the from-scratch models: objectives, optimizer, schedules, DDP, checkpoints.

A ``Trainer`` drives one model through ``TrainConfig.steps`` optimizer updates. Batches
come from a ``BatchFn``: a pure function of the step number that returns the *global*
batch as keyword arguments of the model's ``forward`` (``labels`` included). Because a
batch depends only on (seed, step), resuming from a checkpoint replays exactly the
batches that would have come next, and under DDP every rank slices its own rows of the
same global batch (the deterministic sharding of a ``DistributedSampler``).

    model = build_model(preset("tiny"))
    batches = lm_batches(ids, block_size=64, batch_size=32, objective="clm")
    trainer = Trainer(model, TrainConfig(steps=500), batches, out_dir="runs/tiny", tokenizer=tok)
    result = trainer.train()

Objectives: ``clm`` (GPT), ``mlm`` (BERT, 15% with 80/10/10), ``span`` (T5 span
corruption). Under ``torchrun --nproc_per_node N`` the trainer joins the process group
(gloo on CPU, nccl on CUDA) and wraps the model in DistributedDataParallel.

Files a checkpoint directory holds: ``config.json`` + ``model.safetensors`` (the model's
own ``save``), the tokenizer, ``trainer_state.pt`` (optimizer, scheduler, step, RNG; only
in resumable checkpoints), ``trainer_state.json`` (a readable summary), ``log.jsonl`` (one
record per logged step) and ``snapshots.safetensors`` + ``snapshots.json`` (attention maps
of fixed probes at several steps, for watching attention form).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Literal, Sequence

import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from .architectures import TransformerModel, build_model, load_model
from .capture import capture
from .config import PRESETS, TransformerConfig, preset
from .data import IGNORE_INDEX, mask_tokens, span_corrupt
from .layers import RMSNorm
from .schedules import get_schedule, make_scheduler, schedule_curve
from .tokenization import load_tokenizer

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
        if self.schedule == "warmup_cosine" and self.steps <= self.warmup:
            raise ValueError(f"warmup_cosine needs steps ({self.steps}) > warmup ({self.warmup})")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be fp32 or bf16, got {self.precision!r}")

    def schedule_kwargs(self, d_model: int) -> dict:
        """The keyword arguments the named schedule takes."""
        return {
            "constant": {"warmup": self.warmup},
            "warmup_cosine": {"warmup": self.warmup, "total": self.steps, "min_ratio": self.min_lr_ratio},
            "inverse_sqrt": {"warmup": max(self.warmup, 1), "d_model": d_model},
            "inverse_sqrt_normalized": {"warmup": max(self.warmup, 1)},
        }[self.schedule]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
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


def step_generator(seed: int, step: int) -> torch.Generator:
    """A generator that depends only on (seed, step): batches replay exactly on resume."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def lm_batches(ids: Tensor, block_size: int, batch_size: int, objective: Objective = "clm", *,
               tokenizer=None, seed: int = 0, mlm_prob: float = 0.15, noise_density: float = 0.15,
               mean_span: float = 3.0) -> BatchFn:
    """Random contiguous windows of a 1-D token stream, corrupted for the objective.

    - ``clm``: ``{"ids", "labels"}`` with labels = ids (the decoder shifts them);
    - ``mlm``: BERT's 15% selection with 80/10/10 replacement; needs ``tokenizer`` (``<mask>``);
    - ``span``: T5 span corruption into ``{"src", "tgt", "src_mask", "labels"}``; needs a
      tokenizer with ``<extra_id_*>`` sentinels, ``<bos>``, ``<eos>`` and ``<pad>``.
    """
    ids = ids.long()
    if ids.dim() != 1 or len(ids) <= block_size:
        raise ValueError(f"need a 1-D stream longer than block_size={block_size}, got shape {tuple(ids.shape)}")
    if objective not in OBJECTIVE_FAMILY:
        raise ValueError(f"unknown objective {objective!r}; known: {sorted(OBJECTIVE_FAMILY)}")
    if objective != "clm" and tokenizer is None:
        raise ValueError(f"objective {objective!r} needs a tokenizer for its special ids")
    offsets = torch.arange(block_size)

    def windows(g: torch.Generator) -> Tensor:
        starts = torch.randint(len(ids) - block_size, (batch_size,), generator=g)
        return ids[starts[:, None] + offsets]  # (B, T)

    def batch(step: int) -> Batch:
        g = step_generator(seed, step)
        x = windows(g)
        if objective == "clm":
            return {"ids": x, "labels": x}
        if objective == "mlm":
            specials = tokenizer.special_ids.values()
            inputs, labels = mask_tokens(x, tokenizer.mask_id, tokenizer.vocab_size, specials, mlm_prob, g)
            return {"ids": inputs, "labels": labels}
        return span_batch(x, tokenizer, g, noise_density, mean_span)

    return batch


def span_batch(x: Tensor, tokenizer, generator: torch.Generator, noise_density: float = 0.15,
               mean_span: float = 3.0) -> Batch:
    """Span-corrupt each row of ``x`` (B, T) and pad into an encoder-decoder batch."""
    sentinels = tokenizer.sentinel_ids
    if not sentinels:
        raise ValueError("the span objective needs a tokenizer built with sentinels (n_sentinels > 0)")
    pairs = [span_corrupt(row, sentinels, noise_density, mean_span, generator) for row in x]
    targets = [torch.cat([t, t.new_tensor([tokenizer.eos_id])]) for _, t in pairs]
    return pad_seq2seq([s for s, _ in pairs], targets, tokenizer.pad_id, tokenizer.bos_id)


def pad_seq2seq(sources: Sequence[Tensor], targets: Sequence[Tensor], pad_id: int, bos_id: int) -> Batch:
    """Teacher-forcing batch: decoder input is ``<bos> + target[:-1]``, labels the target."""
    n_src, n_tgt = max(len(s) for s in sources), max(len(t) for t in targets)
    B = len(sources)
    src = torch.full((B, n_src), pad_id, dtype=torch.long)
    tgt = torch.full((B, n_tgt), pad_id, dtype=torch.long)
    labels = torch.full((B, n_tgt), IGNORE_INDEX, dtype=torch.long)
    for i, (s, t) in enumerate(zip(sources, targets)):
        src[i, : len(s)] = s
        tgt[i, 0] = bos_id
        tgt[i, 1 : len(t)] = t[:-1]
        labels[i, : len(t)] = t
    return {"src": src, "tgt": tgt, "src_mask": src != pad_id, "labels": labels}


def shard(batch: Batch, rank: int, world: int) -> Batch:
    """This rank's contiguous slice of the global batch's rows."""
    if world == 1:
        return batch
    B = next(iter(batch.values())).shape[0]
    if B % world:
        raise ValueError(f"global batch size {B} is not divisible by world size {world}")
    n = B // world
    return {k: v[rank * n : (rank + 1) * n] for k, v in batch.items()}


def batch_tokens(batch: Batch) -> int:
    """Input tokens in a batch (both sides for encoder-decoder)."""
    if "src" in batch:
        return int(batch["src_mask"].sum()) + int(batch["tgt"].numel())
    return int(batch["ids"].numel())


# ----------------------------------------------------------------------------- distributed


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def init_distributed(device: str | None = None) -> DistInfo:
    """Join the process group when launched by torchrun (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    want_cuda = device == "cuda" or (device is None and torch.cuda.is_available())
    if world == 1:
        return DistInfo(device=torch.device(device or ("cuda" if want_cuda else "cpu")))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if want_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(rank, world, local_rank, dev)


# ----------------------------------------------------------------------------- snapshots


@dataclass
class Probe:
    """A fixed input whose attention maps are saved every ``snapshot_every`` steps."""

    name: str
    inputs: Batch  # forward kwargs, batch of one
    tokens: list[str]  # display labels (models.labels.token_labels)
    target_tokens: list[str] | None = None  # encoder-decoder: the decoder input's tokens
    ids: list[int] = field(default_factory=list)
    target_ids: list[int] | None = None

    @classmethod
    def from_text(cls, name: str, text: str, tokenizer, target: str | None = None,
                  max_tokens: int | None = None) -> "Probe":
        ids = tokenizer.encode(text)[:max_tokens]
        if target is None:
            return cls(name, {"ids": torch.tensor([ids])}, tokenizer.labels(ids), ids=ids)
        tgt = [tokenizer.bos_id] + tokenizer.encode(target)
        return cls(name, {"src": torch.tensor([ids]), "tgt": torch.tensor([tgt])}, tokenizer.labels(ids),
                   tokenizer.labels(tgt), ids, tgt)


class Snapshots:
    """Dense (L, H, Tq, Tk) float16 maps per (step, probe, kind); small probes only."""

    def __init__(self, probes: Sequence[Probe]):
        self.probes = list(probes)
        self.steps: list[int] = []
        self.tensors: dict[str, Tensor] = {}

    @staticmethod
    def key(step: int, probe: str, kind: str) -> str:
        return f"step{step}/{probe}/{kind}"

    @torch.no_grad()
    def take(self, model: TransformerModel, step: int, device: torch.device) -> None:
        if step in self.steps or not self.probes:
            return
        was_training = model.training
        model.eval()
        for probe in self.probes:
            with capture(model) as rec:
                model(**{k: v.to(device) for k, v in probe.inputs.items()})
            for kind in rec.kinds:
                # the last n_layers records of a kind are this forward's (one pass, no cache)
                self.tensors[self.key(step, probe.name, kind)] = rec.all_dense(kind).half().cpu()
        self.steps.append(step)
        model.train(was_training)

    def save(self, directory: Path) -> None:
        if not self.steps:
            return
        save_file(dict(self.tensors), str(directory / SNAPSHOT_FILE))
        meta = {
            "steps": self.steps,
            "key": "step{step}/{probe}/{kind}",
            "shape": "(layers, heads, query, key) float16",
            "probes": [{"name": p.name, "tokens": p.tokens, "target_tokens": p.target_tokens, "ids": p.ids,
                        "target_ids": p.target_ids,
                        "kinds": sorted({k.split("/")[2] for k in self.tensors if k.split("/")[1] == p.name})}
                       for p in self.probes],
        }
        (directory / SNAPSHOT_JSON).write_text(json.dumps(meta, indent=1, ensure_ascii=False))

    def load(self, directory: Path) -> None:
        if (directory / SNAPSHOT_FILE).exists():
            self.tensors = load_file(str(directory / SNAPSHOT_FILE))
            self.steps = json.loads((directory / SNAPSHOT_JSON).read_text())["steps"]


def load_snapshots(directory: str | Path) -> tuple[dict, dict[str, Tensor]]:
    """(metadata, tensors) of a checkpoint's attention snapshots.

    Probe tokens are labelled by the checkpoint's tokenizer from their ids, with the one
    label rule of every view (files written before probes kept ids hold the vocabulary
    strings, ``Ġis``; their ids are looked up).
    """
    directory = Path(directory)
    meta = json.loads((directory / SNAPSHOT_JSON).read_text())
    try:
        tokenizer = load_tokenizer(directory)
    except FileNotFoundError:
        tokenizer = None
    if tokenizer is not None:
        for probe in meta.get("probes", []):
            for ids_key, tokens_key in (("ids", "tokens"), ("target_ids", "target_tokens")):
                ids = probe.get(ids_key) or (
                    [tokenizer.token_to_id(t) for t in probe[tokens_key]] if probe.get(tokens_key) else None)
                if ids and None not in ids:
                    probe[ids_key], probe[tokens_key] = ids, tokenizer.labels(ids)
    return meta, load_file(str(directory / SNAPSHOT_FILE))


# ----------------------------------------------------------------------------- trainer


@dataclass
class TrainResult:
    steps: int
    final_loss: float
    seconds: float
    tokens_per_s: float
    skipped_steps: int
    spikes: int
    eval_loss: float | None = None
    history: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "history"}


class Trainer:
    """One model, one optimizer, one batch function; DDP when launched by torchrun."""

    def __init__(self, model: TransformerModel, cfg: TrainConfig, batches: BatchFn, *,
                 out_dir: str | Path | None = None, tokenizer=None, probes: Sequence[Probe] = (),
                 eval_fn: Callable[[TransformerModel], float] | None = None, device: str | None = None,
                 extra_state: dict | None = None, save_dtype: torch.dtype | None = None, resumable: bool = True):
        self.cfg = cfg
        self.save_dtype, self.resumable = save_dtype, resumable
        self.dist = init_distributed(device)
        self.model = model.to(self.dist.device)
        self.model.set_backend(cfg.backend)
        self.model.set_gradient_checkpointing(cfg.gradient_checkpointing)
        self.batches = batches
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.tokenizer = tokenizer
        self.eval_fn = eval_fn
        self.extra_state = extra_state or {}
        self.snapshots = Snapshots(probes)
        self.optimizer = make_optimizer(model, cfg)
        self.scheduler = make_scheduler(self.optimizer, cfg.schedule, **cfg.schedule_kwargs(model.config.d_model))
        self.step = 0  # optimizer updates done
        self.loss_ema: float | None = None
        self.bad_streak = 0
        self.skipped = 0
        self.spikes = 0
        self.history: list[dict] = []
        self.ddp = None
        if self.dist.enabled:
            ids = [self.dist.local_rank] if self.dist.device.type == "cuda" else None
            self.ddp = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        torch.manual_seed(cfg.seed)

    # -- one step -----------------------------------------------------------------
    @property
    def runner(self) -> nn.Module:
        return self.ddp if self.ddp is not None else self.model

    def autocast(self):
        if self.cfg.precision == "bf16":
            return torch.autocast(self.dist.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def local_batch(self, step: int) -> Batch:
        batch = shard(self.batches(step), self.dist.rank, self.dist.world)
        return {k: v.to(self.dist.device) for k, v in batch.items()}

    def forward_backward(self, batch: Batch) -> Tensor:
        """Loss of one (local) batch, gradients accumulated into .grad (averaged across ranks)."""
        self.model.train()
        with self.autocast():
            loss = self.runner(**batch).loss
        loss.backward()
        return loss.detach()

    def train_step(self) -> dict:
        """One optimizer update; returns its log record."""
        t0 = time.perf_counter()
        batch = self.local_batch(self.step)
        n_tokens = batch_tokens(batch) * self.dist.world
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.forward_backward(batch)
        if self.dist.enabled:  # the logged loss is the mean over ranks
            dist.all_reduce(loss)
            loss = loss / self.dist.world
        clip = self.cfg.grad_clip if self.cfg.grad_clip > 0 else float("inf")
        grad_norm = float(nn.utils.clip_grad_norm_(self.model.parameters(), clip))
        lr = self.optimizer.param_groups[0]["lr"]
        loss_value = float(loss)
        record = {"step": self.step + 1, "loss": loss_value, "lr": lr, "grad_norm": grad_norm}
        # gradients are all-reduced, so every rank sees the same norm and takes the same branch
        if not (math.isfinite(loss_value) and math.isfinite(grad_norm)):
            self.optimizer.zero_grad(set_to_none=True)
            self.bad_streak += 1
            self.skipped += 1
            record["skipped"] = True
            log.warning("step %d: non-finite loss %.4g / grad norm %.4g; update skipped (%d in a row)",
                        self.step + 1, loss_value, grad_norm, self.bad_streak)
            if self.bad_streak >= self.cfg.max_bad_steps:
                raise TrainingDiverged(f"{self.bad_streak} consecutive non-finite steps at step {self.step + 1}; "
                                       "lower the learning rate or use fp32")
        else:
            self.bad_streak = 0
            self.optimizer.step()
            if self.loss_ema is not None and self.step >= 20 and loss_value > self.cfg.spike_factor * self.loss_ema:
                self.spikes += 1
                record["spike"] = True
                log.warning("step %d: loss spike %.4f > %.1f x EMA %.4f", self.step + 1, loss_value,
                            self.cfg.spike_factor, self.loss_ema)
            self.loss_ema = loss_value if self.loss_ema is None else 0.95 * self.loss_ema + 0.05 * loss_value
        self.scheduler.step()
        self.step += 1
        dt = time.perf_counter() - t0
        record["tokens"] = n_tokens
        record["tokens_per_s"] = n_tokens / dt if dt > 0 else 0.0
        return record

    # -- the loop -------------------------------------------------------------------
    def train(self, steps: int | None = None) -> TrainResult:
        """Run until ``steps`` (default ``cfg.steps``) updates are done; save at the end."""
        end = steps if steps is not None else self.cfg.steps
        start_step, t_start, tokens = self.step, time.perf_counter(), 0
        if self.step == 0 and self.dist.main and self.out_dir is not None:
            (self.out_dir / LOG_FILE).unlink(missing_ok=True)  # a fresh run starts a fresh log
        bar = _progress(end, self.step, self.cfg.progress and self.dist.main)
        if self.cfg.snapshot_every and self.dist.main:
            self.snapshots.take(self.model, self.step, self.dist.device)
        last: dict = {}
        eval_loss = None
        try:
            while self.step < end:
                record = self.train_step()
                last = record
                tokens += record.pop("tokens")
                record["elapsed_s"] = time.perf_counter() - t_start
                bar.update(1)
                bar.set_postfix(loss=f"{record['loss']:.4f}", tok_s=f"{record['tokens_per_s']:.0f}",
                                lr=f"{record['lr']:.2e}")
                flagged = record.get("spike") or record.get("skipped")
                if self.step % self.cfg.log_every == 0 or self.step == end or flagged:
                    self._log(record)
                if self.dist.main and self.cfg.snapshot_every and self.step % self.cfg.snapshot_every == 0:
                    self.snapshots.take(self.model, self.step, self.dist.device)
                if self.eval_fn is not None and self.cfg.eval_every and self.step % self.cfg.eval_every == 0:
                    eval_loss = self._evaluate()
                if self.cfg.save_every and self.step % self.cfg.save_every == 0 and self.step < end:
                    self.save()
        finally:
            bar.close()
        if self.eval_fn is not None and (not self.cfg.eval_every or self.step % self.cfg.eval_every):
            eval_loss = self._evaluate()
        if self.dist.main and self.cfg.snapshot_every:
            self.snapshots.take(self.model, self.step, self.dist.device)
        seconds = time.perf_counter() - t_start
        result = TrainResult(self.step, last.get("loss", float("nan")), seconds,
                             tokens / seconds if seconds > 0 else 0.0, self.skipped, self.spikes, eval_loss,
                             self.history)
        if self.dist.main:
            log.info("trained %d steps in %.1f s: loss %.4f, %.0f tokens/s%s", self.step - start_step, seconds,
                     result.final_loss, result.tokens_per_s,
                     f", eval loss {eval_loss:.4f}" if eval_loss is not None else "")
        if self.out_dir is not None:
            self.save(dtype=self.save_dtype, resumable=self.resumable)
        return result

    def _evaluate(self) -> float:
        self.model.eval()
        with torch.no_grad(), self.autocast():
            value = float(self.eval_fn(self.model))
        self.model.train()
        record = {"step": self.step, "eval_loss": value}
        self._log(record)
        return value

    def _log(self, record: dict) -> None:
        self.history.append(record)
        if not self.dist.main:
            return
        log.debug("%s", record)
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            with open(self.out_dir / LOG_FILE, "a") as f:
                f.write(json.dumps(record) + "\n")

    # -- checkpoints ------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "loss_ema": self.loss_ema,
            "skipped": self.skipped,
            "spikes": self.spikes,
            "train_config": self.cfg.to_dict(),
            "rng": {"torch": torch.get_rng_state(), "python": random.getstate(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
        }

    def save(self, directory: str | Path | None = None, dtype: torch.dtype | None = None,
             resumable: bool = True) -> Path | None:
        """Write a checkpoint (rank 0 only). ``resumable`` keeps optimizer state and fp32 weights."""
        directory = Path(directory) if directory is not None else self.out_dir
        if directory is None:
            raise ValueError("no directory to save into: pass one or give the Trainer an out_dir")
        if not self.dist.main:
            return None
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save(directory, dtype=None if resumable else dtype)
        if self.tokenizer is not None:
            self.tokenizer.save(directory)
        if resumable:
            torch.save(self.state_dict(), directory / STATE_FILE)
        else:
            (directory / STATE_FILE).unlink(missing_ok=True)
        summary = {"step": self.step, "train_config": self.cfg.to_dict(), "loss_ema": self.loss_ema,
                   "skipped_steps": self.skipped, "spikes": self.spikes, "resumable": resumable,
                   "weights_dtype": str(dtype or torch.float32).replace("torch.", ""), **self.extra_state}
        (directory / STATE_JSON).write_text(json.dumps(summary, indent=2))
        self.snapshots.save(directory)
        if self.out_dir is not None and directory != self.out_dir and (self.out_dir / LOG_FILE).exists():
            (directory / LOG_FILE).write_text((self.out_dir / LOG_FILE).read_text())
        log.info("saved checkpoint at step %d to %s", self.step, directory)
        return directory

    def load_state(self, directory: str | Path) -> None:
        """Resume: weights, optimizer, scheduler, step and RNG from a resumable checkpoint."""
        directory = Path(directory)
        if not (directory / STATE_FILE).exists():
            raise FileNotFoundError(f"{directory} has no {STATE_FILE}: it was saved without optimizer state "
                                    "(a shipped float16 export?) and cannot be resumed exactly")
        weights = load_model(directory)
        self.model.load_state_dict(weights.state_dict())
        state = torch.load(directory / STATE_FILE, map_location=self.dist.device, weights_only=False)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.loss_ema = state["step"], state["loss_ema"]
        self.skipped, self.spikes = state["skipped"], state["spikes"]
        torch.set_rng_state(state["rng"]["torch"])
        random.setstate(state["rng"]["python"])
        if state["rng"]["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.snapshots.load(directory)
        log.info("resumed from %s at step %d", directory, self.step)


def _progress(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, unit="step", dynamic_ncols=True,
                desc="train", leave=False)


# ----------------------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate_loss(model: TransformerModel, batches: BatchFn, n_batches: int = 8) -> float:
    """Mean loss over the first ``n_batches`` batches of a (validation) batch function."""
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    losses = [float(model(**{k: v.to(device) for k, v in batches(i).items()}).loss) for i in range(n_batches)]
    model.train(was)
    return sum(losses) / len(losses)


# ----------------------------------------------------------------------------- memory


def checkpointing_memory_report(config: TransformerConfig, batch: Batch, device: str = "cpu",
                                threads: int = 2) -> dict:
    """Peak memory of one forward+backward on the same batch, with and without checkpointing.

    Measured by ``models.memory.measure_peak`` (the one place attnlab measures memory): the
    peak of what torch allocates during the step above what it held before it, from the
    allocator (torch's profiler events on CPU, ``max_memory_allocated`` on CUDA), never
    process RSS. Each model does one warm-up step first, so lazy initialisation and the
    gradients' own buffers are in the baseline. Returns MiB figures and the saving.
    """
    from .memory import measure_peak

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
            _, peak = measure_peak(lambda: model(**on_device).loss.backward(), device)
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


def build_tokenizer(corpus_text: str, kind: str, vocab_size: int, objective: Objective):
    """A char or byte-level BPE tokenizer for a corpus; sentinels for the span objective."""
    from .tokenization import CharTokenizer, train_bpe

    n_sentinels = 100 if objective == "span" else 0
    if kind == "char":
        return CharTokenizer.from_corpus(corpus_text, n_sentinels=n_sentinels)
    if kind == "bpe":
        return train_bpe(corpus_text, vocab_size, n_sentinels=n_sentinels)
    raise ValueError(f"unknown tokenizer {kind!r}; known: ['bpe', 'char']")


def train_main(
    out_dir: str | Path = "runs/train",
    corpus: str = "austen",
    objective: Objective = "clm",
    preset_name: str = "tiny",
    tokenizer: Literal["bpe", "char"] = "bpe",
    vocab_size: int = 2048,
    block_size: int = 128,
    batch_size: int = 16,
    steps: int = 500,
    lr: float = 1e-3,
    schedule: str = "warmup_cosine",
    warmup: int = 50,
    weight_decay: float = 0.1,
    grad_clip: float = 1.0,
    precision: Precision = "fp32",
    gradient_checkpointing: bool = False,
    memory_report: bool = False,
    backend: str = "sdpa",
    snapshot_every: int = 0,
    probe_text: str | None = None,
    resume: str | Path | None = None,
    save_dtype: str = "float32",
    seed: int = 0,
    device: str | None = None,
    threads: int | None = None,
    plot_lr: bool = False,
    progress: bool = True,
    **model_overrides: object,
) -> dict:
    """Train a model on a corpus; the library behind ``attnlab train``.

    ``preset_name`` picks a ``models.config.PRESETS`` entry, ``model_overrides`` replace
    its fields (``d_model=128, n_layers=4, positional="rope"``); the family follows the
    objective (clm: decoder, mlm: encoder, span: encoder-decoder) and the vocabulary
    size follows the tokenizer. ``plot_lr`` returns only the LR curve, training nothing.
    ``memory_report`` adds the peak memory with and without gradient checkpointing on one
    batch. Under ``torchrun`` the global ``batch_size`` is split across ranks.
    Returns a summary dict (also written to ``<out_dir>/train_summary.json``).
    """
    if threads:
        torch.set_num_threads(threads)
    if plot_lr:
        cfg = preset(preset_name)
        return lr_curve(schedule, steps, lr, warmup, d_model=int(model_overrides.get("d_model", cfg.d_model)))
    torch.manual_seed(seed)
    out_dir = Path(out_dir)
    from .data import load_corpus, train_val_split
    from .tokenization import load_tokenizer

    text = load_corpus(corpus)
    tok = load_tokenizer(resume) if resume else build_tokenizer(text, tokenizer, vocab_size, objective)
    ids = torch.tensor(tok.encode(text), dtype=torch.long)
    train_ids, val_ids = train_val_split(ids, 0.05)
    if resume:
        config = TransformerConfig.load(Path(resume) / "config.json")
    else:
        config = preset(preset_name, family=OBJECTIVE_FAMILY[objective], vocab_size=tok.vocab_size,
                        pad_token_id=tok.pad_id or 0, **model_overrides)
        if config.positional == "learned" and config.max_positions < block_size:
            config = config.replace(max_positions=block_size)
    model = build_model(config)
    train_cfg = TrainConfig(steps=steps, lr=lr, schedule=schedule, warmup=warmup, weight_decay=weight_decay,
                            grad_clip=grad_clip, precision=precision, gradient_checkpointing=gradient_checkpointing,
                            backend=backend, snapshot_every=snapshot_every, seed=seed, progress=progress,
                            log_every=10)
    batches = lm_batches(train_ids, block_size, batch_size, objective, tokenizer=tok, seed=seed)
    val = lm_batches(val_ids, block_size, batch_size, objective, tokenizer=tok, seed=seed + 1)
    probes = []
    if snapshot_every:
        text_probe = probe_text or text[len(text) // 2 : len(text) // 2 + 200]
        if objective == "span":
            probes = [Probe.from_text("probe", text_probe[:100], tok, target=text_probe[100:140])]
        else:
            probes = [Probe.from_text("probe", text_probe, tok, max_tokens=64)]
    trainer = Trainer(model, train_cfg, batches, out_dir=out_dir, tokenizer=tok, probes=probes,
                      eval_fn=lambda m: evaluate_loss(m, val, 8), device=device,
                      extra_state={"corpus": str(corpus), "objective": objective, "block_size": block_size})
    if resume:
        trainer.load_state(resume)
    summary: dict = {"out_dir": str(out_dir), "config": config.to_dict(), "n_params": model.num_parameters()}
    if memory_report and trainer.dist.main:
        summary["memory"] = checkpointing_memory_report(config, batches(0), trainer.dist.device.type,
                                                        torch.get_num_threads())
    result = trainer.train()
    summary.update(result.to_dict())
    if result.eval_loss is not None:
        summary["val_perplexity"] = math.exp(min(result.eval_loss, 50))
    if trainer.dist.main:
        if save_dtype != "float32":  # a small, non-resumable export next to nothing else
            trainer.save(out_dir, dtype=getattr(torch, save_dtype), resumable=False)
        (out_dir / "train_summary.json").write_text(json.dumps(summary, indent=2))
    if trainer.dist.enabled:
        dist.destroy_process_group()
    return summary


def parse_value(raw: str) -> object:
    """A ``--set key=value`` value: int, float, true/false/none, else the string."""
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(raw.lower(), raw)


def main(argv: Sequence[str] | None = None) -> dict:
    """``python -m models.training [--flags] [--set d_model=128 ...]`` (torchrun works too)."""
    p = argparse.ArgumentParser(prog="python -m models.training", description=train_main.__doc__.splitlines()[0])
    p.add_argument("--out-dir", default="runs/train")
    p.add_argument("--corpus", default="austen")
    p.add_argument("--objective", choices=sorted(OBJECTIVE_FAMILY), default="clm")
    p.add_argument("--preset", dest="preset_name", choices=sorted(PRESETS), default="tiny")
    p.add_argument("--tokenizer", choices=["bpe", "char"], default="bpe")
    p.add_argument("--vocab-size", type=int, default=2048)
    p.add_argument("--block-size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--schedule", default="warmup_cosine")
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--memory-report", action="store_true")
    p.add_argument("--backend", default="sdpa")
    p.add_argument("--snapshot-every", type=int, default=0)
    p.add_argument("--probe-text")
    p.add_argument("--resume")
    p.add_argument("--save-dtype", choices=["float32", "float16", "bfloat16"], default="float32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device")
    p.add_argument("--threads", type=int)
    p.add_argument("--plot-lr", action="store_true", help="print the LR curve as JSON and exit")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="model config overrides")
    args = vars(p.parse_args(argv))
    overrides = dict(item.split("=", 1) for item in args.pop("set"))
    summary = train_main(**args, **{k: parse_value(v) for k, v in overrides.items()})
    if int(os.environ.get("RANK", "0")) == 0:
        sys.stdout.write(json.dumps(summary, indent=1) + "\n")
    return summary


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    main()
