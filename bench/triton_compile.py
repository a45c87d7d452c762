"""Compile the triton backend's kernels ahead of time for NVIDIA GPUs, on any machine (no GPU needed).

    python bench/triton_compile.py [--arch 90 80] [--dtype bfloat16 float32] [--head-dim 64 128 256] [--features]

Triton compiles a kernel to PTX and a cubin (with the ptxas its wheel ships) for a target
given by compute capability, so a CPU-only machine can check what the interpreter cannot:
that every kernel compiles for the GPU with the backend's fixed launch configurations, and
how much shared memory each needs against the GPU's per-block limit (over it, the launch
would fail on the GPU). Prints one line per (kernel, arch, dtype, head dim) and, last,
``triton_compile: N kernels, all within shared memory`` or the failures (exit status 1).
Compiling takes ~5 s per kernel on one CPU core.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

log = logging.getLogger("triton_compile")

# the largest dynamic shared memory one block may use (CUDA programming guide, per compute capability)
SHARED_LIMIT = {80: 163 * 1024, 86: 99 * 1024, 89: 99 * 1024, 90: 227 * 1024}
POINTER = {"bfloat16": "*bf16", "float16": "*fp16", "float32": "*fp32"}
SCALARS_FLOAT = {"scale_log2", "scale"}
TENSORS_FP32 = {"LSE", "LSE2", "DELTA", "bias_ptr", "DBIAS"}
TENSORS_U8 = {"pad_ptr", "mask_ptr"}
TENSORS_INPUT_DTYPE = {"Q", "K", "V", "Out", "DO", "DQ", "DK", "DV"}


def compile_one(kernel_name: str, arch: int, dtype: str, head_dim: int, features: bool) -> dict:
    """Compile one kernel variant for ``sm_<arch>``; returns its launch config, shared bytes and seconds."""
    import torch
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from attnlab.models.attention import triton_kernels as tk
    from attnlab.models.attention.triton_flash import dot_precision, launch_config, padded_head_dim

    fn = getattr(tk, kernel_name)
    cfg = launch_config(head_dim, backward=kernel_name != "flash_fwd", on_gpu=True,
                        itemsize=getattr(torch, dtype).itemsize)
    constexprs = dict(CAUSAL=True, HAS_PAD=features, BIAS_MODE=1 if features else 0, HAS_MASK=features,
                      PRECISION=dot_precision(getattr(torch, dtype)), UPCAST=False, BLOCK_M=cfg.block_m,
                      BLOCK_N=cfg.block_n, BLOCK_D=padded_head_dim(head_dim), BIAS_GRAD=features)
    constexprs = {k: v for k, v in constexprs.items() if k in fn.arg_names}  # BIAS_GRAD: the dQ kernel's
    signature = {}
    for name in fn.arg_names:
        if name in constexprs:
            signature[name] = "constexpr"
        elif name in TENSORS_FP32:
            signature[name] = "*fp32"
        elif name in TENSORS_U8:
            signature[name] = "*u8"
        elif name in SCALARS_FLOAT:
            signature[name] = "fp32"
        elif name in TENSORS_INPUT_DTYPE:
            signature[name] = POINTER[dtype]
        else:
            signature[name] = "i32"
    source = ASTSource(fn, signature, constexprs={(fn.arg_names.index(k),): v for k, v in constexprs.items()})
    t0 = time.perf_counter()
    compiled = triton.compile(source, target=GPUTarget("cuda", arch, 32),
                              options={"num_warps": cfg.num_warps, "num_stages": cfg.num_stages})
    return {"kernel": kernel_name, "arch": arch, "dtype": dtype, "head_dim": head_dim, "features": features,
            "block_m": cfg.block_m, "block_n": cfg.block_n, "num_warps": cfg.num_warps, "num_stages": cfg.num_stages,
            "shared_bytes": compiled.metadata.shared, "shared_limit": SHARED_LIMIT.get(arch),
            "seconds": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, nargs="+", default=[90], help="compute capabilities (80: A100, 90: H100)")
    parser.add_argument("--dtype", nargs="+", default=["bfloat16", "float32"], choices=sorted(POINTER))
    parser.add_argument("--head-dim", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--kernels", nargs="+", default=["flash_fwd", "flash_bwd_dkdv", "flash_bwd_dq"])
    parser.add_argument("--features", action="store_true",
                        help="also the variant with key padding, a relative bias and a sparse mask")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        log.error("triton_compile: unset TRITON_INTERPRET (the interpreter does not compile)")
        return 2
    from tqdm import tqdm

    plan = [(k, a, d, h, f) for a in args.arch for d in args.dtype for h in args.head_dim for k in args.kernels
            for f in ([False, True] if args.features else [False])]
    failures = []
    for kernel, arch, dtype, head_dim, features in tqdm(plan, desc="compiling", unit="kernel", file=sys.stderr):
        try:
            row = compile_one(kernel, arch, dtype, head_dim, features)
        except Exception as err:  # a compile error is the finding: report it and go on
            failures.append(f"{kernel} sm_{arch} {dtype} d{head_dim}: {type(err).__name__}: {str(err)[:300]}")
            continue
        over = row["shared_limit"] is not None and row["shared_bytes"] > row["shared_limit"]
        if over:
            failures.append(f"{kernel} sm_{arch} {dtype} d{head_dim}: {row['shared_bytes']} B shared "
                            f"> the {row['shared_limit']} B limit")
        log.info("%-15s sm_%d %-8s d%-3d %s tiles %dx%d warps %d stages %d shared %6d B%s (%.1f s)", kernel, arch,
                 dtype, head_dim, "features" if features else "plain   ", row["block_m"], row["block_n"],
                 row["num_warps"], row["num_stages"], row["shared_bytes"], "  OVER LIMIT" if over else "",
                 row["seconds"])
    for failure in failures:
        log.error("FAILED %s", failure)
    print(f"triton_compile: {len(plan)} kernels, " + (f"{len(failures)} failed" if failures
                                                      else "all within shared memory"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
