"""Training for the from-scratch models: a package with one file per idea.

- ``config``: ``TrainConfig``, ``OBJECTIVE_FAMILY``, the optimizer (``make_optimizer``) and ``lr_curve``;
- ``batches``: ``lm_batches`` per objective, ``pad_seq2seq``, ``step_generator``;
- ``distributed``: ``init_distributed`` and ``shard`` under torchrun;
- ``snapshots``: ``Probe``, ``Snapshots``, ``load_snapshots``;
- ``trainer``: ``Trainer``, ``TrainResult``, ``evaluate_loss``;
- ``memory_report``: ``checkpointing_memory_report`` (peaks from ``attnlab.models.memory.measure_peak``);
- ``run``: ``train_main``, the library behind ``attnlab train`` (the CLI parses the arguments).


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

from .batches import batch_tokens, lm_batches, pad_seq2seq, span_batch, step_generator
from .config import (
    OBJECTIVE_FAMILY,
    Batch,
    BatchFn,
    Objective,
    Precision,
    TrainConfig,
    TrainingDiverged,
    lr_curve,
    make_optimizer,
    param_groups,
)
from .distributed import DistInfo, init_distributed, shard
from .memory_report import checkpointing_memory_report
from .run import build_tokenizer, train_main
from .snapshots import Probe, Snapshots, load_snapshots
from .trainer import Trainer, TrainResult, evaluate_loss

__all__ = [
    "OBJECTIVE_FAMILY", "Batch", "BatchFn", "DistInfo", "Objective", "Precision", "Probe", "Snapshots", "TrainConfig",
    "TrainResult", "Trainer", "TrainingDiverged", "batch_tokens", "build_tokenizer", "checkpointing_memory_report",
    "evaluate_loss", "init_distributed", "lm_batches", "load_snapshots", "lr_curve", "make_optimizer",
    "pad_seq2seq", "param_groups", "shard", "span_batch", "step_generator", "train_main",
]
