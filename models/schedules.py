"""Learning-rate schedules as pure functions of the optimizer step, looked up by name.

`step` is the count of optimizer updates already done, the number
`torch.optim.lr_scheduler.LambdaLR` passes to its lambda: the first update runs with
`step == 0`. Every schedule with a warmup therefore gives 0 at step 0, as the
`transformers` schedules do.

Most schedules return a *multiplier* of the optimizer's base learning rate. One,
`inverse_sqrt`, returns an *absolute* learning rate, exactly as the Transformer paper
writes it; `inverse_sqrt_normalized` is the same curve scaled so its peak is 1.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .names import lookup

logger = logging.getLogger(__name__)


def _check_warmup(warmup: int) -> None:
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")


def _linear_warmup(step: int, warmup: int) -> float:
    return step / warmup


def constant(step: int, warmup: int = 0) -> float:
    """Multiplier: linear warmup from 0 to 1 over `warmup` steps, then 1."""
    _check_warmup(warmup)
    if step < warmup:
        return _linear_warmup(step, warmup)
    return 1.0


def _decay_progress(step: int, warmup: int, total: int, min_ratio: float) -> float | None:
    """How far a warmup-then-decay schedule is into its decay at ``step``: in [0, 1] (1 from ``total`` on),
    or None during the warmup. Raises ValueError for a negative warmup, ``total <= warmup`` or a
    ``min_ratio`` outside [0, 1]."""
    _check_warmup(warmup)
    if total <= warmup:
        raise ValueError(f"total ({total}) must be greater than warmup ({warmup})")
    if not 0.0 <= min_ratio <= 1.0:
        raise ValueError(f"min_ratio must be in [0, 1], got {min_ratio}")
    if step < warmup:
        return None
    return min(1.0, (step - warmup) / (total - warmup))


def warmup_cosine(step: int, warmup: int, total: int, min_ratio: float = 0.0) -> float:
    """Multiplier: linear warmup to 1, then half a cosine down to `min_ratio` at `total`.

    After `total` it stays at `min_ratio`, so training a little past the planned
    length never makes the rate climb again.
    """
    progress = _decay_progress(step, warmup, total, min_ratio)
    if progress is None:
        return _linear_warmup(step, warmup)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_linear(step: int, warmup: int, total: int, min_ratio: float = 0.0) -> float:
    """Multiplier: linear warmup to 1, then a straight line down to `min_ratio` at `total`.

    The schedule BERT was trained with (Devlin et al. 2019, arXiv 1810.04805, with `min_ratio=0`)
    and `transformers`' `get_linear_schedule_with_warmup`. Stays at `min_ratio` after `total`.
    """
    progress = _decay_progress(step, warmup, total, min_ratio)
    if progress is None:
        return _linear_warmup(step, warmup)
    return 1.0 - (1.0 - min_ratio) * progress


def inverse_sqrt(step: int, warmup: int, d_model: int) -> float:
    """Absolute LR from Vaswani et al. 2017, "Attention Is All You Need", eq. 3.

        lrate = d_model ** -0.5 * min(step ** -0.5, step * warmup ** -1.5)

    It rises linearly for `warmup` steps, peaks at `(d_model * warmup) ** -0.5`
    (7.0e-4 for the paper's d_model=512, warmup=4000) and then decays as 1/sqrt(step).
    This is a learning rate, not a multiplier: under `make_scheduler` give the
    optimizer `lr=1.0` (or the scale factor you want on top of the paper's curve).
    At step 0 the first term is infinite and the second is 0, so the value is 0.
    """
    if warmup <= 0:
        raise ValueError(f"inverse_sqrt needs warmup > 0, got {warmup}")
    if d_model <= 0:
        raise ValueError(f"d_model must be > 0, got {d_model}")
    if step <= 0:
        return 0.0
    return d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)


def inverse_sqrt_normalized(step: int, warmup: int) -> float:
    """Multiplier: `inverse_sqrt` divided by its peak, so it is 1 at `step == warmup`.

    Dividing eq. 3 by its peak `(d_model * warmup) ** -0.5` removes d_model and leaves
    `min(step / warmup, sqrt(warmup / step))`.
    """
    if warmup <= 0:
        raise ValueError(f"inverse_sqrt_normalized needs warmup > 0, got {warmup}")
    if step <= 0:
        return 0.0
    return min(step / warmup, math.sqrt(warmup / step))


@dataclass(frozen=True)
class Schedule:
    name: str
    fn: Callable[..., float]
    absolute: bool  # True: fn gives a learning rate; False: a multiplier of the base LR
    description: str

    def __call__(self, step: int, **kw: float) -> float:
        return self.fn(step, **kw)


SCHEDULES: dict[str, Schedule] = {
    s.name: s
    for s in (
        Schedule("constant", constant, False, "linear warmup, then flat"),
        Schedule("warmup_cosine", warmup_cosine, False, "linear warmup, cosine decay to min_ratio"),
        Schedule("warmup_linear", warmup_linear, False, "linear warmup, linear decay to min_ratio"),
        Schedule("inverse_sqrt", inverse_sqrt, True, "Vaswani et al. 2017 eq. 3, absolute LR"),
        Schedule("inverse_sqrt_normalized", inverse_sqrt_normalized, False, "eq. 3 scaled to peak 1"),
    )
}


def get_schedule(name: str) -> Schedule:
    return lookup(SCHEDULES, name, "schedule", sep=", ")


def _bind(schedule: Schedule, kw: dict[str, float]) -> Callable[[int], float]:
    """Bind keyword arguments now, so a typo fails here and not at the first step."""
    try:
        inspect.signature(schedule.fn).bind(0, **kw)
    except TypeError as e:
        raise TypeError(f"schedule {schedule.name!r}: {e}") from None
    # functools.partial rather than a lambda: LambdaLR can then pickle/inspect it.
    return functools.partial(schedule.fn, **kw)


def make_scheduler(optimizer: torch.optim.Optimizer, name: str, **kw: float) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR whose factor is the named schedule; call `.step()` after each update.

    LambdaLR multiplies each param group's initial `lr` by the schedule's value; for an
    absolute schedule (`inverse_sqrt`) that initial `lr` should be 1.0.
    """
    schedule = get_schedule(name)
    fn = _bind(schedule, kw)
    if schedule.absolute:
        base = {g["lr"] for g in optimizer.param_groups}
        if base != {1.0}:
            logger.warning(
                "schedule %r gives an absolute LR but the optimizer's lr is %s; "
                "the effective LR is their product", name, sorted(base),
            )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)


def schedule_curve(name: str, total_steps: int, **kw: float) -> list[float]:
    """Values for steps 0 .. total_steps-1, for plotting.

    A schedule that takes `total` gets `total_steps` unless `total` is given.
    """
    schedule = get_schedule(name)
    if "total" in inspect.signature(schedule.fn).parameters and "total" not in kw:
        kw = {**kw, "total": total_steps}
    fn = _bind(schedule, kw)
    return [fn(step) for step in range(total_steps)]
