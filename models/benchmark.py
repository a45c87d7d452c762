"""Speed, memory and error of the attention backends: synthetic shapes, or one model on one text.

Used by ``attnlab bench attention`` / ``bench/attention.py`` (``run_attention_bench``)
and by ``POST /api/benchmark`` (``benchmark_backends``; ``benchmark_model`` for the
model form, whose rows are described there). Each synthetic row is a flat dict of JSON
scalars:

- ``median_ms``: median wall time of one call (``fwd``: forward under no_grad;
  ``fwd_bwd``: forward plus backward of all of Q, K, V).
- ``gflops``: achieved GFLOP/s, counting attention FLOPs only: the two matmuls
  QK^T and PV are ``4 * B * H * Tq * Tk * D`` for the forward, halved when causal
  (only the lower triangle is needed), and ``fwd_bwd`` counts 2.5x the forward
  (the backward does five matmuls of the same size to the forward's two).
  Softmax exponentials are not counted. ``flops`` holds the count itself.
- ``peak_mem_mb`` / ``peak_memory_bytes``: the most extra memory torch held at any moment
  of one call, above what was allocated before it (``attnlab.models.memory.measure_peak``: on CPU
  the peak of the running sum of torch's allocation and free events, counting the flash
  backend's worker threads; on CUDA ``max_memory_allocated``). ``memory_method`` says which.
- ``max_abs_diff_vs_math``: largest |difference| from the ``math`` backend on the
  same inputs (output, and for ``fwd_bwd`` also dQ, dK, dV); None when math is
  skipped because its T x T tensors would not fit (see ``math_max_bytes``).
- ``ratio_vs_sdpa``: SDPA's median time over this row's (above 1: faster than SDPA);
  None without an SDPA row of the same shape.
- ``skipped``: None, or why the row was not measured (time budget, too large).
"""

from __future__ import annotations

import json
import logging
import statistics
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Literal

import torch
from torch import Tensor

from .attention import AttentionSpec, get_backend
from .attention.backends import KERNEL_RANGE
from .memory import measure_peak

logger = logging.getLogger(__name__)

Pass = Literal["fwd", "fwd_bwd"]

