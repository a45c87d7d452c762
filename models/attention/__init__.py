"""Attention kernels (math, sdpa, flash; on CUDA also SDPA's kernels and triton), sparse patterns, the lazy spec."""

from . import flash as _flash  # noqa: F401  (registers the "flash" backend)
from . import sdpa_kernels as _sdpa_kernels  # noqa: F401  (on CUDA: registers "sdpa_flash", ...)
from . import triton_flash as _triton_flash  # noqa: F401  (on CUDA with triton: registers "triton")
from .availability import BackendStatus, backend_status
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
    "BACKENDS", "AttentionResult", "AttentionSpec", "Backend", "BackendStatus", "BiasFn", "MaskPattern",
    "backend_status",
    "PATTERNS", "BigBirdPattern", "LongformerPattern", "get_backend", "kv_groups", "make_pattern",
    "register_backend", "repeat_kv", "row_lse", "use_backend", "active_backend",
]
