"""Figure JSON for the pages (app.figures), and the training logs and snapshots of zoo checkpoints.

``/api/figures/...`` answers ``{"figure": <plotly figure JSON>, ...data}``: the data the
figure was drawn from travels with it, so the page can export exactly what it shows.
Included by app.pages' router; handlers stay thin, the work is in app.figures and
models.introspection.
"""

from __future__ import annotations

import json
import math
from pathlib import Path as FsPath
from typing import Annotated

import anyio.to_thread
import numpy as np
import plotly.io as pio
from fastapi import APIRouter, Path, Query
from starlette.responses import Response

from models.introspection import describe_architecture, profile_architecture, profile_cost_gflop

from .. import figures
from ..schemas import BenchmarkRequest, Kind, Scheme, SelfKind, SyntheticBenchmarkRequest
from ..services.errors import Invalid, NotFound, TooLarge
from ..services.positional import describe_scheme
from ..transport import OrjsonResponse
from . import ERRORS, ServicesDep

router = APIRouter(tags=["figures"])

RunIdPath = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]
ZooName = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="a directory of models/zoo")]
ModelIdPath = Annotated[str, Path(min_length=1, max_length=200)]


def fig_json(fig) -> dict:
    """A figure as plain JSON (plotly's encoder handles numpy and the layout template)."""
    return json.loads(pio.to_json(fig, validate=False))


def _answer(fig, **data: object) -> Response:
    return OrjsonResponse({"figure": fig_json(fig), **data})


# ----------------------------------------------------------------------------- positional


@router.get("/api/figures/positional/{scheme}", responses={k: ERRORS[k] for k in (413, 422)})
async def positional_figures(scheme: Scheme, services: ServicesDep, d_model: int = Query(64, ge=2, le=1024),
                             max_len: int = Query(128, ge=2, le=2048), n_heads: int = Query(8, ge=1, le=64)
                             ) -> Response:
    """Every figure the scheme has: encoding matrix, RoPE rotations, ALiBi biases, T5 buckets."""
    desc = await anyio.to_thread.run_sync(describe_scheme, scheme, d_model, max_len, n_heads, services.settings)
    builders = {"matrix": figures.positional_matrix, "rotations": figures.rope_rotations,
                "slopes": figures.alibi_biases, "buckets": figures.t5_buckets}
    out = {key: fig_json(build(desc)) for key, build in builders.items() if key in desc}
    return OrjsonResponse({"scheme": scheme, "figures": out, "data": desc})


@router.get("/api/figures/similarity", responses={k: ERRORS[k] for k in (413, 422)})
async def similarity_figure(services: ServicesDep, d_model: int = Query(64, ge=2, le=1024),
                            max_len: int = Query(128, ge=2, le=2048), n_heads: int = Query(8, ge=1, le=64)
                            ) -> Response:
    """Similarity vs offset for every scheme that has one (learned is its random initialisation)."""
    def build() -> dict:
        return {s: describe_scheme(s, d_model, max_len, n_heads, services.settings)
                for s in ("sinusoidal", "rope", "alibi", "learned")}

    descs = await anyio.to_thread.run_sync(build)
    data = {s: d.get("similarity") for s, d in descs.items()}
    return _answer(figures.positional_similarity(descs), data=data)


@router.get("/api/figures/extrapolation")
async def extrapolation_figure(services: ServicesDep) -> Response:
    """The extrapolation lab's curve; ``available: false`` with the reason when it has not run."""
    path = FsPath(services.settings.zoo_dir) / "extrapolation" / "results.json"
    if not path.is_file():
        return OrjsonResponse({"available": False, "reason": "no extrapolation results on this server yet: run "
                               "`attnlab lab extrapolation` (writes models/zoo/extrapolation/results.json)"})
    results = json.loads(path.read_text())
    return _answer(figures.extrapolation_curve(results), available=True, data=results)


# ----------------------------------------------------------------------------- backends, heads


@router.post("/api/figures/benchmark", responses={k: ERRORS[k] for k in (404, 409, 413, 422, 429, 503)})
async def benchmark_figure(req: BenchmarkRequest, services: ServicesDep) -> Response:
    """Run POST /api/benchmark's measurement and draw it (time and memory vs T, log-log)."""
    service = services.benchmark
    if isinstance(req, SyntheticBenchmarkRequest):
        rows = await service.synthetic(req.seq_lens, req.backends, req.causal, req.n_heads, req.head_dim, req.passes)
        form = "synthetic"
    else:
        rows = await service.on_model(req.model, req.text, req.backends)
        form = "model"
    return _answer(figures.benchmark_figure(rows), form=form, results=rows)


@router.get("/api/figures/heads/{run_id}", responses={k: ERRORS[k] for k in (404, 413, 422)})
async def heads_figure(run_id: RunIdPath, services: ServicesDep,
                       kind: SelfKind | None = Query(None, description="default: the run's first kind")) -> Response:
    """Head-type scores of a run as one layers x heads heatmap per detector."""
    run = services.runs.get(run_id)
    stats = await services.runs.heads(run)
    kind = kind or next(iter(stats), None)
    if kind not in stats:
        raise Invalid(f"kind: run {run_id} has head scores for {sorted(stats)}, not {kind!r}")
    return _answer(figures.head_type_grids(stats[kind]), kind=kind, scores=stats[kind])


