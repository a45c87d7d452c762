"""Attention kernels (math, sdpa, flash), sparse patterns and the lazy mask/bias spec."""

from . import flash as _flash  # noqa: F401  (registers the "flash" backend)
from .backends import (
    BACKENDS,
    AttentionResult,
    Backend,
    active_backend,
    get_backend,
    kv_groups,
    register_backend,
    repeat_kv,
    row_lse,
    use_backend,
)
from .sparse import PATTERNS, BigBirdPattern, LongformerPattern, make_pattern
from .spec import AttentionSpec, BiasFn, MaskPattern

__all__ = [
    "BACKENDS", "AttentionResult", "AttentionSpec", "Backend", "BiasFn", "MaskPattern",
    "PATTERNS", "BigBirdPattern", "LongformerPattern", "get_backend", "kv_groups", "make_pattern",
    "register_backend", "repeat_kv", "row_lse", "use_backend", "active_backend",
]
