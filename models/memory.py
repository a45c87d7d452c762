"""Peak memory torch allocates during a call: the one place attnlab measures memory.

Every number attnlab shows as memory (the attention benchmark, the Backends page, the
API's benchmark rows, ``attnlab bench``) comes from ``measure_peak``:

- CPU: torch's profiler with ``profile_memory=True`` records each allocation and free of
  torch's CPU allocator as an event with signed bytes. Summed in time order from the start
  of the call, they give the extra bytes torch holds at each moment; the peak is the
  largest of these (0 if the call only frees). What was allocated before the call is the
  baseline and is excluded; memory that is not a torch allocation (Python objects, a BLAS
  library's scratch buffers, malloc slack) is not counted.
- CUDA: ``torch.cuda.reset_peak_memory_stats``, then ``max_memory_allocated`` minus
  ``memory_allocated`` before the call: the caching allocator's exact high-water mark, device
  memory only.

Never process RSS: ``ru_maxrss`` is the process's lifetime peak, and sampled RSS includes
freed heap the allocator keeps and misses peaks shorter than the sampling period.

Threads. The profiler's memory hook is per-thread state that torch carries into its own
threads (intra-op OpenMP workers, the inter-op pool) but not into threads Python starts.
Checked on torch 2.13: allocations in a ``ThreadPoolExecutor`` worker are absent from the
profile; the ``profile_all_threads`` option records those threads' ops but drops every
memory event, on all threads; two profiler sessions at once crash the process. So code
that runs tensor work on its own threads must, while profiled (``profiled_here()``), run it
through ``map_on_torch_threads``, whose tasks run on torch's inter-op pool with the
caller's thread-local state. The flash backend's tile workers do so.
"""

# No `from __future__ import annotations`: TorchScript reads _fork_join's and _run_job's
# annotations as real types.
import bisect
import itertools
import logging
import os
import threading
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import torch

logger = logging.getLogger(__name__)

T = TypeVar("T")

CPU_METHOD = ("CPU: peak of the running sum of torch's allocation and free events during the call "
              "(torch's profiler, profile_memory=True), above what was allocated before it")
CUDA_METHOD = "CUDA: torch.cuda.max_memory_allocated during the call minus memory_allocated before it"

# One profiler session at a time in this process (a second one crashes it). Reentrant, so that
# a nested measure_peak fails with torch's "already enabled" error instead of waiting forever.
_PROFILER_LOCK = threading.RLock()


@dataclass(frozen=True)
class MemoryPeak:
    """The extra memory torch held at its peak during one call.

    ``bytes``: the peak above the baseline. ``method``: how it was measured, one sentence
    (``CPU_METHOD`` or ``CUDA_METHOD``). ``threads``: on CPU, how many threads' allocations
    were counted (the caller and torch's workers that ran part of the call); None on CUDA.
    ``ranges``: for each ``record_function`` name asked for, the largest peak of one
    occurrence of that range above the bytes held when it began (0 when it never ran).
    """

    bytes: int
    method: str
    threads: int | None = None
    ranges: dict[str, int] = field(default_factory=dict)

    @property
    def mib(self) -> float:
        return self.bytes / 2**20


def measure_peak(fn: Callable[[], T], device: str | torch.device | None = None, *,
                 ranges: Sequence[str] = ()) -> tuple[T, MemoryPeak]:
    """Run ``fn()`` once and measure the peak extra memory torch allocates meanwhile.

    Returns ``(fn's result, MemoryPeak)``. ``device``: where the tensors live (CPU when
    None). ``ranges``: ``torch.profiler.record_function`` names opened inside ``fn`` (such
    as ``KERNEL_RANGE`` around every attention kernel call) whose own peaks are wanted as
    well; these come from the profiler's events, also on CUDA (counting that device's).
    """
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cuda":
        return _measure_cuda(fn, dev, ranges)
    result, events, spans = _profile(fn, ranges)
    mem = [(t, n) for t, n, kind, _ in events if kind == "cpu"]
    threads = len({tid for _, _, kind, tid in events if kind == "cpu"})
    return result, MemoryPeak(_peak(mem), CPU_METHOD, threads, _range_peaks(mem, spans, ranges))


