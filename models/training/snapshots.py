"""Attention snapshots: maps of fixed probe inputs saved every few steps, to watch attention form.

``Probe`` is a fixed input; ``Snapshots`` takes (and saves as ``snapshots.safetensors`` +
``snapshots.json``) the maps of every probe at a step; ``load_snapshots`` reads them back."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from ..architectures import TransformerModel
from ..capture import capture
from ..tokenization import load_tokenizer
from .config import SNAPSHOT_FILE, SNAPSHOT_JSON, Batch

log = logging.getLogger(__name__)


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
                  max_tokens: int | None = None) -> Probe:
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


