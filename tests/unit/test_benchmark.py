"""The attention benchmark: row fields, error vs math, budgets, CLI output (memory: tests/unit/test_memory.py)."""

import json
import re

import pytest
import torch

from attnlab.models.attention import AttentionSpec
from attnlab.models.attention.flash import flash_attention
from attnlab.models.benchmark import (
    attention_flops,
    benchmark_backends,
    format_summary_line,
    run_attention_bench,
)
from attnlab.models.memory import CPU_METHOD, measure_peak

FIELDS = {"backend", "seq_len", "causal", "pass", "median_ms", "gflops", "peak_mem_mb", "peak_memory_bytes",
          "memory_method", "max_abs_diff_vs_math", "ratio_vs_sdpa", "skipped", "n_heads", "head_dim", "runs", "flops"}
SUMMARY = re.compile(r"^flash_speed_vs_sdpa T=\d+ causal fwd: \d+\.\d\d$")
TINY = dict(n_heads=2, head_dim=16, min_runs=1, max_runs=2, measure_memory=False)


@pytest.mark.parametrize("passes", ["fwd", "fwd_bwd"])
def test_rows_have_the_fields_and_flash_matches_math(passes):
    rows = benchmark_backends([64], ("math", "sdpa", "flash"), (False, True), passes=passes, **TINY)
    assert len(rows) == 6
    for row in rows:
        assert set(row) >= FIELDS
        assert row["skipped"] is None and row["median_ms"] > 0 and row["gflops"] > 0 and row["pass"] == passes
        assert row["max_abs_diff_vs_math"] < 1e-5
        assert all(isinstance(v, (int, float, str, bool, type(None))) for v in row.values())
    assert {r["max_abs_diff_vs_math"] for r in rows if r["backend"] == "math"} == {0.0}
    assert all(r["ratio_vs_sdpa"] == 1.0 for r in rows if r["backend"] == "sdpa")
    json.dumps(rows)


def test_api_call_shape_with_memory():
    """The positional call POST /api/benchmark makes, with memory measured."""
    rows = benchmark_backends([32, 48], ["math", "flash"], True, 2, 16, "fwd", time_budget_s=20.0)
    assert [(r["backend"], r["seq_len"]) for r in rows] == [("math", 32), ("flash", 32), ("math", 48), ("flash", 48)]
    assert all(r["peak_mem_mb"] is not None and r["peak_mem_mb"] >= 0 for r in rows)
    assert all(r["memory_method"] == CPU_METHOD for r in rows)
    assert all(r["ratio_vs_sdpa"] is None for r in rows)


def test_time_budget_marks_rows_skipped():
    rows = benchmark_backends([32, 64], ("sdpa", "flash"), True, time_budget_s=0.0, **TINY)
    assert rows and all(r["skipped"] == "time budget" and r["median_ms"] is None for r in rows)


def test_math_is_skipped_when_it_would_not_fit():
    rows = benchmark_backends([64], ("math", "flash"), True, math_max_bytes=1, **TINY)
    math_row, flash_row = rows
    assert math_row["skipped"].startswith("math needs") and math_row["median_ms"] is None
    assert flash_row["median_ms"] > 0 and flash_row["max_abs_diff_vs_math"] is None


def test_unknown_backend_fails_before_running():
    with pytest.raises(KeyError, match="known"):
        benchmark_backends([32], ("warp",))


def test_quick_run_prints_json_then_the_summary_line(capsys):
    results = run_attention_bench(quick=True, as_json=True, summary_seq_len=64, n_heads=2, head_dim=16, progress=False)
    lines = capsys.readouterr().out.rstrip("\n").split("\n")
    assert SUMMARY.match(lines[-1]), lines[-1]
    assert lines[-1].startswith("flash_speed_vs_sdpa T=64 causal fwd: ")
    assert json.loads("\n".join(lines[:-1])) == results
    assert {r["backend"] for r in results} == {"math", "sdpa", "flash"}


def test_quick_run_human_table(capsys):
    run_attention_bench(quick=True, as_json=False, summary_seq_len=64, n_heads=2, head_dim=16, progress=False)
    lines = capsys.readouterr().out.rstrip("\n").split("\n")
    assert lines[0].split()[:2] == ["backend", "T"] and SUMMARY.match(lines[-1])
    assert lines[-2] == f"peak MiB: allocated by torch during one call, not process RSS. {CPU_METHOD}"


def test_summary_line_value_and_missing_rows():
    base = dict(seq_len=4096, causal=True, n_heads=12)
    rows = [dict(base, backend="sdpa", median_ms=74.0, **{"pass": "fwd"}),
            dict(base, backend="flash", median_ms=100.0, **{"pass": "fwd"})]
    assert format_summary_line(rows) == "flash_speed_vs_sdpa T=4096 causal fwd: 0.74"
    assert format_summary_line(rows[:1]) == "flash_speed_vs_sdpa T=4096 causal fwd: n/a"


def test_flop_convention():
    assert attention_flops(8, 2, 4, False, "fwd") == 4 * 2 * 64 * 4
    assert attention_flops(8, 2, 4, True, "fwd") == 2 * 2 * 64 * 4
    assert attention_flops(8, 2, 4, False, "fwd_bwd") == 10 * 2 * 64 * 4


@pytest.mark.slow
def test_flash_forward_at_32k_tokens_adds_under_64_mb():
    """One head, T=32768: a T x T score matrix would be 4 GiB; flash keeps O(T * d)."""
    t, d = 32768, 64
    q, k, v = (torch.randn(1, 1, t, d) for _ in range(3))
    spec = AttentionSpec(scale=d**-0.5, causal=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # this checks memory, not speed: one thread keeps it quick on a busy machine
    try:
        _, extra = measure_peak(lambda: flash_attention(q, k, v, spec))
    finally:
        torch.set_num_threads(threads)
    assert extra.bytes <= 64 * 2**20, f"{extra.mib:.1f} MiB"