# ----------------------------------------------------------------------------- architecture


@router.get("/api/figures/architecture/{model_id}", responses={k: ERRORS[k] for k in (404, 409)})
async def architecture(model_id: ModelIdPath, services: ServicesDep,
                       context: int = Query(128, ge=1, le=131072)) -> Response:
    """Blocks, shapes, parameters and FLOPs per token by component, from the model's config."""
    detail = await services.hub.describe(model_id)
    config = detail.get("config") or {}
    if not config:
        raise Invalid(f"model: {model_id!r} does not describe its config")
    arch = describe_architecture(detail["family"], config, context)
    arch["model"] = {k: detail.get(k) for k in ("id", "family", "source", "n_params", "positional", "description")}
    return _answer(figures.architecture_figure(arch), architecture=arch)


@router.get("/api/figures/profile/{model_id}", responses={k: ERRORS[k] for k in (404, 409, 413)})
async def profile(model_id: ModelIdPath, services: ServicesDep, tokens: int = Query(32, ge=4, le=512)) -> Response:
    """Forward and backward time per component on a fresh copy of the architecture (cached). Bounded by
    `profile_max_gflop`: a profile estimated above it is refused with 413 before it starts."""
    adapter = await services.hub.adapter(model_id)  # 404 or 409 first
    info = adapter.info
    if tokens > info.max_positions:
        raise TooLarge(f"tokens: {tokens} tokens is more than model {model_id!r} accepts "
                       f"(max_positions {info.max_positions})")
    n_params = info.n_params or sum(p.numel() for p in adapter.model.parameters())
    cost, budget = profile_cost_gflop(n_params, tokens), services.settings.profile_max_gflop
    if cost > budget:
        raise TooLarge(f"tokens: profiling {model_id!r} ({n_params:,} parameters) at {tokens} tokens is about "
                       f"{cost:,.0f} GFLOP, over profile_max_gflop {budget:,.0f}; use fewer tokens or a smaller model")
    result = await anyio.to_thread.run_sync(profile_architecture, adapter, tokens)
    return _answer(figures.profile_figure(result), profile=result)


# ----------------------------------------------------------------------------- training


def _zoo_dir(services, name: str) -> FsPath:
    root = FsPath(services.settings.zoo_dir).resolve()
    directory = (root / name).resolve()
    if directory.parent != root or not (directory / "log.jsonl").is_file():
        raise NotFound(f"model: no training log for {name!r}; checkpoints with one: {training_models(root)}")
    return directory


def training_models(root: FsPath) -> list[str]:
    return sorted(p.parent.name for p in root.glob("*/log.jsonl")) if root.is_dir() else []


def read_log(directory: FsPath) -> list[dict]:
    records = []
    for line in (directory / "log.jsonl").read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line being written right now
        # NaN losses (skipped steps) are kept out: JSON has no NaN
        records.append({k: v for k, v in record.items() if not (isinstance(v, float) and not math.isfinite(v))})
    return records


@router.get("/api/training")
async def training_list(services: ServicesDep) -> Response:
    """Zoo checkpoints that have a training log (and whether they have attention snapshots)."""
    root = FsPath(services.settings.zoo_dir)
    return OrjsonResponse([{"name": n, "snapshots": (root / n / "snapshots.json").is_file()}
                           for n in training_models(root)])


@router.get("/api/training/{name}", responses={404: ERRORS[404]})
async def training(name: ZooName, services: ServicesDep) -> Response:
    """Loss and LR curves (figure + log records), results and the snapshot index of a checkpoint."""
    directory = _zoo_dir(services, name)
    records = read_log(directory)
    extra = {}
    for file, key in (("results.json", "results"), ("train_summary.json", "summary"), ("snapshots.json", "snapshots")):
        if (directory / file).is_file():
            extra[key] = json.loads((directory / file).read_text())
    return _answer(figures.training_curves(records), name=name, log=records, **extra)


@router.get("/api/training/{name}/snapshots", responses={k: ERRORS[k] for k in (404, 422)})
async def training_snapshots(name: ZooName, services: ServicesDep, probe: str = Query(..., max_length=64),
                             kind: Kind | None = Query(None, description="default: the probe's first recorded kind"),
                             layer: int = Query(0, ge=0, lt=1024),
                             head: int = Query(0, ge=0, lt=1024)) -> Response:
    """One head's attention on a probe at every snapshot step: ``maps[step][query][key]``."""
    directory = _zoo_dir(services, name)
    if not (directory / "snapshots.json").is_file():
        raise NotFound(f"model: {name!r} was trained without attention snapshots")

    def load() -> dict:
        from models.training import load_snapshots

        meta, tensors = load_snapshots(directory)
        probes = {p["name"]: p for p in meta["probes"]}
        if probe not in probes:
            raise Invalid(f"probe: {probe!r} unknown; probes: {sorted(probes)}")
        recorded = probes[probe]["kinds"]
        chosen = kind or recorded[0]
        if chosen not in recorded:
            raise Invalid(f"kind: probe {probe!r} recorded {recorded}, not {chosen!r}")
        steps, maps = [], []
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

    return OrjsonResponse(await anyio.to_thread.run_sync(load))

