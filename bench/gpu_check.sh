#!/usr/bin/env bash
# The GPU check, in one command on a CUDA machine that reaches no package registry (at most ~9 minutes:
# its steps time out after 200 + 90 + 240 s, so it fits one 10-minute call):
#
#     bash bench/gpu_check.sh            # PYTHON=python3 by default; OUT=<dir> keeps the JSON rows there
#
# That machine has its own python3 with torch (CUDA), triton, numpy, pytest, transformers, safetensors and
# tokenizers, but not fastapi, uvicorn or pydantic-settings, and only the working tree (no bundled model
# packages). So attnlab is installed with --no-deps --no-index (or, where pip cannot build it there, laid out
# as the wheel lays it out, on PYTHONPATH), nothing serves, and the models are random-initialised.
# Steps: what the machine has; the cuda-marked tests (the triton kernels compiled: the kernel matrix's fast
# subset and its 2049-long cases against the float64 reference, real sizes against SDPA; a bf16 model placed
# on the GPU); the interpreter's fast subset of the kernel matrix (this Triton's interpreter);
# then the benchmark (bench/gpu_attention.py), whose last line, the last of this script, reads
#     triton_speed_vs_sdpa_flash T=4096 causal fwd bf16: <SDPA-flash time / triton time>
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-$(mktemp -d)}
export HF_HUB_OFFLINE=1 TRITON_DEFAULT_FP_FUSION=1 PYTHONDONTWRITEBYTECODE=1
unset TRITON_INTERPRET
status=0

echo "== machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
$PY -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda,
"available", torch.cuda.is_available())'
$PY -c 'import triton; print("triton", triton.__version__)' || echo "triton: not importable"

echo "== attnlab (no registry)"
SITE=$(mktemp -d)
if $PY -m pip install -q --no-deps --no-index --no-build-isolation --target "$SITE" . >"$OUT/pip.log" 2>&1; then
    echo "installed with pip --no-deps --no-index into $SITE"
else
    # pip needs setuptools to build; without it, the wheel's layout: app/ is attnlab, models/ is attnlab.models
    mkdir -p "$SITE/attnlab"
    cp -r app/. "$SITE/attnlab/"
    cp -r models "$SITE/attnlab/models"
    echo "laid out as the wheel is, in $SITE (pip: $(tail -n 1 "$OUT/pip.log"))"
fi
export PYTHONPATH="$SITE:$PWD"  # $PWD: the tests and bench packages of this tree
$PY - <<'EOF'
import torch
from attnlab.models.attention import backend_status
from attnlab.models.attention.sdpa_kernels import which_kernel
for s in backend_status("cuda"):
    print(f"{s.name:15s} offered={s.registered!s:5s} runs={s.available!s:5s} {s.reason or ''}")
q = torch.zeros(1, 16, 4096, 128, dtype=torch.bfloat16, device="cuda")
print("sdpa takes", which_kernel(q, q, q, is_causal=True), "for a causal bf16 call")
EOF

echo "== compiled kernels and the GPU placement (pytest -m cuda)"
timeout 200 $PY -m pytest -q -p no:cacheprovider -m cuda tests/unit/test_triton_flash.py tests/unit/test_cuda_models.py \
    tests/unit/test_kernel_matrix.py || status=1

echo "== this Triton's interpreter on the kernel matrix's fast subset"
TRITON_INTERPRET=1 timeout 90 $PY -m pytest -q -p no:cacheprovider -m "not slow" -k triton \
    tests/unit/test_kernel_matrix.py || status=1

echo "== benchmark (bf16, causal, fwd and fwd+bwd, T = 1k ... 16k)"
timeout 240 $PY bench/gpu_attention.py --budget 170 --json "$OUT/gpu_attention.json" || status=1
exit $status
