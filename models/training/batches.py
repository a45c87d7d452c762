"""Batches as pure functions of the step: windows of a token stream, corrupted per objective.

``lm_batches`` returns a ``BatchFn`` (step -> the global batch): ``clm`` (GPT), ``mlm`` (BERT
80/10/10), ``span`` (T5 span corruption). Because a batch depends only on (seed, step), resuming
replays exactly the batches that would have come next. ``pad_seq2seq`` builds a teacher-forcing
batch; ``batch_tokens`` counts input tokens."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import Tensor

from ..data import IGNORE_INDEX, mask_tokens, span_corrupt
from ..names import lookup
from .config import OBJECTIVE_FAMILY, Batch, BatchFn, Objective

log = logging.getLogger(__name__)


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
    lookup(OBJECTIVE_FAMILY, objective, "objective")
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


def batch_tokens(batch: Batch) -> int:
    """Input tokens in a batch (both sides for encoder-decoder)."""
    if "src" in batch:
        return int(batch["src_mask"].sum()) + int(batch["tgt"].numel())
    return int(batch["ids"].numel())
