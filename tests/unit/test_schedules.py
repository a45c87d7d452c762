"""Schedules: values at known steps, worked out by hand below each assertion."""

import math

import pytest
import torch

from attnlab.models.schedules import (
    SCHEDULES,
    constant,
    get_schedule,
    inverse_sqrt,
    inverse_sqrt_normalized,
    make_scheduler,
    schedule_curve,
    warmup_cosine,
    warmup_linear,
)


def test_constant():
    assert constant(0, warmup=4) == 0.0
    assert constant(1, warmup=4) == 0.25
    assert constant(4, warmup=4) == 1.0
    assert constant(1000, warmup=4) == 1.0
    assert constant(0, warmup=0) == 1.0


def test_warmup_cosine():
    # warmup 10, total 110: the cosine spans steps 10..110.
    assert warmup_cosine(0, 10, 110) == 0.0
    assert warmup_cosine(5, 10, 110) == 0.5
    assert warmup_cosine(10, 10, 110) == 1.0
    # halfway: 0.5 * (1 + cos(pi/2)) = 0.5
    assert warmup_cosine(60, 10, 110) == pytest.approx(0.5)
    # a quarter: 0.5 * (1 + cos(pi/4)) = 0.5 + sqrt(2)/4 = 0.853553...
    assert warmup_cosine(35, 10, 110) == pytest.approx(0.8535533905932737)
    assert warmup_cosine(110, 10, 110) == pytest.approx(0.0)
    # min_ratio 0.1 at halfway: 0.1 + 0.9 * 0.5 = 0.55; past total it stays at the floor.
    assert warmup_cosine(60, 10, 110, min_ratio=0.1) == pytest.approx(0.55)
    assert warmup_cosine(500, 10, 110, min_ratio=0.1) == pytest.approx(0.1)


def test_warmup_linear():
    # warmup 10, total 110: the straight line spans steps 10..110.
    assert warmup_linear(0, 10, 110) == 0.0
    assert warmup_linear(5, 10, 110) == 0.5
    assert warmup_linear(10, 10, 110) == 1.0
    assert warmup_linear(60, 10, 110) == pytest.approx(0.5)  # halfway down
    assert warmup_linear(35, 10, 110) == pytest.approx(0.75)  # a quarter down
    assert warmup_linear(110, 10, 110) == pytest.approx(0.0)
    # min_ratio 0.2 at halfway: 1 - 0.8 * 0.5 = 0.6; past total it stays at the floor
    assert warmup_linear(60, 10, 110, min_ratio=0.2) == pytest.approx(0.6)
    assert warmup_linear(500, 10, 110, min_ratio=0.2) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="total"):
        warmup_linear(0, 10, 10)


def test_inverse_sqrt_matches_paper():
    # Paper values: d_model 512, warmup 4000. Peak at step 4000 = (512 * 4000) ** -0.5
    # = 1 / sqrt(2_048_000) = 6.987712429686844e-04.
    assert inverse_sqrt(4000, 4000, 512) == pytest.approx(6.987712429686844e-04, rel=1e-12)
    # Warmup branch, step 1000: 512**-0.5 * 1000 * 4000**-1.5 = 1.7469281074217108e-04 (a quarter of the peak).
    assert inverse_sqrt(1000, 4000, 512) == pytest.approx(1.7469281074217108e-04, rel=1e-12)
    # Decay branch, step 16000: 512**-0.5 * 16000**-0.5 = 1 / sqrt(8_192_000) = 3.493856214843422e-04 (half the peak).
    assert inverse_sqrt(16000, 4000, 512) == pytest.approx(3.493856214843422e-04, rel=1e-12)
    assert inverse_sqrt(0, 4000, 512) == 0.0


def test_inverse_sqrt_normalized_peaks_at_one():
    assert inverse_sqrt_normalized(4000, 4000) == 1.0
    assert inverse_sqrt_normalized(1000, 4000) == 0.25
    assert inverse_sqrt_normalized(16000, 4000) == 0.5
    for step in (1, 10, 3999, 4001, 10**6):
        ratio = inverse_sqrt(step, 4000, 512) / inverse_sqrt(4000, 4000, 512)
        assert inverse_sqrt_normalized(step, 4000) == pytest.approx(ratio, rel=1e-12)


def test_unknown_schedule_lists_known():
    with pytest.raises(ValueError, match="warmup_cosine"):
        get_schedule("linear")


def test_bad_arguments_fail_early():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(TypeError, match="warmup_cosine"):
        make_scheduler(opt, "warmup_cosine", warmup=10)  # total missing
    with pytest.raises(ValueError):
        warmup_cosine(0, 10, 10)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_make_scheduler_follows_the_function(name):
    kw = {"constant": {"warmup": 3}, "warmup_cosine": {"warmup": 3, "total": 20, "min_ratio": 0.1},
          "warmup_linear": {"warmup": 3, "total": 20, "min_ratio": 0.1},
          "inverse_sqrt": {"warmup": 3, "d_model": 16}, "inverse_sqrt_normalized": {"warmup": 3}}[name]
    base_lr = 0.5
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base_lr)
    sched = make_scheduler(opt, name, **kw)
    fn = SCHEDULES[name].fn
    for step in range(25):
        assert opt.param_groups[0]["lr"] == pytest.approx(base_lr * fn(step, **kw))
        opt.step()
        sched.step()


def test_schedule_curve():
    curve = schedule_curve("warmup_cosine", 110, warmup=10)
    assert len(curve) == 110
    assert curve[10] == 1.0 and curve[60] == pytest.approx(0.5)
    assert max(curve) == 1.0 and all(math.isfinite(v) for v in curve)
    assert schedule_curve("constant", 5, warmup=2) == [0.0, 0.5, 1.0, 1.0, 1.0]
