"""The comparison labs (stability, schedules) and gradient checkpointing, measured.

Quick runs check what every run records (the LR the optimizer used is the schedule's formula, per-layer
gradient norms add up to no more than the global norm); the shipped results are re-judged from their own
series, so a claim in results.json is the claim its numbers make; checkpointing's memory comes from torch's
allocator and is at least the attention weights the math backend keeps for backward."""

from __future__ import annotations

import json
import math

import pytest

from attnlab.models.config import TransformerConfig
from attnlab.models.labs import LABS, run_lab
from attnlab.models.labs import schedules as schedules_lab
from attnlab.models.labs import stability as stability_lab
from attnlab.models.labs.variants import tail_mean
from attnlab.models.paths import ZOO
from attnlab.models.schedules import SCHEDULES
from attnlab.models.training.checkpointing import measure_checkpointing, synthetic_batch

SMALL = {"steps": 4, "n_layers": 2, "d_model": 16, "threads": 1, "max_chars": 60_000}


@pytest.fixture(scope="module")
def stability(tmp_path_factory):
    out = tmp_path_factory.mktemp("stability")
    return run_lab("stability", out, quick=True, warmup=2, **SMALL), out


@pytest.fixture(scope="module")
def schedules(tmp_path_factory):
    out = tmp_path_factory.mktemp("schedules")
    return run_lab("schedules", out, quick=True, warmup=2, **SMALL), out


def test_labs_are_registered():
    assert {"stability", "schedules"} <= set(LABS)


@pytest.mark.slow
def test_stability_quick_records_every_step(stability):
    results, out = stability
    assert json.loads((out / "results.json").read_text())["lab"] == "stability"
    runs = {r["name"]: r for r in results["runs"]}
    assert set(runs) == {f"{n}_{w}_{s}" for n in ("pre", "post") for w in ("warmup", "nowarmup")
                         for s in ("normal", "high")}
    for r in runs.values():
        assert r["step"] == [1, 2, 3, 4]
        assert len(r["layer_grad_norms"]) == 2 and all(len(layer) == 4 for layer in r["layer_grad_norms"])
        for i, total in enumerate(r["grad_norm"]):  # the blocks are part of the whole model's gradient
            assert math.sqrt(sum(layer[i] ** 2 for layer in r["layer_grad_norms"])) <= total * (1 + 1e-3)
        assert r["final_loss"] == pytest.approx(tail_mean(r["loss"]), rel=1e-4)
    # constant LR after a linear warmup of 2 steps: 0, lr/2, lr, lr (the first update runs at step 0)
    assert runs["post_warmup_high"]["lr"] == pytest.approx([0.0, 0.0015, 0.003, 0.003])
    assert runs["pre_nowarmup_normal"]["lr"] == pytest.approx([0.001] * 4)
    assert set(results["claims"]) == set(stability_lab.CLAIMS)


@pytest.mark.slow
def test_schedules_quick_lr_follows_each_formula(schedules):
    results, _ = schedules
    assert [r["name"] for r in results["runs"]] == list(schedules_lab.SCHEDULE_LABELS)
    for r in results["runs"]:
        name = r["name"]
        kw = {"warmup": 0 if name == "constant" else 2}
        if name in ("warmup_linear", "warmup_cosine"):
            kw |= {"total": 4, "min_ratio": 0.1}
        expected = [0.01 * SCHEDULES[name].fn(step - 1, **kw) for step in r["step"]]
        assert r["lr"] == pytest.approx(expected, rel=1e-4, abs=1e-9), name  # stored to 5 significant digits
    assert results["figures"]["curves"]["layout"]["yaxis2"]["overlaying"] == "y"


def run(name: str, val: float | None, diverged_at: int | None = None) -> dict:
    return {"name": name, "val_loss": val, "diverged_at": diverged_at}


def stability_runs(**vals) -> list[dict]:
    names = [f"{n}_{w}_{s}" for n in ("pre", "post") for w in ("warmup", "nowarmup") for s in ("normal", "high")]
    return [run(n, vals.get(n, 4.0)) for n in names]


def test_stability_judge():
    # post-norm without warmup at the high LR 0.5 nats worse, pre-norm unaffected: every claim holds
    verdict = stability_lab.judge(stability_runs(post_nowarmup_high=4.5), 512)
    assert verdict["holds"] and verdict["ended_worse"] == ["post_nowarmup_high"]
    # the same gap, 0.1 nats: the first claim fails
    verdict = stability_lab.judge(stability_runs(post_nowarmup_high=4.1), 512)
    assert not verdict["claims"]["post_norm_needs_warmup"]["holds"] and not verdict["holds"]
    # at or above the uniform loss ln(512) = 6.24 a run counts as diverged, even without a NaN
    verdict = stability_lab.judge(stability_runs(post_nowarmup_high=6.3, pre_nowarmup_normal=6.3), 512)
    assert verdict["diverged"] == ["post_nowarmup_high", "pre_nowarmup_normal"]
    assert not verdict["claims"]["pre_norm_needs_no_warmup"]["holds"]
    assert not verdict["claims"]["normal_lr_trains"]["holds"]


