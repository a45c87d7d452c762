"""The `attnlab` command line: serve, list models, benchmarks, training and labs.

Output meant for a person goes through rich; everything else is logging.
"""

from __future__ import annotations

import argparse
import json as jsonlib
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="attnlab: see what Transformer attention does.", no_args_is_help=True)
bench = typer.Typer(help="Benchmarks that print ratios measured side by side in one run.", no_args_is_help=True)
app.add_typer(bench, name="bench")
console = Console() if sys.stdout.isatty() else Console(width=200)  # pipes: do not wrap at 80


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level, format=LOG_FORMAT)


def server_log_config(level: str) -> dict:
    """uvicorn's logging config, which it applies in every worker process (basicConfig here would reach
    only this one): one format for every logger, and uvicorn's access log off. Its request line carries
    the query string, where the pages keep the user's text; attnlab.access logs one line per request
    instead, with the path, sizes, time and request id (app/core/middleware.py)."""
    return {"version": 1, "disable_existing_loggers": False,
            "formatters": {"plain": {"format": LOG_FORMAT}},
            "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain",
                                    "stream": "ext://sys.stderr"}},
            "root": {"handlers": ["stderr"], "level": level.upper()},
            "loggers": {"uvicorn.access": {"handlers": [], "propagate": False}}}


@app.command()
def serve(host: str = typer.Option(None, help="default: ATTNLAB_HOST or 127.0.0.1"),
          port: int = typer.Option(None, min=1, max=65535, help="default: ATTNLAB_PORT or 8000"),
          workers: int = typer.Option(None, min=1, help="uvicorn worker processes (default: ATTNLAB_WORKERS or 1)"),
          reload: bool = False,
          model: list[Path] = typer.Option(None, "--model", metavar="PATH",
                                           help="also serve this model directory (a save_pretrained directory or an "
                                                "attnlab checkpoint) under its directory's name; repeatable"),
          prepare: bool | None = typer.Option(None, help="load the default models in the background at start-up "
                                                         "(SmolLM2's first load converts its GGUF, ~60 s); /api/health "
                                                         "says preparing meanwhile (default: on, or "
                                                         "ATTNLAB_PREPARE_ON_START)")
          ) -> None:
    """Start the web server (pages at /, API at /api, OpenAPI at /docs)."""
    import os

    import uvicorn

    from attnlab.models.registry import ModelPathError, path_entries

    from ..core.settings import get_settings

    entries = []
    if model:
        try:  # checked first, before the server starts or anything is set: a bad path is the operator's error
            entries = path_entries(model)
        except ModelPathError as exc:
            console.print(str(exc), style="red", markup=False)
            raise typer.Exit(2) from None
    # every worker process reads its settings from the environment: the option, else the variable, else on
    if prepare is None:
        os.environ.setdefault("ATTNLAB_PREPARE_ON_START", "1")
    else:
        os.environ["ATTNLAB_PREPARE_ON_START"] = "1" if prepare else "0"
    get_settings.cache_clear()
    if model:
        # the workers read it from the environment (ATTNLAB_MODEL_PATHS), as every setting
        os.environ["ATTNLAB_MODEL_PATHS"] = jsonlib.dumps([str(p.expanduser().resolve()) for p in model])
        get_settings.cache_clear()
        console.print("serving " + ", ".join(e.id for e in entries) + " besides the registry's models", markup=False)
    settings = get_settings()
    workers = workers or settings.workers
    with _metrics_dir(workers):
        uvicorn.run("attnlab.main:create_app", factory=True, host=host or settings.host, port=port or settings.port,
                    workers=workers, reload=reload, timeout_graceful_shutdown=10,
                    access_log=False, log_config=server_log_config(settings.log_level))


@contextmanager
def _metrics_dir(workers: int) -> Iterator[None]:
    """Several workers: a fresh folder for prometheus_client's multiprocess mode (each worker writes its values
    there, /api/metrics sums them), named in PROMETHEUS_MULTIPROC_DIR before the workers start, removed after.
    A folder already named there is used as is (and must be emptied between runs by whoever made it)."""
    from ..core.metrics import MULTIPROC_ENV

    if workers <= 1 or os.environ.get(MULTIPROC_ENV):
        yield
        return
    folder = tempfile.mkdtemp(prefix="attnlab-metrics-")
    os.environ[MULTIPROC_ENV] = folder
    try:
        yield
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(folder, ignore_errors=True)


