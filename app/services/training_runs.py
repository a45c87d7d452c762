"""Training runs to overlay: the shipped zoo's and the user's own (``<data_dir>/labs``), from two kinds of files.

- a checkpoint's ``log.jsonl`` (``attnlab train``, the labs that ship a model): one run, id ``<name>``;
- a comparison lab's ``results.json`` with ``runs`` (``stability``, ``schedules``): one run per variant,
  id ``<lab>.<variant>``.

A user's re-run of a lab is listed beside the shipped one with the ``my-`` prefix (``my-lm``,
``my-stability.post_nowarmup_high``). Every run has the same series: ``step``, ``loss``, ``lr``,
``grad_norm`` (``null`` where a step did not log it), ``spikes`` and ``skipped`` (steps the trainer's
guards flagged), and, where recorded, ``layer_grad_norms`` (``[layer][i]``). Captions say what to look for,
from the numbers themselves.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from attnlab.models.paths import USER_PREFIX

from ..core.settings import Settings
from .errors import NotFound
from .training import read_log

CHECKPOINTING = "checkpointing"


@dataclass(frozen=True)
class Root:
    prefix: str
    path: Path
    source: str  # "zoo" (shipped with attnlab) | "user" (written by a run on this machine)


def roots(settings: Settings) -> list[Root]:
    return [Root("", Path(settings.zoo_dir), "zoo"), Root(USER_PREFIX, Path(settings.labs_dir), "user")]


def _num(x: object) -> float | None:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _log_run(root: Root, directory: Path) -> dict:
    records = [r for r in read_log(directory) if "loss" in r]
    state_file = directory / "trainer_state.json"
    state = json.loads(state_file.read_text()) if state_file.is_file() else {}
    tc = state.get("train_config", {})
    run = {
        "id": root.prefix + directory.name, "group": root.prefix + directory.name, "source": root.source,
        "label": f"{root.prefix}{directory.name} (checkpoint)",
        "step": [r["step"] for r in records], "loss": [_num(r.get("loss")) for r in records],
        "lr": [_num(r.get("lr")) for r in records], "grad_norm": [_num(r.get("grad_norm")) for r in records],
        "spikes": [r["step"] for r in records if r.get("spike")],
        "skipped": [r["step"] for r in records if r.get("skipped")],
        "diverged_at": None, "val_loss": None, "layer_grad_norms": None,
    }
    tail = [v for v in run["loss"][-max(1, len(records) // 10):] if v is not None]
    run["final_loss"] = sum(tail) / len(tail) if tail else None
    shape = "its schedule"
    if tc:
        after = "stays flat" if tc["schedule"] == "constant" else "decays"
        shape = (f"the {tc['schedule']} schedule (peak lr {tc['lr']:g}): the learning rate rises over a "
                 f"{tc['warmup']}-step warmup, then {after}")
    spikes = (f"the guards flagged loss spikes at steps {run['spikes'][:5]}" if run["spikes"]
              else "no loss spikes")
    who = "A shipped checkpoint" if root.source == "zoo" else "Your checkpoint"
    run["caption"] = f"{who}, trained with {shape}; {spikes}; the loss ends near {_fmt(run['final_loss'])}."
    return run


def _lab_runs(root: Root, directory: Path, results: dict) -> list[dict]:
    lab = results.get("lab", directory.name)
    group = root.prefix + directory.name
    variants = results["runs"]
    finals = {r["name"]: r.get("val_loss") for r in variants}
    best_name = min((n for n in finals if finals[n] is not None), key=lambda n: finals[n], default=None)
    out = []
    for r in variants:
        run = {
            "id": f"{group}.{r['name']}", "group": group, "source": root.source, "lab": lab, "variant": r["name"],
            "label": f"{root.prefix}{lab}: {r['label']}",
            **{k: r.get(k) for k in ("step", "loss", "lr", "grad_norm", "spikes", "skipped", "diverged_at",
                                     "final_loss", "val_loss", "layer_grad_norms")},
        }
        run["caption"] = _caption(run, r, best_name, finals)
        out.append(run)
    return out


def _caption(run: dict, variant: dict, best: str | None, finals: dict) -> str:
    parts = [variant["label"] + ":"]
    if run["diverged_at"] is not None:
        parts.append(f"diverged at step {run['diverged_at']} (the NaN guard stopped it after non-finite losses);")
    elif run["skipped"]:
        parts.append(f"non-finite steps skipped at {run['skipped'][:5]};")
    if run["spikes"]:
        first = run["spikes"][0]
        i = run["step"].index(first) if first in run["step"] else None
        value = run["loss"][i] if i is not None else None
        parts.append(f"the loss jumps at step {first} (to {_fmt(value)}; {len(run['spikes'])} spike steps in all);")
    losses = [v for v in run["loss"] if v is not None]
    plateau = _plateau_from(run["step"], run["loss"])
    if plateau is not None:
        parts.append(f"the loss is flat from step {plateau} on (within {PLATEAU_NATS} nats): a plateau, it stopped "
                     "learning;")
    if losses and run["diverged_at"] is None:
        parts.append(f"from {_fmt(losses[0])} the training loss falls to {_fmt(run['final_loss'])} "
                     f"(validation {_fmt(run['val_loss'])})")
        if best is not None and best != variant["name"] and run["val_loss"] is not None:
            parts.append(f", {run['val_loss'] - finals[best]:+.3f} against the best run of the lab ({best}).")
        elif best == variant["name"]:
            parts.append(", the best of the lab.")
        else:
            parts.append(".")
    return " ".join(parts).replace(" ,", ",")


PLATEAU_NATS = 0.1


def _plateau_from(steps: list[int], losses: list[float | None]) -> int | None:
    """The step from which the loss stays flat to the end (the mean of the last tenth within PLATEAU_NATS of the
    mean around the first fifth of the run), or None: a run that keeps learning has no plateau."""
    n = len(losses)
    if n < 20 or any(v is None for v in losses):
        return None
    tenth = n // 10
    early = sum(losses[2 * tenth : 3 * tenth]) / tenth
    late = sum(losses[-tenth:]) / tenth
    return steps[2 * tenth] if abs(early - late) < PLATEAU_NATS else None


def all_runs(settings: Settings) -> list[dict]:
    """Every run of every root, zoo first; each with its series and caption."""
    runs: list[dict] = []
    for root in roots(settings):
        if not root.path.is_dir():
            continue
        for directory in sorted(p for p in root.path.iterdir() if p.is_dir()):
            results_file = directory / "results.json"
            results = None
            if results_file.is_file():
                try:
                    results = json.loads(results_file.read_text())
                except json.JSONDecodeError:
                    results = None  # being written
            if isinstance(results, dict) and isinstance(results.get("runs"), list):
                runs.extend(_lab_runs(root, directory, results))
            elif (directory / "log.jsonl").is_file():
                runs.append(_log_run(root, directory))
    return runs


SUMMARY_FIELDS = ("id", "group", "source", "label", "caption", "final_loss", "val_loss", "diverged_at")


def run_index(settings: Settings) -> dict:
    """``{runs: [summary], groups: {group: {claims, holds}}, checkpointing}``: what ``GET /api/training/runs``
    lists; ``checkpointing`` says where the checkpointing table comes from ("user", "zoo") or None."""
    runs = all_runs(settings)
    summaries = [{**{k: r.get(k) for k in SUMMARY_FIELDS}, "steps": len(r["step"] or []),
                  "n_spikes": len(r["spikes"] or []), "has_layer_grad_norms": bool(r.get("layer_grad_norms"))}
                 for r in runs]
    return {"runs": summaries, "groups": lab_groups(settings), "checkpointing": checkpointing_source(settings)}


def checkpointing_source(settings: Settings) -> str | None:
    """Where ``checkpointing_results`` reads from: "user" (a re-run here), "zoo" (shipped), or None."""
    for root in reversed(roots(settings)):
        if (root.path / CHECKPOINTING / "results.json").is_file():
            return root.source
    return None


def lab_groups(settings: Settings) -> dict[str, dict]:
    """Per comparison lab (zoo and user): its claims, whether they held, and its setup."""
    groups = {}
    for root in roots(settings):
        for results_file in sorted(root.path.glob("*/results.json")) if root.path.is_dir() else []:
            try:
                results = json.loads(results_file.read_text())
            except json.JSONDecodeError:
                continue
            if isinstance(results.get("runs"), list):
                groups[root.prefix + results_file.parent.name] = {
                    "lab": results.get("lab"), "source": root.source, "holds": results.get("holds"),
                    "claims": results.get("claims", {}), "quick": results.get("quick"),
                    "setup": results.get("setup", {})}
    return groups


def run_series(settings: Settings, run_id: str) -> dict:
    """One run's full series; NotFound (404) naming the known ids."""
    runs = all_runs(settings)
    for run in runs:
        if run["id"] == run_id:
            return run
    raise NotFound(f"run_id: no training run {run_id!r}; runs: {[r['id'] for r in runs]}")


def checkpointing_results(settings: Settings) -> dict:
    """The gradient-checkpointing table: the user's re-run (``attnlab bench checkpointing``) if there is one,
    else the shipped one; NotFound (404) when neither exists."""
    for root in reversed(roots(settings)):  # a re-run on this machine first
        path = root.path / CHECKPOINTING / "results.json"
        if path.is_file():
            return {"source": root.source, **json.loads(path.read_text())}
    raise NotFound("no gradient-checkpointing results on this server: run `attnlab bench checkpointing` "
                   f"(writes {Path(settings.labs_dir) / CHECKPOINTING / 'results.json'})")