SUMMARY_SEQ_LEN = 4096
FULL_SEQ_LENS = (512, 1024, 2048, 4096, 8192)
FLASH_ONLY_SEQ_LENS = (16384, 32768)  # one head: math and sdpa would need T x T memory
# math keeps about three (fwd) or six (fwd_bwd) B*H*T*T float32 tensors alive.
MATH_TENSORS = {"fwd": 3, "fwd_bwd": 6}
DEFAULT_MATH_MAX_BYTES = 6 * 2**30


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """The given device, else CUDA when available, else CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def attention_flops(seq_len: int, n_heads: int, head_dim: int, causal: bool, pass_: Pass, batch: int = 1) -> int:
    """Attention FLOPs of one call (see the module docstring for the convention)."""
    flops = 4 * batch * n_heads * seq_len * seq_len * head_dim
    if causal:
        flops //= 2
    if pass_ == "fwd_bwd":
        flops = flops * 5 // 2
    return flops


def math_bytes_estimate(seq_len: int, n_heads: int, pass_: Pass, batch: int = 1, itemsize: int = 4) -> int:
    """Rough peak bytes of the dense ``math`` backend (its T x T temporaries)."""
    return MATH_TENSORS[pass_] * batch * n_heads * seq_len * seq_len * itemsize


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _inputs(batch: int, n_heads: int, seq_len: int, head_dim: int, dtype, device, seed: int) -> tuple[Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    shape = (batch, n_heads, seq_len, head_dim)
    # q, k, v and the upstream gradient dO, made on the CPU so every device sees the same numbers
    return tuple(torch.randn(shape, generator=gen).to(device=device, dtype=dtype) for _ in range(4))


def _call(backend: str, q: Tensor, k: Tensor, v: Tensor, d_out: Tensor, spec: AttentionSpec,
          pass_: Pass) -> list[Tensor]:
    """One call of a backend; returns the tensors to compare (out, then dQ, dK, dV)."""
    fn = get_backend(backend)
    if pass_ == "fwd":
        with torch.no_grad():
            return [fn(q, k, v, spec).out]
    with torch.enable_grad():  # callers may be under no_grad (the server's inference threads)
        q, k, v = (x.detach().requires_grad_() for x in (q, k, v))
        out = fn(q, k, v, spec).out
        out.backward(d_out)
    return [out.detach(), q.grad, k.grad, v.grad]


def _max_abs_diff(a: list[Tensor], b: list[Tensor]) -> float:
    return max(float((x.float() - y.float()).abs().max()) for x, y in zip(a, b))


def _as_list(value, kinds) -> list:
    return [value] if isinstance(value, kinds) else list(value)


def benchmark_backends(
    seq_lens: Sequence[int],
    backends: Sequence[str] = ("math", "sdpa", "flash"),
    causal: bool | Sequence[bool] = True,
    n_heads: int = 12,
    head_dim: int = 64,
    passes: Pass | Sequence[Pass] = "fwd",
    time_budget_s: float | None = None,
    *,
    batch: int = 1,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
    math_max_bytes: int = DEFAULT_MATH_MAX_BYTES,
    min_runs: int = 3,
    max_runs: int = 10,
    target_s_per_row: float = 2.0,
    measure_memory: bool = True,
    seed: int = 0,
    progress: bool = False,
) -> list[dict]:
    """Time every backend on every shape; one row per (pass, causal, T, backend).

    ``causal`` and ``passes`` take one value or several. Before each row starts the
    elapsed time is checked against ``time_budget_s``; rows after it are returned
    with ``skipped="time budget"``. Each row runs one warm-up call (its result
    gives the error vs math), then ``min_runs`` to ``max_runs`` timed calls, fewer
    runs when a row would take over ``target_s_per_row``.
    """
    from tqdm import tqdm

    dev = pick_device(device)
    causals = _as_list(causal, bool)
    pass_list = _as_list(passes, str)
    for name in backends:
        get_backend(name)  # unknown names fail before anything runs
    start = time.perf_counter()
    rows: list[dict] = []
    plan = [(p, c, t) for p in pass_list for c in causals for t in seq_lens]
    bar = tqdm(total=len(plan) * len(backends), desc="attention bench", unit="row", file=sys.stderr,
               disable=not progress)

    def over_budget() -> bool:
        return time_budget_s is not None and time.perf_counter() - start > time_budget_s

    for pass_, is_causal, seq_len in plan:
        q, k, v, d_out = _inputs(batch, n_heads, seq_len, head_dim, dtype, dev, seed)
        spec = AttentionSpec(scale=head_dim**-0.5, causal=is_causal)
        flops = attention_flops(seq_len, n_heads, head_dim, is_causal, pass_, batch)
        math_est = math_bytes_estimate(seq_len, n_heads, pass_, batch, torch.finfo(dtype).bits // 8)
        math_fits = math_est <= math_max_bytes
        reference: list[Tensor] | None = None
        # math first, so every other backend's warm-up can be compared with it
        ordered = sorted(backends, key=lambda b: b != "math")
        if math_fits and "math" not in backends and not over_budget():
            reference = _call("math", q, k, v, d_out, spec, pass_)
        for backend in ordered:
            row = {
                "backend": backend, "seq_len": seq_len, "causal": is_causal, "pass": pass_,
                "batch": batch, "n_heads": n_heads, "head_dim": head_dim,
                "dtype": str(dtype).removeprefix("torch."), "device": str(dev),
                "median_ms": None, "runs": 0, "flops": flops, "gflops": None,
                "peak_mem_mb": None, "peak_memory_bytes": None, "memory_method": None,
                "max_abs_diff_vs_math": None, "ratio_vs_sdpa": None, "skipped": None,
            }
            rows.append(row)
            bar.update(1)
            if over_budget():
                row["skipped"] = "time budget"
                continue
            if backend == "math" and not math_fits:
                row["skipped"] = (f"math needs ~{math_est / 2**30:.1f} GiB > "
                                  f"math_max_bytes {math_max_bytes / 2**30:.1f} GiB")
                continue
            _measure_row(row, backend, q, k, v, d_out, spec, pass_, dev, min_runs, max_runs, target_s_per_row,
                         measure_memory)
            if backend == "math":
                reference = row.pop("_result")
            else:
                result = row.pop("_result")
                if reference is not None:
                    row["max_abs_diff_vs_math"] = _max_abs_diff(result, reference)
            if reference is not None and backend == "math":
                row["max_abs_diff_vs_math"] = 0.0
        del q, k, v, d_out, reference
    bar.close()
    _fill_ratios(rows)
    return rows


def _measure_row(row, backend, q, k, v, d_out, spec, pass_, dev, min_runs, max_runs, target_s, measure_memory) -> None:
    """Fill median_ms, runs, gflops, peak memory and ``_result`` (the warm-up's tensors)."""
    row["_result"] = _call(backend, q, k, v, d_out, spec, pass_)  # warm-up
    times: list[float] = []
    spent = 0.0
    while len(times) < max_runs and (len(times) < min_runs or spent < target_s):
        _sync(dev)
        t0 = time.perf_counter()
        _call(backend, q, k, v, d_out, spec, pass_)
        _sync(dev)
        times.append(time.perf_counter() - t0)
        spent += times[-1]
        if len(times) >= 1 and spent > 4 * target_s:
            break  # a very slow row (math at large T): one or two runs say enough
    median = statistics.median(times)
    row["median_ms"] = median * 1e3
    row["runs"] = len(times)
    row["gflops"] = row["flops"] / median / 1e9
    if measure_memory:
        _, peak = measure_peak(lambda: _call(backend, q, k, v, d_out, spec, pass_), dev)
        row["peak_memory_bytes"] = peak.bytes
        row["peak_mem_mb"] = peak.mib
        row["memory_method"] = peak.method
    logger.info("%s T=%d causal=%s %s: %.2f ms", backend, row["seq_len"], row["causal"], pass_, row["median_ms"])


@torch.no_grad()  # the maps of a trainable bias (T5) would otherwise carry a graph into the diffs
def benchmark_model(adapter, text: str, backends: Sequence[str] = ("math", "sdpa", "flash"),
                    time_budget_s: float | None = None, measure_memory: bool = True) -> list[dict]:
    """Each backend on one model and one text: the app's forward (tokenise, run, capture), timed.

    One row per backend, in order: ``median_ms`` and ``runs`` (at least 3 forwards, at most
    10, fewer when this backend's share of ``time_budget_s`` is spent; rows after the budget
    are left out); ``max_abs_diff_vs_math`` over every captured map and
    ``max_abs_logit_diff_vs_math`` (None without logits) against a ``math`` forward; and,
    from one more forward under ``measure_peak``:

    - ``attention_peak_memory_bytes``: the attention kernel's memory: the most extra memory
      torch held during one attention kernel call of the forward (every layer's call is
      measured, the largest is kept), above what was allocated when that call began. The
      projections and the capture are outside it.
    - ``forward_peak_memory_bytes``: the whole forward's peak above what was allocated before it
      (projections, feed-forward, capture included).
    - ``memory_method``: how both were measured.
    """
    deadline = None if time_budget_s is None else time.perf_counter() + time_budget_s
    reference = adapter.forward(text, None, "math")
    ref_maps = {k: reference.recorder.all_dense(k) for k in reference.recorder.kinds}
    device = _adapter_device(adapter)
    rows: list[dict] = []
    for backend in backends:
        times, result = [], None
        share = None if deadline is None else (deadline - time.perf_counter()) / max(1, len(backends) - len(rows))
        t_end = None if share is None else time.perf_counter() + share
        while len(times) < 3 or (len(times) < 10 and (t_end is None or time.perf_counter() < t_end)):
            t0 = time.perf_counter()
            result = adapter.forward(text, None, backend)
            times.append((time.perf_counter() - t0) * 1e3)
            if deadline is not None and time.perf_counter() > deadline:
                break
        diff = max((float((result.recorder.all_dense(k) - ref_maps[k]).abs().max()) for k in ref_maps), default=0.0)
        logit_diff = None
        if result.logits is not None and reference.logits is not None:
            logit_diff = float((result.logits.float() - reference.logits.float()).abs().max())
        row = {"backend": backend, "n_tokens": len(result.tokens), "median_ms": statistics.median(times),
               "runs": len(times), "max_abs_diff_vs_math": diff, "max_abs_logit_diff_vs_math": logit_diff,
               "attention_peak_memory_bytes": None, "forward_peak_memory_bytes": None, "memory_method": None}
        if measure_memory:
            _, peak = measure_peak(lambda b=backend: adapter.forward(text, None, b), device, ranges=[KERNEL_RANGE])
            row.update(attention_peak_memory_bytes=peak.ranges[KERNEL_RANGE], forward_peak_memory_bytes=peak.bytes,
                       memory_method=peak.method)
        rows.append(row)
        logger.info("%s on %s (%d tokens): %.2f ms", backend, adapter.info.id, row["n_tokens"], row["median_ms"])
        if deadline is not None and time.perf_counter() > deadline:
            break
    return rows


def _adapter_device(adapter) -> torch.device:
    model = getattr(adapter, "model", None)
    param = next(model.parameters(), None) if model is not None else None
    return param.device if param is not None else torch.device("cpu")


def _fill_ratios(rows: list[dict]) -> None:
    key = lambda r: (r["seq_len"], r["causal"], r["pass"], r["n_heads"], r["head_dim"], r["batch"])  # noqa: E731
    sdpa = {key(r): r["median_ms"] for r in rows if r["backend"] == "sdpa" and r["median_ms"]}
    for r in rows:
        ref = sdpa.get(key(r))
        if ref and r["median_ms"]:
            r["ratio_vs_sdpa"] = ref / r["median_ms"]


def format_summary_line(results: Iterable[dict], seq_len: int = SUMMARY_SEQ_LEN) -> str:
    """``flash_speed_vs_sdpa T=4096 causal fwd: 0.74``: SDPA time / flash time, 2 decimals.

    Uses the causal forward rows of this T with the most heads; ``n/a`` when one of
    the two was not measured.
    """
    rows = [r for r in results if r["seq_len"] == seq_len and r["causal"] and r["pass"] == "fwd" and r["median_ms"]]
    by_backend = {}
    for r in sorted(rows, key=lambda r: r["n_heads"]):
        by_backend[r["backend"]] = r
    flash, sdpa = by_backend.get("flash"), by_backend.get("sdpa")
    if flash is None or sdpa is None or flash["n_heads"] != sdpa["n_heads"]:
        value = "n/a"
    else:
        value = f"{sdpa['median_ms'] / flash['median_ms']:.2f}"
    return f"flash_speed_vs_sdpa T={seq_len} causal fwd: {value}"


def format_ratio_line(results: Iterable[dict], backend: str, reference: str, seq_len: int = SUMMARY_SEQ_LEN,
                      pass_: Pass = "fwd", metric: Literal["speed", "memory"] = "speed") -> str:
    """``triton_speed_vs_sdpa_flash T=4096 causal fwd bf16: 0.85``, from causal rows measured side by side.

    speed: the reference's median time over the backend's (above 1: faster); memory: the backend's
    peak memory over the reference's (below 1: less). ``n/a`` when either row is missing.
    """
    rows = {r["backend"]: r for r in results
            if r["seq_len"] == seq_len and r["causal"] and r["pass"] == pass_ and r["median_ms"]}
    got, ref = rows.get(backend), rows.get(reference)
    dtype = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}.get((got or ref or {}).get("dtype"), "")
    value = "n/a"
    if got is not None and ref is not None:
        if metric == "speed":
            value = f"{ref['median_ms'] / got['median_ms']:.2f}"
        elif got["peak_memory_bytes"] is not None and ref["peak_memory_bytes"]:
            value = f"{got['peak_memory_bytes'] / ref['peak_memory_bytes']:.2f}"
    return f"{backend}_{metric}_vs_{reference} T={seq_len} causal {pass_} {dtype}".rstrip() + f": {value}"


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def render_table(results: Sequence[dict]) -> str:
    """Plain aligned text, one line per row, for people."""
    header = ("backend", "T", "H", "causal", "pass", "median ms", "GFLOP/s", "peak MiB", "max|d| vs math", "vs sdpa",
              "note")
    lines = [header]
    for r in results:
        lines.append((
            r["backend"], str(r["seq_len"]), str(r["n_heads"]), "yes" if r["causal"] else "no", r["pass"],
            _fmt(r["median_ms"], ".2f"), _fmt(r["gflops"], ".1f"), _fmt(r["peak_mem_mb"], ".1f"),
            _fmt(r["max_abs_diff_vs_math"], ".1e"), _fmt(r["ratio_vs_sdpa"], ".2f"), r["skipped"] or "",
        ))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.rjust(w) if i else cell.ljust(w)
                               for i, (cell, w) in enumerate(zip(line, widths))).rstrip()
                     for line in lines)


