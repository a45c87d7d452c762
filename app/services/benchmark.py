"""Backend benchmarks: a synthetic size sweep or one model on one text (both in models.benchmark).

One benchmark runs at a time per process (they measure the machine; two at once would
measure each other) and each is bounded by ``benchmark_budget_s``.

The Backends page opens on :meth:`BenchmarkService.latest`: the last benchmark this process ran, else
the results shipped in ``benchmark_shipped.json`` (measured by ``bench/ship_benchmark.py``), so a class
of thirty opening the page starts no benchmark; it measures only on a click.
"""

from __future__ import annotations

import asyncio
import json
import platform
import time
from importlib.resources import files
from pathlib import Path

from attnlab.models import ModelAdapter

from ..core.settings import Settings
from .errors import Busy, Invalid, TooLarge, Unavailable
from .hub import ModelHub, in_thread
from .inputs import attention_cells, encode_checked

SHIPPED = "benchmark_shipped.json"


def shipped_results() -> dict:
    """The results shipped with attnlab: ``{form, request, results, measured_at, machine, budget_s}``."""
    return json.loads((files(__package__) / SHIPPED).read_text(encoding="utf-8"))


def machine() -> str:
    """The machine a measurement ran on, in words (CPU, threads, torch)."""
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else _cpu_name()
    threads = torch.get_num_threads()
    return f"{device}, {threads} torch thread{'s' if threads != 1 else ''}, torch {torch.__version__}"


def _cpu_name() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class BenchmarkService:
    def __init__(self, hub: ModelHub, settings: Settings):
        self.hub = hub
        self.settings = settings
        self._lock = asyncio.Lock()
        self._latest: dict | None = None  # the last measurement of this process

    def latest(self) -> dict:
        """The last benchmark this process ran (``source: "this server"``), else the shipped one
        (``source: "shipped"``); never measures."""
        if self._latest is not None:
            return {**self._latest, "source": "this server"}
        return {**shipped_results(), "source": "shipped"}

    def remember(self, form: str, request: dict, results: list[dict]) -> None:
        """Keep a finished measurement for :meth:`latest`."""
        self._latest = {"form": form, "request": request, "results": results, "budget_s":
                        self.settings.benchmark_budget_s, "machine": machine(),
                        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    async def _exclusive(self, fn):
        if self._lock.locked():
            raise Busy(f"a benchmark is already running; retry in {self.settings.retry_after_s} s",
                       self.settings.retry_after_s)
        async with self._lock:
            return await fn()

    async def synthetic(self, seq_lens: list[int], backends: list[str], causal: bool, n_heads: int, head_dim: int,
                        passes: str) -> list[dict]:
        from attnlab.models.attention import BACKENDS

        unknown = [b for b in backends if b not in BACKENDS]
        if unknown:
            raise Invalid(f"backends: {unknown} unknown; known: {sorted(BACKENDS)}")
        cells = n_heads * max(seq_lens) ** 2
        if cells > self.settings.benchmark_max_cells:
            raise TooLarge(f"seq_lens: n_heads x T^2 = {cells:,} is over benchmark_max_cells "
                           f"{self.settings.benchmark_max_cells:,}; use shorter sequences or fewer heads")
        try:
            from attnlab.models.benchmark import benchmark_backends
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
        from attnlab.models.benchmark import benchmark_model

        enc = encode_checked(adapter, text, None, self.settings)
        cells, limit = attention_cells(adapter.info, len(enc)), self.settings.benchmark_max_cells
        if cells > limit:  # every backend's maps are held and compared with math's, before any is timed
            raise TooLarge(f"text: the maps of {len(enc)} tokens hold {cells:,} weights (layers x heads x T^2), over "
                           f"benchmark_max_cells {limit:,}; use a shorter text")
        return benchmark_model(adapter, text, backends, self.settings.benchmark_budget_s)
