"""Backend benchmarks: a synthetic size sweep (models.benchmark) or one model on one text.

One benchmark runs at a time per process (they measure the machine; two at once would
measure each other) and each is bounded by ``benchmark_budget_s``.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import torch

from models import ModelAdapter

from ..settings import Settings
from .errors import Busy, Invalid, TooLarge, Unavailable
from .hub import ModelHub, in_thread
from .inputs import encode_checked


class BenchmarkService:
    def __init__(self, hub: ModelHub, settings: Settings):
        self.hub = hub
        self.settings = settings
        self._lock = asyncio.Lock()

    async def _exclusive(self, fn):
        if self._lock.locked():
            raise Busy(f"a benchmark is already running; retry in {self.settings.retry_after_s} s",
                       self.settings.retry_after_s)
        async with self._lock:
            return await fn()

    async def synthetic(self, seq_lens: list[int], backends: list[str], causal: bool, n_heads: int, head_dim: int,
                        passes: str) -> list[dict]:
        from models.attention import BACKENDS

        unknown = [b for b in backends if b not in BACKENDS]
        if unknown:
            raise Invalid(f"backends: {unknown} unknown; known: {sorted(BACKENDS)}")
        cells = n_heads * max(seq_lens) ** 2
        if cells > self.settings.benchmark_max_cells:
            raise TooLarge(f"seq_lens: n_heads x T^2 = {cells:,} is over benchmark_max_cells "
                           f"{self.settings.benchmark_max_cells:,}; use shorter sequences or fewer heads")
        try:
            from models.benchmark import benchmark_backends
        except ImportError as err:
            raise Unavailable(f"seq_lens: the synthetic benchmark is not installed here ({err})") from None

        budget = self.settings.benchmark_budget_s
        return await self._exclusive(lambda: in_thread(
            lambda: benchmark_backends(seq_lens, backends, causal, n_heads, head_dim, passes, time_budget_s=budget)))

    async def on_model(self, model: str, text: str, backends: list[str]) -> list[dict]:
        for backend in backends:
            self.hub.check_backend(model, backend)

        async def run() -> list[dict]:
            # the whole measurement holds the model alone: backends switch inside it, one at a time
            async with self.hub.use(model, "benchmark") as adapter:
                return await in_thread(self._measure, adapter, text, backends)

        return await self._exclusive(run)

    def _measure(self, adapter: ModelAdapter, text: str, backends: list[str]) -> list[dict]:
        encode_checked(adapter, text, None, self.settings)
        deadline = time.perf_counter() + self.settings.benchmark_budget_s
        reference = adapter.forward(text, None, "math")
        ref_maps = {k: reference.recorder.all_dense(k) for k in reference.recorder.kinds}
        rows = []
        for backend in backends:
            times, result = [], None
            # at least 3 runs each; then stop at 10 or when this backend's share of the budget is spent
            share = deadline - time.perf_counter()
            share = share / max(1, len(backends) - len(rows))
            t_end = time.perf_counter() + share
            while len(times) < 3 or (len(times) < 10 and time.perf_counter() < t_end):
                t0 = time.perf_counter()
                result = adapter.forward(text, None, backend)
                times.append((time.perf_counter() - t0) * 1e3)
                if time.perf_counter() > deadline:
                    break
            diff = max(float((result.recorder.all_dense(k) - ref_maps[k]).abs().max()) for k in ref_maps)
            logit_diff = None
            if result.logits is not None and reference.logits is not None:
                logit_diff = float((result.logits.float() - reference.logits.float()).abs().max())
            rows.append({"backend": backend, "n_tokens": len(result.tokens), "median_ms": statistics.median(times),
                         "runs": len(times), "max_abs_diff_vs_math": diff, "max_abs_logit_diff_vs_math": logit_diff,
                         "peak_memory_bytes": _peak_memory()})
            if time.perf_counter() > deadline:
                break
        return rows


def _peak_memory() -> int | None:
    if torch.cuda.is_available():
        return int(torch.cuda.max_memory_allocated())
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # process peak RSS on Linux
    except ImportError:
        return None