def run_attention_bench(
    quick: bool = False,
    as_json: bool = False,
    *,
    device: str | torch.device | None = None,
    summary_seq_len: int = SUMMARY_SEQ_LEN,
    n_heads: int = 12,
    head_dim: int = 64,
    time_budget_s: float | None = None,
    progress: bool = True,
    dtype: torch.dtype = torch.float32,
    backends: Sequence[str] = ("math", "sdpa", "flash"),
) -> list[dict]:
    """The ``bench attention`` command: run, print the results, end with the summary line.

    ``quick``: only T=``summary_seq_len`` causal forward for math, sdpa and flash.
    Otherwise the full sweep: T in 512..8192, causal and not, fwd and fwd_bwd, H=12,
    D=64 fp32, then flash alone with one head at T=16384 and 32768. Prints a table
    (or, with ``as_json``, one JSON list) and then, as the last line, the
    ``format_summary_line``. ``dtype`` and ``backends`` (any registered: on CUDA also ``triton`` and
    ``sdpa_flash`` ...) apply to the sweep; the flash-only long rows run where ``flash`` is asked for.
    """
    common = dict(device=device, progress=progress, dtype=dtype)
    if quick:
        results = benchmark_backends([summary_seq_len], backends, True, n_heads, head_dim, "fwd", time_budget_s,
                                     **common)
    else:
        budget = 1800.0 if time_budget_s is None else time_budget_s
        start = time.perf_counter()
        seq_lens = sorted({*FULL_SEQ_LENS, summary_seq_len})
        results = benchmark_backends(seq_lens, backends, (False, True), n_heads, head_dim, ("fwd", "fwd_bwd"),
                                     budget, **common)
        left = max(0.0, budget - (time.perf_counter() - start))
        if "flash" in backends:
            results += benchmark_backends(FLASH_ONLY_SEQ_LENS, ("flash",), (False, True), 1, head_dim,
                                          ("fwd", "fwd_bwd"), left, **common)
    sys.stdout.write(report(results, as_json, summary_seq_len) + "\n")
    sys.stdout.flush()
    return results


def report(results: list[dict], as_json: bool, summary_seq_len: int = 4096) -> str:
    """The command's output: a table (or one JSON list), then the summary line last."""
    body = json.dumps(results, indent=1) if as_json else render_table(results) + memory_caption(results)
    return body + "\n" + format_summary_line(results, summary_seq_len)


def memory_caption(results: Sequence[dict]) -> str:
    """What the table's "peak MiB" is: one line per measuring method used ("" when none)."""
    methods = dict.fromkeys(r["memory_method"] for r in results if r.get("memory_method"))
    return "".join(f"\npeak MiB: allocated by torch during one call, not process RSS. {m}" for m in methods)

