"""Training logs, results and attention snapshots of the zoo's checkpoints (written by models.training)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from attnlab.models.paths import USER_PREFIX

from .errors import Invalid, NotFound

RESULT_FILES = (("results.json", "results"), ("train_summary.json", "summary"), ("snapshots.json", "snapshots"))


def training_models(root: Path) -> list[str]:
    """The checkpoints under ``root`` that have a training log."""
    return sorted(p.parent.name for p in root.glob("*/log.jsonl")) if root.is_dir() else []


def checkpoints(zoo_dir: Path, user_dir: Path | None = None) -> list[dict]:
    """``[{name, snapshots}]``: checkpoints with a training log, and whether they have attention snapshots; the
    user's own lab runs (``user_dir``, the data dir's ``labs``) after the zoo's, as ``my-<name>``."""
    out = []
    for prefix, root in (("", Path(zoo_dir)), (USER_PREFIX, user_dir)):
        if root is not None:
            out += [{"name": prefix + n, "snapshots": (root / n / "snapshots.json").is_file()}
                    for n in training_models(root)]
    return out


def checkpoint_dir(zoo_dir: Path, name: str, user_dir: Path | None = None) -> Path:
    """The directory of checkpoint ``name`` (``my-<name>``: the user's own run in ``user_dir``); NotFound (404)
    for a name outside the zoo or without a log."""
    root = Path(zoo_dir)
    if user_dir is not None and name.startswith(USER_PREFIX):
        root, name = Path(user_dir), name[len(USER_PREFIX):]
    root = root.resolve()
    directory = (root / name).resolve()
    if directory.parent != root or not (directory / "log.jsonl").is_file():
        known = [c["name"] for c in checkpoints(zoo_dir, user_dir)]
        raise NotFound(f"model: no training log for {name!r}; checkpoints with one: {known}")
    return directory


def read_log(directory: Path) -> list[dict]:
    """The log records, one per logged step; NaN values (skipped steps) left out: JSON has no NaN."""
    records = []
    for line in (directory / "log.jsonl").read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line being written right now
        records.append({k: v for k, v in record.items() if not (isinstance(v, float) and not math.isfinite(v))})
    return records


def training_record(zoo_dir: Path, name: str, user_dir: Path | None = None) -> dict:
    """``{name, log, results?, summary?, snapshots?}`` of one checkpoint (the optional files it has)."""
    directory = checkpoint_dir(zoo_dir, name, user_dir)
    record: dict = {"name": name, "log": read_log(directory)}
    for file, key in RESULT_FILES:
        if (directory / file).is_file():
            record[key] = json.loads((directory / file).read_text())
    return record


def snapshot_maps(zoo_dir: Path, name: str, probe: str, kind: str | None, layer: int, head: int,
                  user_dir: Path | None = None) -> dict:
    """One head's attention on a probe at every snapshot step: ``maps`` (steps, T_query, T_key), with the tokens
    labelling each axis. NotFound without snapshots; Invalid for a probe, kind, layer or head not recorded."""
    from attnlab.models.training import load_snapshots

    directory = checkpoint_dir(zoo_dir, name, user_dir)
    if not (directory / "snapshots.json").is_file():
        raise NotFound(f"model: {name!r} was trained without attention snapshots")
    meta, tensors = load_snapshots(directory)
    probes = {p["name"]: p for p in meta["probes"]}
    if probe not in probes:
        raise Invalid(f"probe: {probe!r} unknown; probes: {sorted(probes)}")
    recorded = probes[probe]["kinds"]
    chosen = kind or recorded[0]
    if chosen not in recorded:
        raise Invalid(f"kind: probe {probe!r} recorded {recorded}, not {chosen!r}")
    steps, maps = [], []
    n_layers = n_heads = None
    for step in meta["steps"]:
        t = tensors.get(f"step{step}/{probe}/{chosen}")
        if t is None:
            continue
        n_layers, n_heads = t.shape[0], t.shape[1]
        if layer >= n_layers or head >= n_heads:
            raise Invalid(f"layer/head: {layer}/{head} outside {n_layers} layers x {n_heads} heads")
        steps.append(step)
        maps.append(np.asarray(t[layer, head].float().numpy()))
    p = probes[probe]
    # labels made by load_snapshots with the label rule of every view; the decoder side reads the target
    source = (p["tokens"], p.get("ids"))
    target = (p["target_tokens"], p.get("target_ids")) if p.get("target_tokens") else source
    rows = target if chosen in ("decoder", "cross") else source
    cols = source if chosen in ("encoder", "cross") else target
    return {"name": name, "probe": probe, "kind": chosen, "layer": layer, "head": head, "steps": steps,
            "n_layers": n_layers, "n_heads": n_heads, "row_tokens": rows[0], "col_tokens": cols[0],
            "row_token_ids": rows[1], "col_token_ids": cols[1],
            "maps": np.stack(maps) if maps else []}
