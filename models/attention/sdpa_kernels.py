"""PyTorch SDPA's own kernels: which one a call uses, which this machine has, and one backend per kernel.

``torch.nn.functional.scaled_dot_product_attention`` dispatches to one of several kernels:
FlashAttention-2 (Dao 2023, arXiv 2307.08691), memory-efficient attention (Rabe & Staats
2021, arXiv 2112.05682; xFormers' CUTLASS kernel), cuDNN's fused attention, or the math
fallback. ``which_kernel`` names the one a call would take (torch's own choice,
``torch._fused_sdp_choice``, which honours an active ``sdpa_kernel`` block); on CUDA
``sdpa_flash``, ``sdpa_efficient``, ``sdpa_cudnn`` and ``sdpa_math`` force one kernel through
``torch.nn.attention.sdpa_kernel`` so the backend toggle can compare them.

A forced kernel that cannot take a call (the flash kernel with an attention mask or a
bias, a 16-bit-only kernel given float32) raises ValueError naming the kernel and the
reason SDPA gave, rather than falling back silently: the comparison would lie otherwise.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel

from .backends import BACKENDS, AttentionResult, Backend, sdpa_attention
from .spec import AttentionSpec

# our name -> SDPA's enum, in the order the toggle lists them
KERNELS: dict[str, SDPBackend] = {
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "math": SDPBackend.MATH,
}
_NAMES = {int(v): k for k, v in KERNELS.items()}
PAPERS = {
    "flash": "FlashAttention-2, Dao 2023, arXiv 2307.08691",
    "efficient": "memory-efficient attention, Rabe & Staats 2021, arXiv 2112.05682",
    "cudnn": "NVIDIA cuDNN fused attention (cuDNN 9)",
    "math": "explicit softmax(QK^T/sqrt(d))V in PyTorch ops",
}


def kernel_unavailable_reason(kernel: str, device: str | torch.device) -> str | None:
    """Why SDPA's ``kernel`` cannot run on ``device`` here, or None when it can."""
    dev = torch.device(device)
    if kernel not in KERNELS:
        raise ValueError(f"kernel: {kernel!r} is not one of {list(KERNELS)}")
    if kernel == "math":
        return None
    if dev.type == "cpu":
        # CPU builds have a flash-style fused kernel and the math one
        return None if kernel == "flash" else f"SDPA's {kernel} kernel is CUDA-only"
    if dev.type != "cuda":
        return f"attnlab runs SDPA's kernels on cpu or cuda, not {dev.type}"
    if not torch.cuda.is_available():
        return "no CUDA device here"
    major, minor = torch.cuda.get_device_capability(dev)
    if kernel == "flash":
        if not torch.backends.cuda.is_flash_attention_available():
            return f"this torch build ({torch.__version__}) has no flash kernel"
        return None if major >= 8 else f"the flash kernel needs compute capability 8.0+ (this GPU: {major}.{minor})"
    if kernel == "efficient":
        return None if major >= 5 else f"the memory-efficient kernel needs compute capability 5.0+ ({major}.{minor})"
    if not torch.backends.cudnn.is_available():
        return "this torch build has no cuDNN"
    if major < 8:
        return f"cuDNN attention needs compute capability 8.0+ (this GPU: {major}.{minor})"
    return None


def available_kernels(device: str | torch.device) -> list[str]:
    """SDPA's kernels that can run on ``device`` here."""
    return [k for k in KERNELS if kernel_unavailable_reason(k, device) is None]


def which_kernel(q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None = None, is_causal: bool = False,
                 scale: float | None = None) -> str:
    """The SDPA kernel a call with these arguments takes here ("flash", "efficient", "cudnn", "math").

    Honours an enclosing ``sdpa_kernel`` block. Raises ValueError if no kernel can take it.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SDPA warns about each kernel it rules out
        choice = torch._fused_sdp_choice(q, k, v, attn_mask, 0.0, is_causal, scale=scale)
    if int(choice) == int(SDPBackend.ERROR):
        raise ValueError("no SDPA kernel can take this call under the active sdpa_kernel restriction")
    return _NAMES.get(int(choice), "overrideable")


def _forced(kernel: str):
    """A backend function: our ``sdpa`` backend with SDPA restricted to one kernel."""
    backend = KERNELS[kernel]

    def fn(q: Tensor, k: Tensor, v: Tensor, spec: AttentionSpec, need_weights: bool = False) -> AttentionResult:
        try:
            with sdpa_kernel(backend), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return sdpa_attention(q, k, v, spec, need_weights)
        except RuntimeError as err:
            if "No available kernel" not in str(err) and "No viable backend" not in str(err):
                raise
            raise ValueError(f"SDPA's {kernel} kernel cannot take this call (shape {tuple(q.shape)}, "
                             f"{q.dtype}, causal={spec.causal}, mask or bias: "
                             f"{spec.bias is not None or spec.key_padding is not None or spec.pattern is not None})"
                             f"; use 'sdpa' to let SDPA choose") from None

    fn.__name__ = f"sdpa_{kernel}_attention"
    return fn


FORCED: dict[str, Backend] = {
    f"sdpa_{kernel}": Backend(f"sdpa_{kernel}", _forced(kernel), returns_weights=False, returns_lse=False,
                              description=f"SDPA restricted to its {kernel} kernel ({PAPERS[kernel]})",
                              devices=("cuda",))
    for kernel in KERNELS
}


def register_cuda_kernels() -> list[str]:
    """Register ``sdpa_<kernel>`` for each SDPA kernel the CUDA device has; returns their names."""
    names = []
    if torch.cuda.is_available():
        for kernel in available_kernels("cuda"):
            BACKENDS[f"sdpa_{kernel}"] = FORCED[f"sdpa_{kernel}"]
            names.append(f"sdpa_{kernel}")
    return names


register_cuda_kernels()