def test_schedules_judge():
    holds = schedules_lab.judge([run("constant", 4.0), run("warmup_linear", 3.9), run("warmup_cosine", 3.95),
                                 run("inverse_sqrt_normalized", 3.97)])
    assert holds["holds"] and holds["ranking"][0] == "warmup_linear"
    fails = schedules_lab.judge([run("constant", 4.0), run("warmup_linear", 3.99), run("warmup_cosine", 3.9),
                                 run("inverse_sqrt_normalized", 4.1)])
    assert not fails["claims"]["decay_beats_constant"]["holds"]
    assert not fails["claims"]["inverse_sqrt_in_between"]["holds"]


def shipped(lab: str, command: str | None = None) -> dict:
    path = ZOO / lab / "results.json"
    if not path.exists():
        pytest.skip(f"no shipped {lab} results ({command or f'attnlab lab {lab} --out models/zoo/{lab}'})")
    return json.loads(path.read_text())


def test_shipped_stability_claims_are_what_its_numbers_say():
    results = shipped("stability")
    assert not results["quick"]
    verdict = stability_lab.judge(results["runs"], results["setup"]["model"]["vocab_size"])
    assert verdict == {k: results[k] for k in verdict}
    for r in results["runs"]:
        assert r["final_loss"] == pytest.approx(tail_mean(r["loss"]), rel=1e-3)
        assert len(r["step"]) == results["setup"]["train"]["steps"] or r["diverged_at"] is not None
    if results["claims"]["pre_norm_needs_no_warmup"]["holds"]:  # the effect it claims, in the numbers
        by = {r["name"]: r for r in results["runs"]}
        for speed in ("normal", "high"):
            assert by[f"pre_nowarmup_{speed}"]["val_loss"] < by[f"pre_warmup_{speed}"]["val_loss"] + 0.2


def test_shipped_stability_gradient_norms_by_depth_at_initialisation():
    # Xiong et al. 2020, fig. 3: at initialisation post-norm's gradient grows towards the output layers, pre-norm's
    # does not. The same initial weights and first batch for every run: step 1's per-layer norms show it
    results = shipped("stability")
    by = {r["name"]: [layer[0] for layer in r["layer_grad_norms"]] for r in results["runs"]}
    post, pre = by["post_nowarmup_high"], by["pre_nowarmup_high"]
    assert post[-1] > 1.5 * post[0] and pre[-1] < pre[0]
    assert by["post_warmup_normal"] == post  # the LR does not change the first step's gradient


def test_shipped_schedules_claims_are_what_its_numbers_say():
    results = shipped("schedules")
    assert not results["quick"]
    verdict = schedules_lab.judge(results["runs"])
    assert verdict == {k: results[k] for k in verdict}
    steps, warmup = results["setup"]["train"]["steps"], results["setup"]["train"]["warmup"]
    for r in results["runs"]:  # the recorded LR is each schedule's formula
        kw = {"warmup": 0 if r["name"] == "constant" else warmup}
        if r["name"] in ("warmup_linear", "warmup_cosine"):
            kw |= {"total": steps, "min_ratio": results["setup"]["train"]["min_lr_ratio"]}
        lr = results["setup"]["train"]["lr"]
        assert r["lr"] == pytest.approx([lr * SCHEDULES[r["name"]].fn(s - 1, **kw) for s in r["step"]], rel=1e-4,
                                        abs=1e-9)


def test_checkpointing_memory_from_the_allocator():
    # 4 layers, math attention: without checkpointing every layer keeps its (B, H, T, T) float32 softmax for the
    # backward, so the step's peak holds at least all of them; with it, one layer's at a time
    config = TransformerConfig(family="decoder", vocab_size=64, d_model=32, n_layers=4, n_heads=4, max_positions=128,
                               attn_backend="math")
    B, T = 2, 128
    row = measure_checkpointing("small", config, synthetic_batch(config, B, T), repeats=1)
    weights = config.n_layers * B * config.n_heads * T * T * 4
    assert row.peak_without_mib * 2**20 >= weights
    assert row.peak_with_mib < 0.6 * row.peak_without_mib
    assert row.saving_ratio == pytest.approx(1 - row.peak_with_mib / row.peak_without_mib, abs=1e-3)
    assert row.tokens == B * T and row.batch == "2 x 128" and "profiler" in row.method
    with pytest.raises(ValueError, match="repeats"):
        measure_checkpointing("small", config, synthetic_batch(config, B, T), repeats=0)


def test_shipped_checkpointing_table():
    results = shipped("checkpointing", "attnlab bench checkpointing --out models/zoo/checkpointing")
    names = [r["model"] for r in results["rows"]]
    assert "minilm-shape" in names and "lm" in names
    for r in results["rows"]:
        assert 0 < r["peak_with_mib"] < r["peak_without_mib"], r