@app.command("models")
def list_models(as_json: bool = typer.Option(False, "--json", help="machine-readable")) -> None:
    """List every model attnlab knows, whether it is available here, and why not."""
    from attnlab.models.registry import default_registry

    from ..core.settings import get_settings

    _logging("WARNING")
    settings = get_settings()
    infos = default_registry(settings.allowlist, settings.model_dir, settings.zoo_dir, user_labs=settings.labs_dir,
                             model_paths=settings.model_paths).list()
    if as_json:
        typer.echo(jsonlib.dumps([i.to_dict() for i in infos], indent=2))
        return
    table = Table(title="attnlab models")
    for col in ("id", "family", "source", "layers x heads", "d_model", "positional", "available"):
        table.add_column(col)
    for i in infos:
        table.add_row(i.id, i.family, i.source, f"{i.n_layers} x {i.n_heads}", str(i.d_model), i.positional,
                      "yes" if i.available else f"no: {i.reason}")
    console.print(table)


@app.command("backends")
def list_backends(as_json: bool = typer.Option(False, "--json", help="machine-readable")) -> None:
    """List the attention backends and SDPA kernels, whether they run on this machine's device, and why not."""
    from attnlab.services.backends import backends_report

    from ..core.settings import get_settings

    _logging("WARNING")
    try:
        placement = get_settings().placement()
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    report = backends_report(placement)
    if as_json:
        typer.echo(jsonlib.dumps(report, indent=2))
        return
    console.print(f"device {report['device']} ({report['name']}), dtype {report['dtype']}, torch {report['torch']}, "
                  f"triton {report['triton'] or 'not installed'}; SDPA takes {report['sdpa_choice']} here")
    table = Table(title="attention backends")
    for col in ("backend", "offered", "runs here", "returns LSE", "description"):
        table.add_column(col)
    for b in report["backends"]:
        table.add_row(b["name"], "yes" if b["registered"] else "no", "yes" if b["available"] else f"no: {b['reason']}",
                      "yes" if b["returns_lse"] else "no", b["description"])
    console.print(table)


@bench.command("attention")
def bench_attention(quick: bool = typer.Option(False, help="only T=4096 causal forward"),
                    json: bool = typer.Option(False, "--json", help="machine-readable results"),
                    device: str = typer.Option("auto", help="auto (cuda when present), cpu or cuda"),
                    dtype: str = typer.Option("auto", help="auto (float32 on cpu, bfloat16 on cuda), float32, "
                                                           "bfloat16 or float16"),
                    backends: str = typer.Option("math,sdpa,flash", help="comma-separated; `attnlab backends` "
                                                                          "lists those this machine has")) -> None:
    """math vs sdpa vs our flash (on CUDA also triton, sdpa_flash, ...): time, GFLOP/s, memory, error."""
    from attnlab.models.attention import BACKENDS
    from attnlab.models.benchmark import run_attention_bench
    from attnlab.models.device import resolve

    _logging("WARNING")
    try:
        placement = resolve(device, dtype)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    names = [b.strip() for b in backends.split(",") if b.strip()]
    unknown = [b for b in names if b not in BACKENDS]
    if unknown or not names:
        raise typer.BadParameter(f"backends: {unknown or names} not available here; known: {list(BACKENDS)}")
    run_attention_bench(quick=quick, as_json=json, device=placement.device, dtype=placement.dtype, backends=names)


def _typer_device(value: str) -> str:
    try:
        return _device(value)
    except argparse.ArgumentTypeError as err:
        raise typer.BadParameter(str(err)) from None


