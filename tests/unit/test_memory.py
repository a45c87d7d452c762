"""Measured memory is measured: torch's own allocations during the call, every thread that works on it.

models.memory.measure_peak is the one source of every memory number (synthetic sweep, model
form, Backends page, CLI); these tests hold it to known allocations and to what the kernels
must hold.
"""

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from attnlab.models import ScratchAdapter, TransformerConfig, build_model
from attnlab.models.attention import AttentionSpec, get_backend
from attnlab.models.attention.backends import KERNEL_RANGE
from attnlab.models.benchmark import benchmark_backends, benchmark_model
from attnlab.models.memory import CPU_METHOD, map_on_torch_threads, measure_peak
from attnlab.models.tokenization import CharTokenizer

MIB = 2**20
ONE_CALL = dict(min_runs=1, max_runs=1)


def test_a_known_allocation_is_reported_to_the_byte():
    n = 3 * MIB + 123
    _, peak = measure_peak(lambda: torch.empty(n, dtype=torch.uint8))
    assert peak.bytes == n and peak.method == CPU_METHOD and peak.threads == 1


def test_the_peak_counts_freed_memory_and_excludes_the_baseline():
    before = torch.ones(8 * MIB, dtype=torch.uint8)  # held before the call: the baseline
    held = [before]

    def call():
        scratch = torch.ones(5 * MIB, dtype=torch.uint8)  # freed before the call returns
        del scratch
        held.pop()  # frees the 8 MiB of the baseline: the running sum goes below zero
        return torch.ones(2 * MIB, dtype=torch.uint8)

    kept, peak = measure_peak(call)
    assert peak.bytes == 5 * MIB and kept.numel() == 2 * MIB
    _, nothing = measure_peak(lambda: None)
    assert nothing.bytes == 0


def test_a_named_range_has_its_own_peak():
    def call():
        outside = torch.empty(4 * MIB, dtype=torch.uint8)
        with torch.profiler.record_function("attnlab::test"):
            inside = torch.empty(MIB, dtype=torch.uint8)
            del inside
        return outside

    _, peak = measure_peak(call, ranges=["attnlab::test", "attnlab::never"])
    assert peak.bytes == 5 * MIB and peak.ranges == {"attnlab::test": MIB, "attnlab::never": 0}


def test_allocations_on_torch_threads_are_counted():
    kept = []

    def call():
        kept.append(torch.empty(MIB, dtype=torch.uint8))  # this thread
        map_on_torch_threads(lambda n: kept.append(torch.empty(n, dtype=torch.uint8)), [2 * MIB], workers=2)

    _, peak = measure_peak(call)
    assert peak.bytes == 3 * MIB and peak.threads == 2


def test_plain_python_threads_are_not_seen_by_the_profiler():
    """Why flash hands its tiles to torch's threads while profiled (see models.memory)."""
    with ThreadPoolExecutor(1) as pool:
        _, peak = measure_peak(lambda: pool.submit(torch.empty, 2 * MIB, dtype=torch.uint8).result())
    assert peak.bytes == 0


@pytest.mark.parametrize("seq_len", [256, 512])
def test_math_holds_its_score_matrix_and_more_than_sdpa_and_flash(seq_len):
    """B=1, 4 heads, D=64, fp32: math materialises the 4 x T x T scores (1 MiB at 256, 4 MiB at 512)."""
    rows = benchmark_backends([seq_len], ("math", "sdpa", "flash"), True, 4, 64, "fwd", **ONE_CALL)
    peak = {r["backend"]: r["peak_memory_bytes"] for r in rows}
    scores = 4 * seq_len * seq_len * 4
    assert peak["math"] >= scores, peak
    assert peak["math"] > peak["flash"] and peak["math"] > peak["sdpa"], peak
    assert all(r["memory_method"] == CPU_METHOD for r in rows)


@pytest.mark.skipif("OpenMP" not in torch.__config__.parallel_info(), reason="flash runs its tiles serially here")
def test_flash_worker_threads_are_counted():
    """T=512, 4 heads, two threads: flash runs its tiles on workers, and their score tiles count."""
    b, h, t, d = 1, 4, 512, 64
    q, k, v = (torch.randn(b, h, t, d) for _ in range(3))
    spec = AttentionSpec(scale=d**-0.5, causal=True)
    flash = get_backend("flash")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch.no_grad():
            _, peak = measure_peak(lambda: flash(q, k, v, spec))
    finally:
        torch.set_num_threads(before)
    out_and_lse = b * h * t * (d + 1) * 4
    one_tile = 256 * 256 * 4  # one head's scores for one 256 x 256 tile, the smallest tile a worker holds
    assert peak.threads >= 2 and peak.bytes >= out_and_lse + one_tile, peak


def tiny_decoder(max_positions: int = 1024) -> ScratchAdapter:
    torch.manual_seed(0)
    tokenizer = CharTokenizer.from_corpus("abcdefghijklmnopqrstuvwxyz ")
    config = TransformerConfig(vocab_size=tokenizer.vocab_size, d_model=64, n_layers=2, n_heads=4, family="decoder",
                               positional="rope", max_positions=max_positions)
    return ScratchAdapter("tiny-decoder", build_model(config), tokenizer, "memory test model")


def test_model_form_reports_each_backends_attention_memory():
    """512 tokens, 4 heads: math's kernel holds the 4 MiB of scores, flash one tile, sdpa no T x T tensor."""
    text = ("attention is all you need " * 20)[:512]
    rows = benchmark_model(tiny_decoder(), text, ("math", "sdpa", "flash"), time_budget_s=60.0)
    attention = {r["backend"]: r["attention_peak_memory_bytes"] for r in rows}
    assert [r["n_tokens"] for r in rows] == [512] * 3
    assert attention["math"] >= 4 * 512 * 512 * 4, attention
    assert attention["math"] > attention["flash"] > attention["sdpa"] > 0, attention
    assert all(r["forward_peak_memory_bytes"] >= r["attention_peak_memory_bytes"] for r in rows)
    assert all(r["memory_method"] == CPU_METHOD for r in rows)


def test_the_kernel_range_covers_only_the_kernel():
    """The kernel's range sees the scores, not the projections before it (checked with math)."""
    b, h, t, d = 1, 2, 128, 32
    q, k, v = (torch.randn(b, h, t, d) for _ in range(3))
    spec = AttentionSpec(scale=d**-0.5, causal=False)
    math = get_backend("math")

    def call():
        projected = torch.empty(16 * MIB, dtype=torch.uint8)  # outside the kernel
        return projected, math(q, k, v, spec)

    _, peak = measure_peak(call, ranges=[KERNEL_RANGE])
    scores = b * h * t * t * 4
    assert scores <= peak.ranges[KERNEL_RANGE] < 16 * MIB <= peak.bytes
