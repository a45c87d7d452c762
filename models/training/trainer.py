"""The ``Trainer``: one model, one optimizer, one batch function; DDP when launched by torchrun.

Files a checkpoint directory holds: ``config.json`` + ``model.safetensors`` (the model's
own ``save``), the tokenizer, ``trainer_state.pt`` (optimizer, scheduler, step, RNG; only in
resumable checkpoints), ``trainer_state.json`` (a readable summary), ``log.jsonl`` (one record
per logged step) and the snapshots (``attnlab.models.training.snapshots``). ``evaluate_loss`` is the
mean loss over a few batches."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..architectures import TransformerModel, load_model
from ..schedules import make_scheduler
from .batches import batch_tokens
from .config import LOG_FILE, STATE_FILE, STATE_JSON, Batch, BatchFn, TrainConfig, TrainingDiverged, make_optimizer
from .distributed import init_distributed, shard
from .snapshots import Probe, Snapshots

log = logging.getLogger(__name__)


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