@bench.command("profile")
def bench_profile(model: str = typer.Option("minilm", help="a model id from `attnlab models`, or a preset name"),
                  tokens: int = typer.Option(128, min=1, help="tokens per sequence (at most the model's positions)"),
                  batch: int = typer.Option(1, min=1, help="sequences per batch"),
                  repeats: int = typer.Option(3, min=1, help="timed repeats (the median is reported)"),
                  json: bool = typer.Option(False, "--json")) -> None:
    """Forward and backward time per component (embedding, attention, feed-forward, norms, head)."""
    import torch

    from attnlab.models.architectures import build_model
    from attnlab.models.config import PRESETS
    from attnlab.models.profiler import profile_model

    _logging("WARNING")
    torch.manual_seed(0)
    if model in PRESETS:
        net = build_model(PRESETS[model])
        vocab = net.config.vocab_size
        inputs = {"ids": torch.randint(0, vocab, (batch, tokens))}
        if net.config.family == "encoder-decoder":
            inputs = {"src": inputs["ids"], "tgt": inputs["ids"]}
    else:
        from attnlab.models.registry import default_registry

        adapter = default_registry().load(model)
        net = adapter.model
        vocab = adapter.info.vocab_size or 1000
        inputs = adapter.dummy_inputs(torch.randint(0, vocab, (batch, tokens)))
    with torch.enable_grad():
        result = profile_model(net, inputs, repeats=repeats).to_dict()
    if json:
        typer.echo(jsonlib.dumps(result, indent=2))
        return
    table = Table(title=f"{model}: {batch} x {tokens} tokens, mean of {repeats}")
    for col in ("component", "forward ms", "backward ms"):
        table.add_column(col, justify="right")
    for row in result["components"]:
        table.add_row(row["component"], f"{row['forward_ms']:.2f}", f"{row['backward_ms']:.2f}")
    table.add_row("total", f"{result['total_forward_ms']:.2f}", f"{result['total_backward_ms']:.2f}")
    console.print(table)


@bench.command("api")
def bench_api() -> None:
    """POST /api/attention end to end vs the bare forward; bytes per weight; 8k-token tiles."""
    from .api_bench import run_api_bench

    _logging("WARNING")
    run_api_bench()


@bench.command("checkpointing")
def bench_checkpointing(
        models: list[str] = typer.Option(None, "--model", help="only these (repeat the option); default: every "
                                                              "zoo architecture and minilm-shape"),
        batch_size: int = typer.Option(8, min=1, max=256, help="sequences per step"),
        seq_len: int = typer.Option(128, min=1, max=8192, help="tokens per sequence (capped at a model's positions)"),
        repeats: int = typer.Option(3, min=1, max=50, help="timed steps per setting (the median is reported)"),
        device: str = typer.Option("cpu", help="cpu or cuda (where this torch has CUDA)", callback=_typer_device),
        threads: int = typer.Option(1, min=0, help="intra-op threads (0: torch's default)"),
        out: Path | None = typer.Option(None, help="write results.json here (default: <data dir>/labs/"
                                                   "checkpointing; models/zoo/checkpointing is the shipped copy)"),
        json: bool = typer.Option(False, "--json", help="machine-readable results")) -> None:
    """Gradient checkpointing: peak training memory (torch's allocator) and step time, with and without."""
    from attnlab.models.paths import labs_dir
    from attnlab.models.training.checkpointing import checkpointing_table, default_configs, write_table

    from ..core.settings import get_settings

    _logging("WARNING")
    configs = default_configs(get_settings().zoo_dir, models)
    table = checkpointing_table(configs, batch_size=batch_size, seq_len=seq_len, repeats=repeats, device=device,
                                threads=threads or None, progress=not json)
    path = write_table(table, out if out is not None else labs_dir() / "checkpointing")
    if json:
        typer.echo(jsonlib.dumps(table, indent=2))
        return
    t = Table(title=f"gradient checkpointing, one forward+backward of {batch_size} x {seq_len} tokens on {device} "
                    f"(memory: {table['rows'][0]['method'] if table['rows'] else ''})")
    for col in ("model", "layers", "params", "peak MiB without", "peak MiB with", "saved", "ms without", "ms with",
                "slowdown", "CPU ms without", "CPU ms with", "CPU slowdown"):
        t.add_column(col, justify="right")
    for r in table["rows"]:
        t.add_row(r["model"], str(r["n_layers"]), f"{r['n_params']:,}", f"{r['peak_without_mib']:.1f}",
                  f"{r['peak_with_mib']:.1f}", f"{100 * r['saving_ratio']:.0f}%", f"{r['step_ms_without']:.0f}",
                  f"{r['step_ms_with']:.0f}", f"{r['slowdown']:.2f}x", f"{r['step_cpu_ms_without']:.0f}",
                  f"{r['step_cpu_ms_with']:.0f}", f"{r['cpu_slowdown']:.2f}x")
    console.print(t)
    console.print(f"written to {path}")