def _measure_cuda(fn: Callable[[], T], dev: torch.device, ranges: Sequence[str]) -> tuple[T, MemoryPeak]:
    torch.cuda.synchronize(dev)
    base = torch.cuda.memory_allocated(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    if ranges:
        result, events, spans = _profile(fn, ranges)
        mem = [(t, n) for t, n, kind, _ in events if kind == "cuda"]
        by_range = _range_peaks(mem, spans, ranges)
    else:
        result, by_range = fn(), {}
    torch.cuda.synchronize(dev)
    peak = max(0, torch.cuda.max_memory_allocated(dev) - base)
    return result, MemoryPeak(peak, CUDA_METHOD, None, by_range)


def _profile(fn: Callable[[], T], ranges: Sequence[str]):
    """Run fn under the profiler; memory events (ns, signed bytes, device kind, thread) and range spans."""
    # torch.autograd.profiler, not torch.profiler.profile: the latter imports torch._inductor on
    # its first start (4 to 6 s here, measured); the memory events are the same.
    from torch.autograd.profiler import profile

    # libkineto writes two lines to stderr per session at its default level; 6 is silent
    os.environ.setdefault("KINETO_LOG_LEVEL", "6")
    with _PROFILER_LOCK, profile(use_cpu=True, profile_memory=True, use_kineto=True) as prof:
        result = fn()
    events, spans = [], {name: [] for name in ranges}
    for e in prof.kineto_results.events():
        name = e.name()
        if name == "[memory]":
            kind = str(e.device_type()).rsplit(".", 1)[-1].lower()
            events.append((e.start_ns(), e.nbytes(), kind, e.start_thread_id()))
        elif name in spans:
            spans[name].append((e.start_ns(), e.end_ns()))
    events.sort(key=lambda ev: ev[0])
    return result, events, spans


def _peak(mem: list[tuple[int, int]]) -> int:
    """Largest prefix sum of the signed sizes (already in time order), at least 0."""
    return max(itertools.accumulate((n for _, n in mem), initial=0))


def _range_peaks(mem: list[tuple[int, int]], spans: dict[str, list[tuple[int, int]]],
                 names: Iterable[str]) -> dict[str, int]:
    times = [t for t, _ in mem]
    held = list(itertools.accumulate((n for _, n in mem), initial=0))  # held[i]: after the first i events
    out = {}
    for name in names:
        best = 0
        for start, end in spans.get(name, []):
            lo, hi = bisect.bisect_left(times, start), bisect.bisect_right(times, end)
            if hi > lo:
                best = max(best, max(held[lo + 1:hi + 1]) - held[lo])
        out[name] = best
    return out


# ----------------------------------------------------------------------------- threads


def profiled_here() -> bool:
    """Whether torch's profiler records this thread (a ``measure_peak`` or any profiler session)."""
    return torch._C._autograd._profiler_enabled()


_JOBS: dict[int, Callable[[], None]] = {}
_KEYS = itertools.count()
_DONE = object()
_WARNED: list[bool] = []
_FORK_JOIN: list = []
_FORK_LOCK = threading.Lock()


@torch.jit.ignore
def _run_job(key: int) -> int:
    _JOBS.pop(key)()
    return 0


def _fork_join(keys: list[int]) -> int:
    futures = [torch.jit.fork(_run_job, key) for key in keys]
    done = 0
    for future in futures:
        done += torch.jit.wait(future)
    return done


def _compiled_fork_join():
    """``torch.jit.fork`` is what puts a task on torch's inter-op pool with the caller's state."""
    with _FORK_LOCK:
        if not _FORK_JOIN:
            with warnings.catch_warnings():
                # deprecated for model export; still the one Python route onto torch's at::launch
                warnings.simplefilter("ignore", DeprecationWarning)
                _FORK_JOIN.append(torch.jit.script(_fork_join))
        return _FORK_JOIN[0]


def map_on_torch_threads(fn: Callable[[T], object], items: Sequence[T], workers: int) -> None:
    """Call ``fn(item)`` for every item on up to ``workers`` of torch's inter-op threads.

    Unlike Python's threads these carry the caller's torch thread-local state (profiler,
    grad mode), so a profile of the caller counts their allocations. Each thread takes
    the next item when it finishes one, as a thread pool does. The first exception is
    raised here once every thread has stopped.
    """
    pending = iter(items)
    lock = threading.Lock()
    errors: list[BaseException] = []

    def drain() -> None:
        while not errors:
            with lock:
                item = next(pending, _DONE)
            if item is _DONE:
                return
            try:
                fn(item)
            except BaseException as err:  # noqa: BLE001 - handed to the caller below
                errors.append(err)

    jobs = max(1, min(workers, len(items)))
    if jobs > torch.get_num_interop_threads() and not _WARNED:
        _WARNED.append(True)
        logger.warning("map_on_torch_threads: %d workers wanted, torch has %d inter-op threads; fewer run at once "
                       "(set_num_interop_threads to match)", jobs, torch.get_num_interop_threads())
    keys = []
    for _ in range(jobs):
        key = next(_KEYS)
        _JOBS[key] = drain
        keys.append(key)
    _compiled_fork_join()(keys)
    if errors:
        raise errors[0]