def train_parser():
    """The options of `attnlab train` (argparse: they pass through typer untouched, and torchrun runs them)."""

    from attnlab.models.config import PRESETS
    from attnlab.models.training import OBJECTIVE_FAMILY

    p = argparse.ArgumentParser(prog="attnlab train", description="Train a from-scratch model on a corpus.")
    p.add_argument("--out-dir", default="runs/train")
    p.add_argument("--corpus", default="austen")
    p.add_argument("--objective", choices=sorted(OBJECTIVE_FAMILY), default="clm")
    p.add_argument("--preset", dest="preset_name", choices=sorted(PRESETS), default="tiny")
    p.add_argument("--tokenizer", choices=["bpe", "char"], default="bpe")
    p.add_argument("--vocab-size", type=_positive, default=2048, help="tokenizer vocabulary (bpe)")
    p.add_argument("--block-size", type=_positive, default=128, help="tokens per training sequence")
    p.add_argument("--batch-size", type=_positive, default=16, help="sequences per step")
    p.add_argument("--steps", type=_positive, default=500, help="optimizer steps")
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
    p.add_argument("--device", type=_device, help="cpu, or cuda where this torch has CUDA (default: cpu)")
    p.add_argument("--threads", type=_positive, help="intra-op threads (default: torch's)")
    p.add_argument("--plot-lr", action="store_true", help="print the LR curve as JSON and exit")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="model config overrides")
    return p


def _positive(text: str) -> int:
    """argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _device(text: str) -> str:
    """argparse type: a torch device this machine has."""
    import torch

    if text.startswith("cuda") and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: this torch build has no CUDA device here; use cpu")
    return text


def run_training(argv: list[str]) -> dict:
    """Parse `attnlab train` options, run ``attnlab.models.training.train_main``, print the summary on rank 0."""
    import os

    from attnlab.models.config import parse_override
    from attnlab.models.training import train_main

    args = vars(train_parser().parse_args(argv))
    overrides = dict(item.split("=", 1) for item in args.pop("set"))
    summary = train_main(**args, **{k: parse_override(v) for k, v in overrides.items()})
    if int(os.environ.get("RANK", "0")) == 0:
        sys.stdout.write(jsonlib.dumps(summary, indent=1) + "\n")
    return summary


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True,
                               "help_option_names": []})
def train(ctx: typer.Context) -> None:
    """Train a from-scratch model; `attnlab train --help` lists the options (DDP: torchrun -m attnlab.cli train ...)."""
    _logging()
    run_training(ctx.args)


@app.command()
def lab(name: str = typer.Argument(..., help="induction, extrapolation, seq2seq, lm, mlm, heads, stability or "
                                               "schedules"),
        out: Path | None = typer.Option(None, help="default: <data dir>/labs/NAME (ATTNLAB_DATA_DIR; listed as "
                                                   "my-NAME beside the shipped zoo)"),
        quick: bool = typer.Option(False, help="a seconds-long version (for tests)")) -> None:
    """Run one of the week's labs; writes a checkpoint and results.json."""
    from attnlab.models.labs import run_lab

    _logging()
    results = run_lab(name, out_dir=out, quick=quick)
    # the figures and per-step series are for the pages; a person reads the scalars
    summary = {k: v for k, v in results.items()
               if k not in ("figures", "config", "train_config") and len(jsonlib.dumps(v)) < 400}
    console.print_json(data=summary)

